"""The BentoML service: ``bentoml serve mktlab.service:MktlabService``.

Importing this module reads the BentoML model store (``settings().models_dir``): the
newest ``uplift`` model is required (a clear :class:`~mktlab.errors.ConfigError`
otherwise), ``attribution`` and ``rl_policy`` are served when present. Their recorded
input schemas become the typed bodies of ``/uplift`` and ``/next_action``.

Endpoints: ``POST /uplift`` (batchable), ``POST /next_action``, ``POST /attribute``,
``POST /issue``, ``POST /events`` (app events onto the live bus),
``GET /campaigns/{campaign_id}``, ``GET /healthz`` (JSON health with the
served model versions), ``GET /metrics`` (Prometheus), ``GET /docs.json`` (OpenAPI), and
the campaign lifecycle: ``POST /campaigns`` (create a draft), ``POST
/campaigns/{id}/{step}`` (submit, approve, reject, launch, ramp, pause, resume, end,
archive), ``GET /campaigns/{id}/record`` and ``GET /campaigns/{id}/history``.

Every endpoint but the probes needs an API key (``Authorization: Bearer <key>``), checked
by :class:`~mktlab.service.auth.AuthMiddleware`: 401 without a recognised key, 403 when
its role may not (see :mod:`mktlab.campaigns.roles`).

Every error answer has one body, ``{"error": ..., "type": ..., "detail": ...}``
(:class:`~mktlab.service.schemas.ErrorResponse`), and ``/docs.json`` documents each
endpoint's statuses with their bodies (:data:`ANSWERS`).
"""

from __future__ import annotations

import gc
import json
import threading
import time
from http import HTTPStatus
from typing import Annotated, Any

import anyio
from pydantic import Field

from mktlab.campaigns.spec import require_inline
from mktlab.config import service_settings
from mktlab.coupons.connection import stop_started_embedded
from mktlab.errors import MktlabError, NotFoundError, ValidationError
from mktlab.service import credentials as access
from mktlab.service import models as store
from mktlab.service import schemas
from mktlab.service.auth import AuthMiddleware
from mktlab.service.core import ServiceCore
from mktlab.service.http import MktlabHTTPMiddleware, error_body, error_response, status_of
from mktlab.service.metrics import metrics
from mktlab.uplift.model import unseen_levels

bentoml = store.bentoml_module()
from bentoml.exceptions import BentoMLException  # noqa: E402  (after BENTOML_HOME is set)
from fastapi import FastAPI, Request  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402

CFG = service_settings()
SERVED = store.require_models()

UpliftFeatures = schemas.feature_row_model(SERVED["uplift"].metadata, "UpliftFeatures")
StateFeatures = schemas.feature_row_model(
    (SERVED["rl_policy"] if "rl_policy" in SERVED else SERVED["uplift"]).metadata, "StateFeatures"
)
MAX = CFG.max_batch
INLINE_ROWS = 64  # /uplift batches up to this many rows are scored on the event loop
# categorical column -> levels seen in training, for the "unseen" field of /uplift answers
SEEN_LEVELS = dict((SERVED["uplift"].metadata or {}).get("categorical") or {})

_POST_ERRORS = dict.fromkeys((400, 401, 403, 413, 422, 500, 503))
# The answers /docs.json documents (see mktlab.service.http.document_answers)
ANSWERS = {
    ("post", "/uplift"): (list[schemas.UpliftResult], _POST_ERRORS),
    ("post", "/next_action"): (schemas.NextActionResponse, _POST_ERRORS),
    ("post", "/attribute"): (schemas.AttributeResponse, _POST_ERRORS),
    ("post", "/issue"): (schemas.IssueResponse, {**_POST_ERRORS, 404: None}),
    ("post", "/events"): (schemas.EventsResponse, _POST_ERRORS),
    ("get", "/campaigns/{campaign_id}"): (
        schemas.CampaignStatus,
        dict.fromkeys((401, 403, 404, 500, 503)),
    ),
    ("get", "/healthz"): (schemas.Health, {503: schemas.Starting}),
}

routes = FastAPI(title="mktlab GET routes", docs_url=None, redoc_url=None, openapi_url=None)


