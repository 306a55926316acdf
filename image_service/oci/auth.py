"""Anonymous bearer-token auth, the way ghcr.io and distribution's token server do it.

The flow (https://distribution.github.io/distribution/spec/auth/token/):

1. A request without a token gets ``401`` with
   ``WWW-Authenticate: Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="…"``.
2. The client GETs ``realm?service=…&scope=repository:<repo>:pull[,push]`` without
   credentials and receives ``{"token": "…", "expires_in": 300}``.
3. It repeats the request with ``Authorization: Bearer <token>``.

This module holds the pure parts: ``parse_challenge`` reads the header, ``scope_for`` builds
scopes, ``parse_token_response`` reads the token endpoint's JSON, and ``TokenCache`` remembers
tokens per scope until shortly before they expire (a push token also serves pulls) and the
registry's challenge, so later scopes fetch their token up front instead of paying a 401
round trip. The transport does the HTTP and attaches tokens only to requests for the
registry's own origin, never to redirect targets or to the realm.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from image_service.oci.errors import RegistryAuthError

__all__ = [
    "Challenge",
    "TokenCache",
    "parse_challenge",
    "parse_token_response",
    "scope_for",
]

_PARAM_RE = re.compile(r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))\s*,?')
_DEFAULT_TTL = 60.0  # the token spec's default lifetime when expires_in is absent
_EXPIRY_MARGIN = 10.0  # refresh this many seconds early to avoid racing the expiry


@dataclass(frozen=True)
class Challenge:
    """A parsed ``WWW-Authenticate`` challenge."""

    scheme: str
    params: Mapping[str, str] = field(default_factory=dict, hash=False)

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")

    @property
    def service(self) -> str | None:
        return self.params.get("service")

    @property
    def scope(self) -> str | None:
        return self.params.get("scope")


def parse_challenge(headers: list[str]) -> Challenge | None:
    """The first challenge among ``WWW-Authenticate`` header values, preferring Bearer."""
    challenges = [c for c in (_parse_one(h) for h in headers) if c is not None]
    bearer = [c for c in challenges if c.scheme == "bearer"]
    return next(iter(bearer or challenges), None)


def _parse_one(header: str) -> Challenge | None:
    scheme, _, rest = header.strip().partition(" ")
    if not scheme:
        return None
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        match = _PARAM_RE.match(rest, pos)
        if match is None or match.end() == pos:
            break
        value = match.group(2)
        params[match.group(1).lower()] = (
            re.sub(r"\\(.)", r"\1", value) if value is not None else match.group(3)
        )
        pos = match.end()
    return Challenge(scheme.lower(), params)


def scope_for(repository: str, *, push: bool = False) -> str:
    """The token scope for pulling (or pulling and pushing) ``repository``."""
    return f"repository:{repository}:{'pull,push' if push else 'pull'}"


def parse_token_response(body: bytes, *, realm: str) -> tuple[str, float]:
    """Return ``(token, lifetime_seconds)`` from a token endpoint's JSON answer."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RegistryAuthError(f"token service {realm} answered invalid JSON: {exc}") from exc
    token = data.get("token") or data.get("access_token") if isinstance(data, dict) else None
    if not isinstance(token, str) or not token:
        raise RegistryAuthError(f"token service {realm} answered without a token")
    expires_in = data.get("expires_in")
    ttl = float(expires_in) if isinstance(expires_in, int | float) and expires_in > 0 else 0.0
    return token, max(ttl, _DEFAULT_TTL)


class TokenCache:
    """Tokens per scope with their expiry, plus the registry's bearer challenge once seen."""

    def __init__(self) -> None:
        self.challenge: Challenge | None = None
        self._tokens: dict[str, tuple[str, float]] = {}

    def get(self, scope: str) -> str | None:
        """A valid token for ``scope``; a ``pull,push`` token also answers for ``pull``."""
        candidates = [scope]
        if scope.endswith(":pull"):
            candidates.append(scope + ",push")
        now = time.monotonic()
        for candidate in candidates:
            entry = self._tokens.get(candidate)
            if entry is not None and entry[1] > now:
                return entry[0]
        return None

    def put(self, scope: str, token: str, ttl: float) -> None:
        self._tokens[scope] = (token, time.monotonic() + max(ttl - _EXPIRY_MARGIN, 1.0))

    def discard(self, scope: str) -> None:
        """Forget the token(s) that would answer for ``scope`` (the registry rejected it)."""
        self._tokens.pop(scope, None)
        if scope.endswith(":pull"):
            self._tokens.pop(scope + ",push", None)
