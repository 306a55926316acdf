"""Small real HTTP servers on loopback for the OCI client tests.

``HttpServer`` runs a ``ThreadingHTTPServer`` on a free port in a background thread and hands
every request to a handler function ``(Request) -> Reply``, recording what it received, so a
test can serve wrong content, fail on purpose or check which headers reached which host.

``TokenFront`` is a registry front that demands bearer tokens the way ghcr.io does (401 with a
``WWW-Authenticate: Bearer realm=…`` challenge) and proxies authorized requests to the real
local registry; its token endpoint runs on a separate ``HttpServer`` (another origin).
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import parse_qs, urlsplit

import httpx


@dataclass
class Request:
    method: str
    path: str  # without the query
    query: dict[str, list[str]]
    raw_query: str
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    # Send only this many body bytes, then drop the connection (a broken transfer).
    cut_after: int | None = None


Handler = Callable[[Request], Reply]
MaybeHandler = Callable[[Request], Reply | None]


class HttpServer:
    """A threaded HTTP/1.1 server on 127.0.0.1 calling ``handler`` for every request."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[Request] = []
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _handle(self) -> None:
                split = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = Request(
                    self.command,
                    split.path,
                    parse_qs(split.query),
                    split.query,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                server.requests.append(request)
                reply = server.handler(request)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if "content-length" not in {k.lower() for k in reply.headers}:
                    self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                if self.command == "HEAD":
                    return
                if reply.cut_after is not None:
                    self.wfile.write(reply.body[: reply.cut_after])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(reply.body)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def __enter__(self) -> HttpServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


_REPO_RE = re.compile(r"^/v2/(?P<repo>.+?)/(?:manifests|blobs|tags)/")
_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class TokenFront:
    """A bearer-token registry front proxying to ``upstream`` (``http://HOST:PORT``).

    Tokens are issued anonymously by ``realm`` (a separate server) for the scopes asked for;
    ``grant_push=False`` makes it hand out pull-only tokens. ``revoke()`` invalidates every
    token issued so far, like an expiry. ``before_proxy`` may answer a request itself.
    """

    def __init__(
        self,
        upstream: str,
        *,
        grant_push: bool = True,
        before_proxy: MaybeHandler | None = None,
    ) -> None:
        self.upstream = upstream
        self.grant_push = grant_push
        self.before_proxy = before_proxy
        self.tokens: dict[str, set[str]] = {}
        self._counter = itertools.count(1)
        self._http = httpx.Client(timeout=10.0)
        self.realm = HttpServer(self._token)
        self.front = HttpServer(self._registry)

    def __enter__(self) -> TokenFront:
        self.realm.__enter__()
        self.front.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.front.__exit__(None, None, None)
        self.realm.__exit__(None, None, None)
        self._http.close()

    @property
    def host(self) -> str:
        return self.front.host

    def revoke(self) -> None:
        self.tokens.clear()

    def _token(self, request: Request) -> Reply:
        granted: set[str] = set()
        for scope in request.query.get("scope", []):
            kind, _, rest = scope.partition(":")
            repo, _, actions = rest.rpartition(":")
            for action in actions.split(","):
                if action == "pull" or (action == "push" and self.grant_push):
                    granted.add(f"{kind}:{repo}:{action}")
        token = f"token-{next(self._counter)}"
        self.tokens[token] = granted
        return Reply(
            200, {"Content-Type": "application/json"}, json.dumps({"token": token}).encode()
        )

    def _registry(self, request: Request) -> Reply:
        match = _REPO_RE.match(request.path)
        repo = match.group("repo") if match else ""
        action = "pull" if request.method in ("GET", "HEAD") else "push"
        needed = f"repository:{repo}:{action}"
        auth = request.headers.get("authorization", "")
        token = auth.removeprefix("Bearer ")
        if not auth.startswith("Bearer ") or needed not in self.tokens.get(token, set()):
            challenge = (
                f'Bearer realm="{self.realm.url}/token",service="test-front",'
                f'scope="repository:{repo}:{action}"'
            )
            return Reply(
                401,
                {"WWW-Authenticate": challenge, "Content-Type": "application/json"},
                b'{"errors":[{"code":"DENIED","message":"access to the resource is denied"}]}',
            )
        if self.before_proxy is not None:
            reply = self.before_proxy(request)
            if reply is not None:
                return reply
        query = request.raw_query
        headers = {
            k: v for k, v in request.headers.items() if k not in _HOP_HEADERS | {"authorization"}
        }
        headers["Host"] = self.host  # so distribution writes Location headers for the front
        response = self._http.request(
            request.method,
            f"{self.upstream}{request.path}{'?' + query if query else ''}",
            headers=headers,
            content=request.body,
        )
        return Reply(
            response.status_code,
            {k: v for k, v in response.headers.items() if k.lower() not in _HOP_HEADERS}
            | {
                "Content-Length": response.headers.get("content-length", str(len(response.content)))
            },
            response.content,
        )
