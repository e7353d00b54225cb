"""HTTP plumbing around the BentoML app: error shapes, body limit, ``GET /healthz``.

:class:`MktlabHTTPMiddleware` (an ASGI middleware added to the service):

- refuses bodies over ``max_body_bytes`` with 413 before they are read;
- turns BentoML's 400 for an invalid body into 422 whose ``error`` names every bad
  field (``rows[0].age: Input should be a valid number``), and malformed JSON into 400
  saying so;
- gives every error answer of the API one body, :class:`~mktlab.service.schemas.ErrorResponse`
  (``{"error": ..., "type": ..., "detail": ...}``), whoever produced it (BentoML answers
  some errors as ``[{"error": ...}]``);
- answers ``GET /healthz`` with the service's JSON health (BentoML's own ``/healthz``
  is a bare liveness probe; ``/livez`` and ``/readyz`` stay as they are);
- publishes ``GET /docs.json`` rewritten by :func:`document_answers`, so the OpenAPI
  describes the answers the endpoints really give.

:func:`error_response` maps mktlab errors raised by the endpoints to status codes.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from mktlab.errors import (
    AuthError,
    ConfigError,
    ConflictError,
    MktlabError,
    NotFoundError,
    PermissionDeniedError,
    ServiceUnavailableError,
)

Scope = dict[str, Any]


def status_of(exc: BaseException) -> int:
    """HTTP status for a mktlab error."""
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, AuthError):
        return 401
    if isinstance(exc, PermissionDeniedError):
        return 403
    if isinstance(exc, ConflictError):
        return 409
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


# What each documented error status means for a client (the body is ErrorResponse)
ERROR_STATUS = {
    400: "malformed JSON body",
    401: "API key missing, not recognised or revoked",
    403: "the key's role may not call this endpoint",
    409: "the campaign is not in a state this step starts from, or changed meanwhile",
    404: "no such campaign",
    413: "request body over the size limit",
    422: "invalid request: the message names every bad field or value",
    500: "internal error (details in the server log)",
    503: "a backing service is unavailable (Redis, or no model registered for this endpoint)",
}
_TYPE_OF_STATUS = {400: "BadRequest", 401: "AuthError", 403: "PermissionDeniedError", 404: "NotFound", 409: "ConflictError", 413: "PayloadTooLarge",
                   422: "ValidationError", 500: "InternalServerError", 503: "ServiceUnavailable"}  # fmt: skip

# (method, path) -> (model of the 200 body, {status: model of its body or None = ErrorResponse})
Answers = Mapping[tuple[str, str], tuple[Any, Mapping[int, Any]]]


def _schema_into(model: Any, components: dict[str, Any]) -> dict[str, Any]:
    """JSON schema of ``model`` (a pydantic type) with its models moved into ``components``."""
    from pydantic import BaseModel, TypeAdapter

    ref = "#/components/schemas/{model}"
    schema = TypeAdapter(model).json_schema(ref_template=ref, mode="serialization")
    components.update(schema.pop("$defs", {}))
    if isinstance(model, type) and issubclass(model, BaseModel):
        components[model.__name__] = schema
        return {"$ref": ref.format(model=model.__name__)}
    return schema


def _refs(node: Any, out: set[str]) -> set[str]:
    if isinstance(node, dict):
        r = node.get("$ref")
        if isinstance(r, str) and r.startswith("#/components/schemas/"):
            out.add(r.rsplit("/", 1)[1])
        for v in node.values():
            _refs(v, out)
    elif isinstance(node, list):
        for v in node:
            _refs(v, out)
    return out


def document_answers(spec: dict[str, Any], answers: Answers, error_model: Any) -> dict[str, Any]:
    """BentoML's generated OpenAPI rewritten to describe the answers the service gives.

    BentoML documents every API with 400/404/500 bodies it does not send, omits 413, 422
    and 503, and flattens the response models so nullable fields lose ``null``. For each
    ``(method, path)`` of ``answers`` the responses become the 200 model's own schema
    (pydantic's, ``null`` where a field can be null) and one entry per listed status
    with its body (``error_model`` unless given). Components nothing refers to any more
    are dropped. The schemas are JSON Schema 2020-12 (pydantic's), so the document says
    OpenAPI 3.1.0.

    Parameters
    ----------
    spec : dict
        The generated OpenAPI document (not modified).
    answers : mapping
        ``(method, path) -> (ok_model, {status: body model or None})``.
    error_model : pydantic model
        The body of error answers.
    """
    out = copy.deepcopy(spec)
    out["openapi"] = "3.1.0"
    out.setdefault("components", {})["securitySchemes"] = {
        "apiKey": {
            "type": "http",
            "scheme": "bearer",
            "description": "an mktlab API key (mktlab keys create)",
        }
    }
    comps = out["components"].setdefault("schemas", {})
    error_ref = _schema_into(error_model, comps)
    for (method, path), (ok_model, statuses) in answers.items():
        op = out.get("paths", {}).get(path, {}).get(method.lower())
        if op is None:
            continue
        responses: dict[str, Any] = {
            "200": {
                "description": "Successful Response",
                "content": {"application/json": {"schema": _schema_into(ok_model, comps)}},
            }
        }
        for status, model in sorted(statuses.items()):
            body = error_ref if model is None else _schema_into(model, comps)
            responses[str(status)] = {
                "description": ERROR_STATUS.get(status, "error"),
                "content": {"application/json": {"schema": body}},
            }
        op["responses"] = responses
        if 401 in statuses:  # the operation needs an API key (mktlab.service.auth)
            op["security"] = [{"apiKey": []}]
        if "requestBody" in op:
            op["requestBody"]["required"] = True  # every POST endpoint needs its JSON body
    used: set[str] = set()
    todo = _refs({k: v for k, v in out.items() if k != "components"}, set())
    while todo:
        name = todo.pop()
        if name not in used and name in comps:
            used.add(name)
            todo |= _refs(comps[name], set()) - used
    for name in [n for n in comps if n not in used]:
        del comps[name]
    return out


class MktlabHTTPMiddleware:
    """ASGI middleware; see the module docstring.

    Parameters
    ----------
    app : ASGI app
    max_body_bytes : int
        Larger request bodies get 413.
    api_paths : tuple of str
        POST paths whose error answers are normalised (and body size limited).
    error_prefixes : tuple of str
        Other path prefixes whose error answers are normalised and POST bodies size limited (e.g. ``/campaigns/``).
    answers : mapping, optional
        Documented answers per ``(method, path)`` for ``/docs.json``
        (see :func:`document_answers`); ``None`` publishes BentoML's spec as generated.
    error_model : pydantic model, optional
        The documented body of error answers (with ``answers``).
    """

    def __init__(
        self,
        app: Any,
        max_body_bytes: int = 2_000_000,
        api_paths: tuple[str, ...] = (),
        error_prefixes: tuple[str, ...] = (),
        answers: Answers | None = None,
        error_model: Any = None,
    ):
        self.app = app
        self.max_body_bytes = int(max_body_bytes)
        self.api_paths = set(api_paths)
        # other routes whose error answers get the error body too (404 of an unknown id)
        self.error_prefixes = tuple(error_prefixes)
        self.answers = answers
        self.error_model = error_model
        self._spec: bytes | None = None  # the rewritten spec, built on first request

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        method = scope.get("method", "GET")
        if path == "/healthz" and method in ("GET", "HEAD"):
            await self._health(send)
            return
        if path == "/docs.json" and method == "GET" and self.answers is not None:
            await self._docs(scope, receive, send)
            return
        if method == "POST" and (path in self.api_paths or path.startswith(self.error_prefixes)):
            length = dict(scope.get("headers") or []).get(b"content-length")
            if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
                await self._too_large(send, f"request body of {int(length)} bytes")
                return
            if length is None:  # chunked: read it here, up to the limit, then hand it on
                body = await _read_body(receive, self.max_body_bytes)
                if body is None:
                    await self._too_large(send, "chunked request body")
                    return
                receive = _replay_body(body, receive)
            await self.app(scope, receive, _Rewriter(send))
            return
        if path.startswith(self.error_prefixes):
            await self.app(scope, receive, _Rewriter(send))
            return
        await self.app(scope, receive, send)

    async def _too_large(self, send: Any, what: str) -> None:
        msg = f"{what} exceeds the limit of {self.max_body_bytes} bytes"
        await _send_json(send, 413, {"error": msg, "type": "PayloadTooLarge"})

    async def _docs(self, scope: Scope, receive: Any, send: Any) -> None:
        if self._spec is None:
            grab = _Capture()
            await self.app(scope, receive, grab)
            if grab.status != 200:
                await grab.replay(send)
                return
            spec = document_answers(json.loads(grab.body), self.answers or {}, self.error_model)
            self._spec = json.dumps(spec).encode()
        await _send_raw(send, 200, self._spec)

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


async def _read_body(receive: Any, limit: int) -> bytes | None:
    """The whole request body, or ``None`` as soon as it passes ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay_body(body: bytes, original: Any) -> Any:
    """An ASGI ``receive`` that hands on an already read body, then defers to ``original``."""
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await original()  # blocks until the client disconnects

    return receive


class _Capture:
    """An ASGI ``send`` that keeps the whole response (for rewriting it)."""

    def __init__(self) -> None:
        self.status = 500
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = b""

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            self.body += message.get("body", b"")

    async def replay(self, send: Any) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body})


