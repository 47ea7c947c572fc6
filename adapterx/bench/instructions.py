"""``--clock instructions``: count the instructions one forward pass of each form executes, with callgrind
through ``torch.utils.benchmark.Timer.collect_callgrind``.

Instruction counts are deterministic (up to small interpreter jitter), so a 1% difference between forms can be
decided on a machine other work shares. They are NOT time: cache misses, memory stalls, vector width and
frequency do not show, and a form whose instructions are cheaper or dearer than the base's (e.g. GEMM vs
element-wise) is mis-weighted. Each form runs in its own process under valgrind (about 50x slower than native):
the parent writes the base weights once to a safetensors file, and the child rebuilds the base from it (no
random initialisation under valgrind), builds the form with the same seeds as the timed bench, and counts
`repeats` measurements of `number` calls after one warm-up call.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from adapterx.bench.forms import FormContext, build_form, make_batch
from adapterx.core.errors import AdapterxError

REPEATS = 3   # measurements per form; deterministic counts make more unnecessary
NUMBER = 1    # forward passes per measurement


def check_valgrind() -> None:
    missing = [tool for tool in ("valgrind", "callgrind_control", "callgrind_annotate") if shutil.which(tool) is None]
    if missing:
        raise AdapterxError(f"bench: --clock instructions needs valgrind ({', '.join(missing)} not found); on "
                            f"Debian/Ubuntu: apt-get install valgrind")


def save_base(base: nn.Module, directory: Path) -> dict:
    """Write the base's parameters and buffers to `directory`; returns what a child needs to rebuild it."""
    state = {name: t.detach().contiguous() for name, t in list(base.named_parameters()) + list(base.named_buffers())}
    path = directory / "base.safetensors"
    save_file(state, str(path))
    return {"weights": str(path), "config": base.config.to_dict(),
            "attention": base.config._attn_implementation}


def load_base(spec: dict) -> nn.Module:
    """The base model from `save_base`'s file, built on the meta device (no random initialisation)."""
    from transformers import XLMRobertaConfig, XLMRobertaModel

    config = XLMRobertaConfig.from_dict(spec["config"])
    with torch.device("meta"):
        model = XLMRobertaModel(config, add_pooling_layer=False)
    model = model.to_empty(device="cpu")
    params = dict(model.named_parameters())
    for name, tensor in load_file(spec["weights"]).items():
        if name in params:
            params[name].data = tensor
        else:
            owner, _, leaf = name.rpartition(".")
            model.get_submodule(owner)._buffers[leaf] = tensor
    model.set_attn_implementation(spec["attention"])
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def callgrind_setup(payload: str) -> Callable[[], object]:
    """Run inside the valgrind child (from the Timer's setup): rebuild the base, build the form and its batch,
    and return the statement to count."""
    spec = json.loads(payload)
    base = load_base(spec["base"])
    ctx = FormContext(base, rank=spec["rank"], reduction_factor=spec["reduction_factor"], seed=spec["seed"])
    form = build_form(spec["form"], ctx)
    batch = make_batch(base.config.vocab_size, spec["batch_size"], spec["seq_len"], "cpu", spec["seed"])

    def run() -> None:
        with torch.inference_mode():
            form(batch)
    return run


@contextmanager
def _child_environment() -> Iterator[None]:
    """torch's harness starts `python` from PATH: make that this interpreter, and let it import this adapterx."""
    saved = {k: os.environ.get(k) for k in ("PATH", "PYTHONPATH")}
    root = str(Path(__file__).resolve().parents[2])
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), saved["PATH"] or ""])
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (root, saved["PYTHONPATH"]) if p)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def count_instructions(form_names: list[str], base: nn.Module, cfg, bs: int, seq: int, threads: int,
                       progress: Callable[[int], None] | None = None) -> dict[str, list[float]]:
    """Instructions per forward pass of each form, `REPEATS` measurements each (callgrind, denoised)."""
    from torch.utils.benchmark import Timer

    check_valgrind()
    out: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="adapterx-callgrind-") as tmp, _child_environment():
        base_spec = save_base(base, Path(tmp))
        for name in form_names:
            payload = json.dumps({"base": base_spec, "form": name, "rank": cfg.rank, "seed": cfg.seed,
                                  "reduction_factor": cfg.reduction_factor, "batch_size": bs, "seq_len": seq})
            timer = Timer(stmt="run()", num_threads=threads,
                          setup=f"from adapterx.bench.instructions import callgrind_setup\n"
                                f"run = callgrind_setup({payload!r})")
            stats = timer.collect_callgrind(number=NUMBER, repeats=REPEATS, collect_baseline=False)
            out[name] = [float(s.counts(denoise=True)) / NUMBER for s in stats]
            if progress is not None:
                progress(1)
    return out
