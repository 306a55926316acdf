"""Error categories shared by every service, and what they mean to clients.

::

    ServiceError        base of errors a service reports to its callers
    ├── InvalidInput    the request is wrong; fix the input     (INVALID_ARGUMENT, HTTP 400)
    ├── NotFound        the named thing does not exist          (NOT_FOUND, HTTP 404)
    ├── TooLarge        the input exceeds a configured limit    (OUT_OF_RANGE, HTTP 413)
    ├── Overloaded      too much work queued; retry later       (RESOURCE_EXHAUSTED, HTTP 503)
    ├── Unavailable     a dependency (a registry) is down       (UNAVAILABLE, HTTP 503)
    └── Unsupported     valid, but not built by this service    (UNIMPLEMENTED, HTTP 501)

Each service package subclasses these in its own ``errors`` module (``InvalidFlavor`` is an
``InvalidInput``). The gRPC transport maps them to status codes in one table
(``image_service.rpc``); each HTTP frontend maps status codes to HTTP in one table of its own.
Anything else is a bug: it is logged with its traceback and reaches clients as a generic 500.
``go_quote`` quotes inputs inside messages the way upstream's Go code does (``%q``), so error
texts stay byte-equal to upstream's.
"""

from __future__ import annotations

__all__ = [
    "InvalidInput",
    "NotFound",
    "Overloaded",
    "ServiceError",
    "TooLarge",
    "Unavailable",
    "Unsupported",
    "go_quote",
]


class ServiceError(Exception):
    """An expected failure whose message is safe to show to clients."""


class InvalidInput(ServiceError):
    """The request is malformed or asks for something not allowed."""


class NotFound(ServiceError):
    """The requested object does not exist."""


class TooLarge(ServiceError):
    """The request exceeds a configured size limit."""


class Overloaded(ServiceError):
    """The service is at capacity; the caller should retry later."""


class Unavailable(ServiceError):
    """A dependency the service needs is unreachable."""


class Unsupported(ServiceError):
    """The request is valid but this kind of work is not supported."""


_GO_ESCAPES = {
    "\a": r"\a",
    "\b": r"\b",
    "\f": r"\f",
    "\n": r"\n",
    "\r": r"\r",
    "\t": r"\t",
    "\v": r"\v",
    '"': r"\"",
    "\\": r"\\",
}


def go_quote(text: str) -> str:
    """``text`` quoted like Go's ``%q`` (``strconv.Quote``): printable runes kept, others escaped.

    Lone surrogates ``U+DC80..U+DCFF`` (how Python's ``surrogateescape`` keeps undecodable
    bytes) are shown as the ``\\xNN`` byte Go would print for the invalid UTF-8 byte.
    """
    out = ['"']
    for char in text:
        code = ord(char)
        if char in _GO_ESCAPES:
            out.append(_GO_ESCAPES[char])
        elif 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif char.isprintable():
            out.append(char)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)