def _observe(endpoint: str, t0: float) -> None:
    metrics()["latency"].labels(endpoint=endpoint).observe(time.perf_counter() - t0)


def _fail(endpoint: str, exc: BaseException) -> Any:
    metrics()["errors"].labels(endpoint=endpoint, status=str(status_of(exc))).inc()
    if not isinstance(exc, MktlabError):
        import logging

        logging.getLogger("mktlab.service").exception("%s failed", endpoint)
    return error_response(exc)


@bentoml.asgi_app(routes, path="/")
@bentoml.service(
    name="mktlab",
    workers=CFG.workers,
    threads=CFG.threads,
    traffic={"timeout": 30},
    logging={"access": {"enabled": False}},
)
class MktlabService:
    """Uplift, next best action, attribution and coupon issuance over HTTP."""

    uplift_model = bentoml.models.BentoModel(SERVED["uplift"].tag)
    if "attribution" in SERVED:
        attribution_model = bentoml.models.BentoModel(SERVED["attribution"].tag)
    if "rl_policy" in SERVED:
        rl_policy_model = bentoml.models.BentoModel(SERVED["rl_policy"].tag)

    def __init__(self) -> None:
        self.core = ServiceCore.from_store(SERVED)  # exactly the models this class declared
        self._lifecycle: Any = None
        metrics()
        self._stop = threading.Event()
        threading.Thread(target=self._watch_live, name="mktlab-live-gauges", daemon=True).start()
        # Everything loaded so far (BentoML, MLflow, the models) lives as long as the
        # worker: move it out of the collector's reach, so a full collection scans only
        # what requests allocate instead of pausing a request for a few hundred ms.
        gc.collect()
        gc.freeze()

    @bentoml.on_shutdown
    def _close(self) -> None:
        self._stop.set()
        self.core.close()
        access.close()

    @bentoml.api
    def events(
        self, events: Annotated[list[dict[str, Any]], Field(min_length=1, max_length=10_000)]
    ) -> schemas.EventsResponse:
        """App events onto the live bus: each needs ``user_id``, ``event`` and ``ts``.

        Good events are published (one user's events stay in order on one partition);
        a malformed one (no user id, bad timestamp, unknown type, oversized, ...) goes to
        the dead-letter store with its reason, is listed in ``refused`` and counted in
        ``/metrics`` (``mktlab_events_total{outcome="dead_lettered"}``).
        """
        t0 = time.perf_counter()
        try:
            out = self.core.publish_events(events)
        except Exception as exc:
            return _fail("events", exc)
        m = metrics()["events"]
        if out["published"]:
            m.labels(outcome="published", reason="").inc(out["published"])
        for r in out["refused"]:
            m.labels(outcome="dead_lettered", reason=r["reason"]).inc()
        _observe("events", t0)
        return schemas.EventsResponse(**out)

    def _watch_live(self) -> None:
        """Every 2 s, copy the bus's dead letters and the workers' counters into gauges."""
        while not self._stop.wait(2.0):
            try:
                st = self.core.live_status()
            except Exception:  # the bus or Redis is down: /healthz says so, keep trying
                continue
            metrics()["dead_letters"].set(st["dead_letters"])
            for k, v in st["workers"].items():
                metrics()["live"].labels(counter=k).set(v)
        # `bentoml serve` got SIGTERM / SIGINT: an embedded redis-server this worker
        # started goes with it (one another process started is left to that process)
        stop_started_embedded()

    # Adaptive batching: concurrent requests share one model call. The method is async so
    # that a batch is scored on the event loop (a one-row call costs ~0.1 ms) instead of
    # waiting for a thread-pool hop; BentoML's dispatcher runs one batch at a time per
    # worker, and with a sync method that hop made batches wait on each other (about
    # 500 req/s with idle CPU; about 950 with this). Large batches go to a thread so they
    # do not hold up other requests. The dispatcher sheds load with 503 only when a
    # request would wait longer than max_latency_ms, far above the latency we aim for.
    @bentoml.api(batchable=True, batch_dim=0, max_batch_size=MAX, max_latency_ms=5000)
    async def uplift(
        self, rows: Annotated[list[UpliftFeatures], Field(min_length=1, max_length=MAX)]
    ) -> list[schemas.UpliftResult]:
        """Uplift, both outcome probabilities, quadrant and treat/no-treat per feature row.

        A categorical value never seen in training does not refuse the row: it is scored
        as "none of the known levels" and named in that row's ``unseen`` field, e.g.
        ``"unseen": {"city": "ZZ"}`` (``{}`` when every value was seen).
        """
        t0 = time.perf_counter()
        records = [r.model_dump(by_alias=True) for r in rows]
        try:
            if len(records) <= INLINE_ROWS:
                answers = self.core.uplift(records)
            else:
                answers = await anyio.to_thread.run_sync(self.core.uplift, records)
        except MktlabError as exc:
            # a batch merges concurrent requests, so no per-request response can be
            # returned here: BentoML answers its exception with the status, and
            # MktlabHTTPMiddleware gives that answer the error body
            metrics()["errors"].labels(endpoint="uplift", status=str(status_of(exc))).inc()
            raise BentoMLException(str(exc), error_code=HTTPStatus(status_of(exc))) from exc
        unseen = unseen_levels(records, SEEN_LEVELS) if SEEN_LEVELS else [{}] * len(records)
        _observe("uplift", t0)
        return [schemas.UpliftResult(**a, unseen=u) for a, u in zip(answers, unseen)]

    @bentoml.api
    def next_action(
        self, state: StateFeatures, user_id: schemas.UserId | None = None
    ) -> schemas.NextActionResponse:
        """The RL policy's action for a user state (a stated fallback rule without a policy)."""
        t0 = time.perf_counter()
        try:
            out = self.core.next_action(state.model_dump(by_alias=True), user_id=user_id)
        except Exception as exc:
            return _fail("next_action", exc)
        _observe("next_action", t0)
        return schemas.NextActionResponse(**out)

    @bentoml.api
    def attribute(
        self, journeys: Annotated[list[schemas.Journey], Field(min_length=1, max_length=MAX)]
    ) -> schemas.AttributeResponse:
        """Channel credits per journey and in total from the fitted attribution.

        A channel the model never saw in training is refused with 422 naming it, the
        journeys holding it and the channels the model knows (it would otherwise get no
        credit without a word).
        """
        t0 = time.perf_counter()
        try:
            out = self.core.attribute([j.model_dump() for j in journeys])
        except Exception as exc:
            return _fail("attribute", exc)
        _observe("attribute", t0)
        return schemas.AttributeResponse(**out)

    @bentoml.api
    def issue(
        self,
        campaign_id: schemas.CampaignId,
        user_id: schemas.UserId,
        request_id: schemas.RequestId,
        context: schemas.IssueContext | None = None,
    ) -> schemas.IssueResponse:
        """The campaign strategy's eligibility (holdout, audience, policy, caps), then the Redis issuer; idempotent by request_id."""
        t0 = time.perf_counter()
        ctx = context.model_dump(exclude_none=True) if context is not None else {}
        try:
            out = self.core.issue(campaign_id, user_id, request_id, ctx)
        except Exception as exc:
            metrics()["issue"].labels(
                status="error", reason=type(exc).__name__, replayed="false"
            ).inc()
            return _fail("issue", exc)
        metrics()["issue"].labels(
            status=out["status"], reason=out["reason"] or "", replayed=str(out["replayed"]).lower()
        ).inc()
        _observe("issue", t0)
        return schemas.IssueResponse(**out)

    @routes.get("/campaigns/{campaign_id}")
    def campaign(self, campaign_id: str) -> Any:
        """Stock, issued, remaining, budget and budget used of a campaign."""
        t0 = time.perf_counter()
        try:
            out = self.core.campaign(campaign_id)
        except Exception as exc:
            metrics()["errors"].labels(endpoint="campaigns", status=str(status_of(exc))).inc()
            return JSONResponse(error_body(exc), status_code=status_of(exc))
        _observe("campaigns", t0)
        return out

    # -- the campaign lifecycle (mktlab.campaigns.lifecycle; the key's principal acts) ----
    def lifecycle(self) -> Any:
        if self._lifecycle is None:
            from mktlab.campaigns.lifecycle import Lifecycle

            self._lifecycle = Lifecycle(
                access.db(), issuer=self.core.issuer(), namespace=CFG.namespace
            )
        return self._lifecycle

    async def _lifecycle_call(self, endpoint: str, request: Request, call) -> Any:
        t0 = time.perf_counter()
        try:
            body = await request.body()
            data = json.loads(body) if body.strip() else {}
            if not isinstance(data, dict):
                raise ValidationError("body: expected a JSON object")
            principal = request.scope.get("state", {}).get("principal")
            out = await anyio.to_thread.run_sync(lambda: call(self.lifecycle(), principal, data))
        except json.JSONDecodeError as exc:
            return JSONResponse(
                {"error": f"malformed JSON body: {exc}", "type": "BadRequest", "detail": None}, 400
            )
        except Exception as exc:
            metrics()["errors"].labels(endpoint=endpoint, status=str(status_of(exc))).inc()
            return JSONResponse(error_body(exc), status_code=status_of(exc))
        _observe(endpoint, t0)
        return JSONResponse(json.loads(json.dumps(out, default=str)))

    @routes.post("/campaigns")
    async def campaign_create(self, request: Request) -> Any:
        """Create a draft from the campaign spec in the body (``mktlab.campaigns.spec``)."""
        return await self._lifecycle_call(
            "campaign_create",
            request,
            lambda lc, p, d: lc.create(
                require_inline(d.get("spec", d), "POST /campaigns"), p, why=d.get("why", "")
            ),
        )

    @routes.post("/campaigns/{campaign_id}/{step}")
    async def campaign_step(self, campaign_id: str, step: str, request: Request) -> Any:
        """One lifecycle step; the body holds its arguments (``note``, ``why``, ``reason``, ``rollout``)."""
        return await self._lifecycle_call(
            "campaign_step", request, lambda lc, p, d: lifecycle_step(lc, campaign_id, step, p, d)
        )

    @routes.get("/campaigns/{campaign_id}/record")
    async def campaign_record(self, campaign_id: str, request: Request) -> Any:
        """The campaign's record: state, version, rollout, spec, approvals, simulation."""
        return await self._lifecycle_call(
            "campaign_record", request, lambda lc, p, d: lc.get(campaign_id)
        )

    @routes.get("/campaigns/{campaign_id}/history")
    async def campaign_history(self, campaign_id: str, request: Request) -> Any:
        """Every attempt on the campaign, taken or refused (the audit log)."""
        return await self._lifecycle_call(
            "campaign_history",
            request,
            lambda lc, p, d: json.loads(lc.history(campaign_id).to_json(orient="records")),
        )


