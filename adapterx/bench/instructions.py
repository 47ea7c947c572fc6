"""``--clock instructions``: count the instructions one forward pass of each form executes, with callgrind
through ``torch.utils.benchmark.Timer.collect_callgrind``.

Instruction counts are deterministic (up to small interpreter jitter), so a 1% difference between forms can be
decided on a machine other work shares. They are NOT time: cache misses, memory stalls, vector width and
frequency do not show, and a form whose instructions are cheaper or dearer than the base's (e.g. GEMM vs
element-wise) is mis-weighted. All forms of a grid point are counted in one process under valgrind (starting it
costs minutes: Python and torch are imported under instrumentation; a forward pass runs ~50x slower than
native): the parent writes the base weights once to a safetensors file, the child rebuilds the base from it (no
random initialisation under valgrind), builds the forms with the same seeds as the timed bench, warms each up
once, and counts `REPEATS` passes of each, interleaved.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from adapterx.bench.forms import FormContext, build_form, make_batch
from adapterx.core.errors import AdapterxError

REPEATS = 3  # measurements per form; deterministic counts make more unnecessary
NUMBER = 1  # forward passes per measurement


def check_valgrind() -> None:
    missing = [tool for tool in ("valgrind", "callgrind_control", "callgrind_annotate") if shutil.which(tool) is None]
    if missing:
        raise AdapterxError(
            f"bench: --clock instructions needs valgrind ({', '.join(missing)} not found); on "
            f"Debian/Ubuntu: apt-get install valgrind"
        )


def save_base(base: nn.Module, directory: Path) -> dict:
    """Write the base's parameters and buffers to `directory`; returns what a child needs to rebuild it."""
    state = {name: t.detach().contiguous() for name, t in list(base.named_parameters()) + list(base.named_buffers())}
    path = directory / "base.safetensors"
    save_file(state, str(path))
    return {"weights": str(path), "config": base.config.to_dict(), "attention": base.config._attn_implementation}


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


class _Cycle:
    """The statement callgrind counts: each call runs the next form, in turn. The harness first calls it
    `warmup` times (torch's template warms up ``min(number, 10)`` calls), so measured repeat j runs form
    ``j % len(forms)``."""

    def __init__(self, fns: list[Callable[[], object]], warmup: int):
        self.fns, self.calls = fns, -warmup

    def __call__(self) -> None:
        fn = self.fns[max(self.calls, 0) % len(self.fns)]
        self.calls += 1
        with torch.inference_mode():
            fn()


def callgrind_setup(payload: str) -> Callable[[], None]:
    """Run inside the valgrind child (from the Timer's setup): rebuild the base, build every form and the batch,
    warm each form up once, and return the statement to count."""
    spec = json.loads(payload)
    base = load_base(spec["base"])
    ctx = FormContext(base, rank=spec["rank"], reduction_factor=spec["reduction_factor"], seed=spec["seed"])
    batch = make_batch(base.config.vocab_size, spec["batch_size"], spec["seq_len"], "cpu", spec["seed"])
    fns = []
    for name in spec["forms"]:
        form = build_form(name, ctx)
        fns.append(lambda form=form: form(batch))
    with torch.inference_mode():
        for fn in fns:
            fn()
    return _Cycle(fns, warmup=min(NUMBER, 10))


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


def count_instructions(
    form_names: list[str], base: nn.Module, cfg, bs: int, seq: int, threads: int
) -> dict[str, list[float]]:
    """Instructions per forward pass of each form, `REPEATS` measurements each (callgrind, denoised), all forms
    in one valgrind process (starting one costs minutes: Python and torch are imported under instrumentation),
    measured interleaved: form 1, form 2, ..., form 1, form 2, ..."""
    from torch.utils.benchmark import Timer

    check_valgrind()
    n = len(form_names)
    with tempfile.TemporaryDirectory(prefix="adapterx-callgrind-") as tmp, _child_environment():
        payload = json.dumps(
            {
                "base": save_base(base, Path(tmp)),
                "forms": list(form_names),
                "rank": cfg.rank,
                "seed": cfg.seed,
                "reduction_factor": cfg.reduction_factor,
                "batch_size": bs,
                "seq_len": seq,
            }
        )
        timer = Timer(
            stmt="run()",
            num_threads=threads,
            setup=f"from adapterx.bench.instructions import callgrind_setup\nrun = callgrind_setup({payload!r})",
        )
        stats = timer.collect_callgrind(number=NUMBER, repeats=n * REPEATS, collect_baseline=False)
    counts = [float(s.counts(denoise=True)) / NUMBER for s in stats]
    out = {name: counts[i::n] for i, name in enumerate(form_names)}
    for name, values in out.items():  # a misaligned cycle would mix forms: their counts would disagree
        if max(values) > 1.05 * min(values):
            raise AdapterxError(
                f"bench: instruction counts of form {name!r} disagree across repeats ({values}); "
                f"the measurements did not line up with the forms"
            )
    return out
