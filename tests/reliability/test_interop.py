"""Interop (issue 15, case 12): `adapterx export-backbone` writes the built-in backbone as a plain transformers
checkpoint, and every `# interop:` code block of docs/interop.md runs in a fresh process where adapterx (and
the adapter libraries it does not use) cannot be imported, giving what adapterx computes: peft's PeftModel and
AutoPeftModel, the adapters library, and a merged model's mean-pooled head from its README. The fresh
processes are slow-marked (`pytest -m slow`)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch

from adapterx import store
from adapterx.core.backbone import load_backbone
from adapterx.core.model import AdaptedModel
from adapterx.deploy.head_usage import MEAN_POOLED_CLASSIFIER
from adapterx.deploy.setup import load_for_inference

DOCS = Path(__file__).resolve().parents[2] / "docs" / "interop.md"
TEXTS = ["the happy dog eats the apple", "der hund isst nicht den apfel heute", "le chat"]
TRAIN = ["--task", "tiny-xnli", "--max-steps", "3", "--batch-size", "8", "--train-limit", "24"]
ATOL = 1e-4


def doc_blocks() -> dict[str, str]:
    blocks = re.findall(r"```python\n# interop: ([\w-]+)\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S)
    return {name: code for name, code in blocks}


@pytest.fixture(scope="module")
def artifacts(kit, tmp_path_factory):
    root = tmp_path_factory.mktemp("interop")
    runs = {"tiny": root / "tiny-xlmr"}
    assert kit.cli("export-backbone", "builtin:tiny-xlmr", runs["tiny"])[0] == 0
    for name, extra in {
        "xnli": [],
        "on-exported": ["--backbone", runs["tiny"].resolve()],
        "bottleneck": ["--adapter", "kind=bottleneck,reduction_factor=8"],
    }.items():
        code, _, err = kit.cli("train", "--output", root / name, *TRAIN, *extra)
        assert code == 0, err
        runs[name] = root / name / "adapter"
    code, _, err = kit.cli("merge", "--adapter", runs["xnli"], "--output", root / "merged")
    assert code == 0, err
    runs["merged"] = root / "merged"
    return runs


def _encoded(backbone):
    enc = backbone.tokenizer(TEXTS, padding=True, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


@torch.no_grad()
def adapterx_hidden(backbone_name: str, adapter: Path) -> torch.Tensor:
    backbone = load_backbone(backbone_name)
    model = AdaptedModel(backbone)
    store.load_adapter(model, adapter, name="x", with_head=False)
    store.activate(model, ["x"])
    return model.eval().encode(*_encoded(backbone)).last_hidden_state


def _site_without(root: Path, blocked: tuple[str, ...]) -> Path:
    """A view (symlinks) of this environment's site-packages without the `blocked` distributions."""
    site = Path(sysconfig.get_paths()["purelib"])
    view = root / ("site-" + "-".join(blocked))
    if view.is_dir():
        return view
    view.mkdir()
    for entry in site.iterdir():
        stem = entry.name.lower().replace("-", "_")
        if entry.suffix == ".pth" or any(
            stem == b or stem.startswith((b + "_", b + ".", f"__editable__.{b}", f"__editable___{b}")) for b in blocked
        ):
            continue
        (view / entry.name).symlink_to(entry)
    return view