def lifecycle_step(lc: Any, campaign_id: str, step: str, principal: Any, d: dict) -> Any:
    """Route ``POST /campaigns/{id}/{step}`` to the lifecycle method of that name."""
    calls = {
        "submit": lambda: lc.submit(campaign_id, principal),
        "approve": lambda: lc.approve(campaign_id, principal, note=str(d.get("note", ""))),
        "reject": lambda: lc.reject(campaign_id, principal, str(d.get("why", ""))),
        "launch": lambda: lc.launch(campaign_id, principal, rollout=d.get("rollout", 0.05)),
        "ramp": lambda: lc.ramp(campaign_id, principal, d.get("rollout")),
        "pause": lambda: lc.pause(campaign_id, principal, reason=str(d.get("reason", ""))),
        "resume": lambda: lc.resume(campaign_id, principal),
        "end": lambda: lc.end(campaign_id, principal, why=str(d.get("why", ""))),
        "archive": lambda: lc.archive(campaign_id, principal),
    }
    if step not in calls:
        raise NotFoundError(f"campaign step {step!r}: expected one of {sorted(calls)}")
    return calls[step]()


MktlabService.add_asgi_middleware(AuthMiddleware, keystore=access.keystore, audit=access.audit)
MktlabService.add_asgi_middleware(
    MktlabHTTPMiddleware,
    max_body_bytes=CFG.max_body_bytes,
    api_paths=("/uplift", "/next_action", "/attribute", "/issue", "/events", "/campaigns"),
    error_prefixes=("/campaigns/",),
    answers=ANSWERS,
    error_model=schemas.ErrorResponse,
)