class _Rewriter:
    """Wraps ``send``: every error answer becomes an ErrorResponse body.

    BentoML's 400 for an invalid body becomes 422 naming the fields (400 for malformed
    JSON), its ``[{"error": ...}]`` answers lose the list, and every error body gets a
    ``type``. Successful answers pass through untouched (not buffered).
    """

    def __init__(self, send: Any):
        self.send = send
        self.start: dict[str, Any] | None = None
        self.chunks: list[bytes] = []

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and message["status"] >= 400:
            self.start = message
            return
        if self.start is None:
            await self.send(message)
            return
        if message["type"] == "http.response.body":
            self.chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            status, body = self._rewrite(self.start["status"], b"".join(self.chunks))
            headers = [
                (k, v)
                for k, v in self.start.get("headers", [])
                if k.lower() not in (b"content-length", b"content-type")
            ]
            headers += [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ]
            await self.send({"type": "http.response.start", "status": status, "headers": headers})
            await self.send({"type": "http.response.body", "body": body})
            return
        await self.send(message)

    @staticmethod
    def _rewrite(status: int, raw: bytes) -> tuple[int, bytes]:
        try:
            data: Any = json.loads(raw)
        except ValueError:
            data = {"error": raw.decode(errors="replace").strip() or "error"}
        if isinstance(data, list) and len(data) == 1 and isinstance(data[0], dict):
            data = data[0]  # BentoML answers its own 4xx exceptions as a one-element list
        if not isinstance(data, dict):
            data = {"error": json.dumps(data)}
        detail = data.get("detail")
        if status == 400 and isinstance(detail, list):
            if any(isinstance(d, dict) and d.get("type") == "json_invalid" for d in detail):
                msg = "; ".join(str(d.get("msg", "")) for d in detail if isinstance(d, dict))
                out = {"error": f"malformed JSON body: {msg}", "type": "MalformedJSON",
                       "detail": detail}  # fmt: skip
                return 400, json.dumps(out).encode()
            out = {"error": f"invalid request: {describe_validation(detail)}",
                   "type": "RequestValidationError", "detail": detail}  # fmt: skip
            return 422, json.dumps(out).encode()
        out = {"error": str(data.get("error") or data.get("detail") or "error")}
        out["type"] = str(data.get("type") or _TYPE_OF_STATUS.get(status, "Error"))
        if isinstance(detail, list):
            out["detail"] = detail
        return status, json.dumps(out).encode()


async def _send_json(send: Any, status: int, body: Any) -> None:
    await _send_raw(send, status, json.dumps(body, default=str).encode())


async def _send_raw(send: Any, status: int, raw: bytes) -> None:
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
