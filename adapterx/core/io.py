"""Atomic writes: a reader (or a crash) never sees half a file or half an adapter directory."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from adapterx.core.errors import AdapterFileError


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes 0600: give the file the mode open() would
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        renamed = _naming(exc, tmp, path)
        if renamed is exc:
            raise
        raise renamed from exc


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: object) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def read_json_file(path: str | os.PathLike) -> dict:
    """A JSON file adapterx wrote (metadata, manifests); a corrupt one is an error that names the file."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AdapterFileError(path, f"corrupt JSON: {exc}") from exc


@contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary directory beside `path`; on success it replaces `path` in one rename.

    On failure the temporary directory is removed and an existing `path` is left exactly as it was. The
    directory gets the mode mkdir() would give it (mkdtemp makes 0700, which other accounts cannot read), and
    file-system errors name `path`, not the temporary directory. Every file and folder written into it gets
    the umask's mode too: some writers (safetensors) create their files 0600."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
        os.chmod(tmp, 0o777 & ~current_umask())
        yield tmp
    except BaseException as exc:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        renamed = _naming(exc, tmp, path)
        if renamed is exc:
            raise
        raise renamed from exc
    _umask_modes(tmp)
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _umask_modes(root: Path) -> None:
    mask = current_umask()
    for folder, _dirs, files in os.walk(root):
        os.chmod(folder, 0o777 & ~mask)
        for name in files:
            file = os.path.join(folder, name)
            if not os.path.islink(file):
                os.chmod(file, 0o666 & ~mask)


def current_umask() -> int:
    """The process umask (read from /proc where it can be, so that no other thread sees it change)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _naming(exc: BaseException, tmp: str | os.PathLike | None, path: Path) -> BaseException:
    """An OSError about the temporary file or directory (made or being made), reworded to name the output the
    user asked for."""
    if not isinstance(exc, OSError) or exc.errno is None or exc.filename is None:
        return exc
    failed = Path(os.fsdecode(exc.filename))
    if tmp is not None and str(failed).startswith(str(tmp)):
        inner = str(failed)[len(str(tmp)) :].lstrip(os.sep)
        return type(exc)(exc.errno, exc.strerror, str(path / inner) if inner else str(path))
    if failed.parent == path.parent and failed.name.startswith(f".{path.name}.") and failed.name.endswith(".tmp"):
        return type(exc)(exc.errno, exc.strerror, str(path))
    return exc
