"""How the command reports a failure: one line on stderr and exit status 2 for anything the user can act on
(bad input: AdapterxError; the file system: OSError such as a full disk or a read-only output), with the path
at fault; the traceback only with ``--verbose``. Bugs (any other exception) keep their traceback."""

from __future__ import annotations

import errno
import sys

from adapterx.core.errors import AdapterxError

USER_ERROR = 2
INTERRUPTED = 130

# what to tell the user for the file-system errors a run meets in practice (the rest get strerror)
_OS_HINTS = {
    errno.ENOSPC: "no space left on the device; free some space (partial output was removed)",
    errno.EDQUOT: "disk quota exceeded; free some space (partial output was removed)",
    errno.EROFS: "read-only file system; choose an output on a writable file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a file is where a directory is expected",
    errno.EISDIR: "a directory is where a file is expected",
    errno.EEXIST: "already exists",
    errno.ENOENT: "no such file or directory",
}

HANDLED = (AdapterxError, OSError)


def describe(exc: BaseException) -> str:
    """The one-line message for a handled error."""
    if isinstance(exc, OSError) and not isinstance(exc, AdapterxError):
        paths = [p for p in (exc.filename, exc.filename2) if p is not None]
        what = _OS_HINTS.get(exc.errno) or exc.strerror or type(exc).__name__
        where = " -> ".join(str(p) for p in paths)
        return f"{where}: {what}" if where else f"{what} ({exc})"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return "; ".join(lines) or type(exc).__name__


def report(exc: BaseException, prog: str = "adapterx") -> int:
    """Print the one-line message for `exc` and return the exit status."""
    print(f"{prog}: error: {describe(exc)}", file=sys.stderr)
    return USER_ERROR