def run_fresh(tmp_path: Path, blocks: list[str], variables: dict, result: str, blocked: tuple[str, ...]) -> dict:
    """Run docs/interop.md's `blocks` in a new interpreter that cannot import `blocked`; returns `result` (a
    tensor) as a list, and which blocked modules were importable or imported."""
    code = doc_blocks()
    script = "\n".join(
        [
            "import importlib.util, json, sys",
            f"sys.path.insert(0, {str(_site_without(tmp_path, blocked))!r})",
            *(f"{k} = {v!r}" for k, v in variables.items()),
            *(code[b] for b in blocks),
            f"blocked = {blocked!r}",
            f"print(json.dumps({{'result': {result}.tolist(), 'installed': [b for b in blocked if "
            f"importlib.util.find_spec(b)], 'imported': sorted(m for m in sys.modules if m.split('.')[0] in blocked)}}))",
        ]
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-S", "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(done.stdout.strip().splitlines()[-1])
    assert data["installed"] == [] and data["imported"] == [], data
    return data


@pytest.mark.slow  # a fresh process or a whole study: seconds; runs in CI with -m slow
def test_export_backbone_writes_a_plain_checkpoint_with_the_same_fingerprint(
    kit, artifacts, pristine_backbone, tmp_path
):
    files = {p.name for p in artifacts["tiny"].iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "adapterx_backbone.json"} <= files
    assert not any(name.endswith((".bin", ".pt")) for name in files)
    assert load_backbone(str(artifacts["tiny"])).fingerprint == pristine_backbone.fingerprint
    kit.one_line_error(["export-backbone", "builtin:tiny-xlmr", artifacts["tiny"]], "--overwrite")
    kit.one_line_error(["export-backbone", "random:xlm-roberta-base", tmp_path / "r"], "no tokenizer")


@pytest.mark.slow  # a fresh interpreter importing torch and transformers: 5-20 s
def test_peft_and_autopeft_load_without_adapterx(artifacts, tmp_path):
    variables = {
        "BACKBONE_DIR": str(artifacts["tiny"]),
        "ADAPTER_DIR": str(artifacts["xnli"]),
        "TEXTS": TEXTS,
        "ADAPTER_ON_EXPORTED_DIR": str(artifacts["on-exported"]),
    }
    peft = run_fresh(tmp_path, ["backbone", "peft"], variables, "hidden", ("adapterx", "adapters"))
    want = adapterx_hidden("builtin:tiny-xlmr", artifacts["xnli"])
    assert (torch.tensor(peft["result"]) - want).abs().max() <= ATOL
    auto = run_fresh(tmp_path, ["backbone", "autopeft"], variables, "hidden", ("adapterx", "adapters"))
    want = adapterx_hidden(str(artifacts["tiny"].resolve()), artifacts["on-exported"])
    assert (torch.tensor(auto["result"]) - want).abs().max() <= ATOL


@pytest.mark.slow  # a fresh interpreter importing torch and transformers: 5-20 s
def test_the_adapters_library_loads_a_bottleneck_without_adapterx(artifacts, tmp_path):
    variables = {"BACKBONE_DIR": str(artifacts["tiny"]), "ADAPTER_DIR": str(artifacts["bottleneck"]), "TEXTS": TEXTS}
    got = run_fresh(tmp_path, ["backbone", "adapters"], variables, "hidden", ("adapterx", "peft"))
    want = adapterx_hidden("builtin:tiny-xlmr", artifacts["bottleneck"])
    assert (torch.tensor(got["result"]) - want).abs().max() <= ATOL


@pytest.mark.slow  # a fresh interpreter importing torch and transformers: 5-20 s
def test_a_merged_mean_pooled_head_runs_from_its_readme_without_adapterx(artifacts, tmp_path, pristine_backbone):
    readme = (artifacts["merged"] / "README.md").read_text()
    assert (
        MEAN_POOLED_CLASSIFIER.strip() in readme
        and MEAN_POOLED_CLASSIFIER.strip() in doc_blocks()["merged-mean-pooled"]
    )
    assert "adapterx and peft are not needed" in readme
    got = run_fresh(
        tmp_path,
        ["merged-mean-pooled"],
        {"MERGED_DIR": str(artifacts["merged"]), "TEXTS": TEXTS},
        "logits",
        ("adapterx", "peft", "adapters"),
    )
    model = load_for_inference(pristine_backbone.fresh_copy(), artifacts["xnli"])
    with torch.no_grad():
        want = model(*_encoded(pristine_backbone)).logits
    assert (torch.tensor(got["result"]) - want).abs().max() <= ATOL
