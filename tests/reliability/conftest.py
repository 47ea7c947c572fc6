"""Shared tools of the reliability tests (issue 15: fault injection, help examples, interop), handed to the tests
as one fixture, `kit`: run the CLI in-process, snapshot a directory tree, make writes under a directory fail
with a chosen errno, stop a test that hangs, write a tiny recipe, save a small adapter."""

from __future__ import annotations

import builtins
import contextlib
import errno
import hashlib
import io
import os
import signal
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from adapterx import store
from adapterx.cli.main import main
from adapterx.core.heads import HeadSpec
from adapterx.core.model import AdaptedModel
from adapterx.methods import parse_spec

TINY_TRAIN = ["--max-steps", "2", "--batch-size", "8", "--train-limit", "16"]

RECIPE = """\
name: faults
backbone: builtin:tiny-xlmr
output_dir: {out}
adapter: {{kind: lora, r: 4}}
intermediate:
  tasks: [tiny-nli]
  train_limit: 16
  train: {{max_steps: 2, batch_size: 8}}
target:
  tasks: [tiny-xnli]
  strategies: [continue]
  train_limit: 16
  train: {{max_steps: 2, batch_size: 8}}
evaluate: {{splits: [test], limit: 8, languages: [en, de], forms: [unmerged]}}
bench: {{enabled: false}}
"""


def cli(*argv: str) -> tuple[int, str, str]:
    """Run `adapterx argv...` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def one_line_error(argv: list, *fragments: str) -> str:
    """Assert that `adapterx argv` exits 2 with one line on stderr, no traceback, naming every fragment."""
    code, _, err = cli(*argv)
    lines = [line for line in err.splitlines() if line.strip()]  # progress bars' \r count as lines too
    assert code == 2, f"exit {code}; stderr:\n{err[-3000:]}"
    assert "Traceback" not in err and sum("error" in line.lower() for line in lines) == 1, err[-3000:]
    assert lines[-1].startswith("adapterx: error: "), err[-3000:]
    for fragment in fragments:
        assert fragment in lines[-1], f"{fragment!r} not in {lines[-1]!r}"
    return lines[-1]


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under `root` with its type, mode and content digest: equal snapshots = nothing changed."""
    root = Path(root)
    if not root.exists():
        return {}
    out = {}
    for path in sorted([root, *root.rglob("*")]):
        stat = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
        out[str(path.relative_to(root))] = (stat.st_mode, digest)
    return out


def recipe_file(tmp_path: Path, out: Path, replace: tuple[str, str] | None = None, name: str = "r.yaml") -> Path:
    text = RECIPE.format(out=out)
    if replace is not None:
        assert replace[0] in text, replace
        text = text.replace(*replace)
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@contextlib.contextmanager
def writes_fail_under(root: Path, code: int = errno.ENOSPC, what: tuple[str, ...] = ("mkdir", "open", "save")):
    """Every attempt to create or write a file or directory under `root` fails with `code` (ENOSPC, EROFS,
    EACCES): os.mkdir ("mkdir"), os.open/open(.., 'w') ("open") and safetensors' writer ("save"), as chosen
    by `what` (only "save": the directories can be made, the weights cannot be written). Reads still work."""
    root = str(Path(root).resolve())
    real_open, real_os_open, real_mkdir = builtins.open, os.open, os.mkdir
    import safetensors.torch as st

    real_save = st.save_file

    def inside(path) -> bool:
        try:
            return str(Path(os.fsdecode(path)).resolve()).startswith(root)
        except (TypeError, ValueError):
            return False

    def fail(path):
        raise OSError(code, os.strerror(code), os.fsdecode(path))

    def fake_open(file, mode="r", *args, **kwargs):
        if (
            "open" in what
            and isinstance(file, (str, bytes, os.PathLike))
            and any(c in mode for c in "wax+")
            and inside(file)
        ):
            fail(file)
        return real_open(file, mode, *args, **kwargs)

    def fake_os_open(path, flags, *args, **kwargs):
        if "open" in what and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and inside(path):
            fail(path)
        return real_os_open(path, flags, *args, **kwargs)

    def fake_mkdir(path, *args, **kwargs):
        if "mkdir" in what and inside(path):
            fail(path)
        return real_mkdir(path, *args, **kwargs)

    def fake_save(tensors, filename, *args, **kwargs):
        if "save" in what and inside(filename):
            fail(filename)
        return real_save(tensors, filename, *args, **kwargs)

    builtins.open, os.open, os.mkdir, st.save_file = fake_open, fake_os_open, fake_mkdir, fake_save
    patched = []  # every module that imported safetensors' writer by name (adapterx, peft, transformers)
    for module in list(sys.modules.values()):
        for attr, value in list(getattr(module, "__dict__", {}).items()):
            if value is real_save:
                setattr(module, attr, fake_save)
                patched.append((module, attr))
    try:
        yield
    finally:
        builtins.open, os.open, os.mkdir, st.save_file = real_open, real_os_open, real_mkdir, real_save
        for module, attr in patched:
            setattr(module, attr, real_save)


class Hang(BaseException):
    """Raised by `deadline`; a BaseException so that no error handler under test swallows it."""


@contextlib.contextmanager
def deadline(seconds: int):
    """Fail (instead of hanging the suite) if the block runs longer than `seconds`."""

    def expired(signum, frame):
        raise Hang(f"still running after {seconds} s (endless loop?)")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


XNLI = ["entailment", "neutral", "contradiction"]


def make_adapter(backbone, directory, kind="lora", seed=0, **options):
    """A saved tiny-xnli adapter with random (non-zero) weights and a mean-pooled 3-class head."""
    model = AdaptedModel(backbone)
    store.add_adapter(model, "x", parse_spec({"kind": kind, **options}))
    store.activate(model, ["x"], trainable="x")
    model.add_head("x", HeadSpec("classification", 3, {"pooling": "mean"}))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters(), key=lambda item: item[0]):
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen) * 0.1)
    return store.save_adapter(model, "x", directory, task="tiny-xnli", labels=XNLI, head="x")


class Kit:
    """The tools above, as attributes (tests take shared helpers from fixtures, not by importing a module)."""

    TINY_TRAIN = TINY_TRAIN
    XNLI = XNLI
    cli = staticmethod(cli)
    one_line_error = staticmethod(one_line_error)
    snapshot = staticmethod(snapshot)
    recipe_file = staticmethod(recipe_file)
    writes_fail_under = staticmethod(writes_fail_under)
    deadline = staticmethod(deadline)
    make_adapter = staticmethod(make_adapter)


@pytest.fixture(scope="session")
def kit() -> Kit:
    return Kit()
