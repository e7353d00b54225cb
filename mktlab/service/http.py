"""HTTP plumbing around the BentoML app: error shapes, body limit, ``GET /healthz``.

:class:`MktlabHTTPMiddleware` (an ASGI middleware added to the service):

- refuses bodies over ``max_body_bytes`` with 413 before they are read;
- turns BentoML's 400 for an invalid body into 422 whose ``error`` names every bad
  field (``rows[0].age: Input should be a valid number``), and malformed JSON into 400
  saying so;
- answers ``GET /healthz`` with the service's JSON health (BentoML's own ``/healthz``
  is a bare liveness probe; ``/livez`` and ``/readyz`` stay as they are).

:func:`error_response` maps mktlab errors raised by the endpoints to status codes.
"""

from __future__ import annotations

import json
from typing import Any

from mktlab.errors import ConfigError, MktlabError, NotFoundError, ServiceUnavailableError

Scope = dict[str, Any]


def status_of(exc: BaseException) -> int:
    """HTTP status for a mktlab error."""
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, ServiceUnavailableError):
        return 503
    if isinstance(exc, ConfigError):
        return 500
    if isinstance(exc, MktlabError):
        return 422
    return 500


def error_body(exc: BaseException) -> dict[str, Any]:
    kind = type(exc).__name__
    if isinstance(exc, MktlabError):
        return {"error": str(exc), "type": kind}
    return {"error": "internal error; see the server log", "type": kind}


def error_response(exc: BaseException) -> Any:
    """A JSON response for ``exc`` (mktlab errors get their message and status)."""
    from starlette.responses import JSONResponse

    return JSONResponse(error_body(exc), status_code=status_of(exc))


def _loc(loc: list[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "body"


def describe_validation(detail: list[dict[str, Any]]) -> str:
    """``field: message; field: message`` from pydantic's error list."""
    parts = [f"{_loc(d.get('loc') or [])}: {d.get('msg', 'invalid')}" for d in detail[:10]]
    more = f" (+{len(detail) - 10} more)" if len(detail) > 10 else ""
    return "; ".join(parts) + more


class MktlabHTTPMiddleware:
    """ASGI middleware; see the module docstring."""

    def __init__(self, app: Any, max_body_bytes: int = 2_000_000, api_paths: tuple[str, ...] = ()):
        self.app = app
        self.max_body_bytes = int(max_body_bytes)
        self.api_paths = set(api_paths)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        method = scope.get("method", "GET")
        if path == "/healthz" and method in ("GET", "HEAD"):
            await self._health(send)
            return
        if method == "POST" and path in self.api_paths:
            length = dict(scope.get("headers") or []).get(b"content-length")
            if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
                await _send_json(
                    send,
                    413,
                    {
                        "error": f"request body of {int(length)} bytes exceeds the limit of {self.max_body_bytes} bytes"
                    },
                )
                return
            await self.app(scope, receive, _Rewriter(send))
            return
        await self.app(scope, receive, send)

    async def _health(self, send: Any) -> None:
        import anyio.to_thread
        import bentoml

        try:
            svc = bentoml.get_current_service()
        except Exception:
            await _send_json(send, 503, {"status": "starting"})
            return
        body = await anyio.to_thread.run_sync(svc.core.health)
        await _send_json(send, 200, body)


class _Rewriter:
    """Wraps ``send``: 400 validation answers from BentoML become 422 naming the fields."""

    def __init__(self, send: Any):
        self.send = send
        self.start: dict[str, Any] | None = None
        self.chunks: list[bytes] = []

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and message["status"] == 400:
            self.start = message
            return
        if self.start is None:
            await self.send(message)
            return
        if message["type"] == "http.response.body":
            self.chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            status, body = self._rewrite(b"".join(self.chunks))
            headers = [
                (k, v) for k, v in self.start.get("headers", []) if k.lower() != b"content-length"
            ]
            headers.append((b"content-length", str(len(body)).encode()))
            await self.send({"type": "http.response.start", "status": status, "headers": headers})
            await self.send({"type": "http.response.body", "body": body})
            return
        await self.send(message)

    @staticmethod
    def _rewrite(raw: bytes) -> tuple[int, bytes]:
        try:
            data = json.loads(raw)
        except ValueError:
            return 400, raw
        detail = data.get("detail") if isinstance(data, dict) else None
        if not isinstance(detail, list):
            return 400, raw
        if any(d.get("type") == "json_invalid" for d in detail):
            msg = "; ".join(d.get("msg", "") for d in detail)
            return 400, json.dumps(
                {"error": f"malformed JSON body: {msg}", "detail": detail}
            ).encode()
        out = {"error": f"invalid request: {describe_validation(detail)}", "detail": detail}
        return 422, json.dumps(out).encode()


async def _send_json(send: Any, status: int, body: Any) -> None:
    raw = json.dumps(body, default=str).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(raw)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": raw})
