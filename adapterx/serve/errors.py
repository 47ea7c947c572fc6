"""What a served request can do wrong, as errors that carry their HTTP status: the engine raises them without
knowing HTTP, and any front end (the FastAPI app, a Ray Serve deployment) answers with `status` and the message.

Every message names the field or adapter at fault in one line. Errors of the layers below (a saved adapter that
does not load, another backbone's adapter) are mapped by `status_of`.
"""

from __future__ import annotations

from adapterx.core.errors import (
    AdapterFileError,
    AdapterxError,
    BackboneMismatchError,
    CompositionError,
    UnknownNameError,
)


class RequestError(AdapterxError):
    """A request the server refuses; `status` is its HTTP status, `param` the request field at fault (or None)."""

    status = 422
    kind = "invalid_request_error"

    def __init__(self, message: str, *, param: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.param = param
        self.headers = dict(headers or {})


class NotFound(RequestError):
    status = 404
    kind = "not_found_error"


class TooLarge(RequestError):
    status = 413
    kind = "payload_too_large"


class Conflict(RequestError):
    status = 409
    kind = "conflict_error"


class Forbidden(RequestError):
    status = 403
    kind = "permission_error"


class Unauthorized(RequestError):
    status = 401
    kind = "authentication_error"


class Overloaded(RequestError):
    status = 429
    kind = "rate_limit_error"


class Unavailable(RequestError):
    status = 503
    kind = "unavailable_error"


# errors of the layers below, when a front end meets them (hot-adding an adapter): the status that says why
_STATUS = (
    (BackboneMismatchError, 409),  # an adapter of another backbone
    (UnknownNameError, 404),
    (AdapterFileError, 422),  # missing, corrupt or changed files, a head that does not load
    (CompositionError, 422),
)


def status_of(exc: AdapterxError) -> int:
    """The HTTP status for an adapterx error (a `RequestError`'s own, 409 for another backbone's adapter, 422 for
    files that do not load, 400 otherwise)."""
    if isinstance(exc, RequestError):
        return exc.status
    return next((status for kind, status in _STATUS if isinstance(exc, kind)), 400)
