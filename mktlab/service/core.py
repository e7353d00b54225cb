"""What the endpoints do, without HTTP: uplift scores, next action, attribution, issuance.

:class:`ServiceCore` holds the loaded champions and the backing stores and answers in
plain dicts. The BentoML class (:mod:`mktlab.service.service`) is a thin shell around
it; tests and the benchmark call it in-process for the same answers. Errors are
mktlab errors: :class:`~mktlab.errors.ValidationError` (HTTP 422),
:class:`~mktlab.errors.NotFoundError` (404), :class:`~mktlab.errors.ServiceUnavailableError`
(503, e.g. Redis down or a capability without a registered model).

``/issue`` runs: idempotency replay by ``request_id`` -> the eligibility of the strategy
saved for the campaign (:class:`mktlab.strategy.Eligibility`: holdout, audience, policy,
frequency caps; the very checks the live workers and the sandbox run) -> the Redis issuer
(stock, budget, per-user limit). A campaign without a saved strategy only has the
issuer's limits. A request is answered once: non-transient answers are remembered per
``request_id`` in Redis, so a retry returns the first answer even when eligibility has
changed since. An issued coupon counts towards every campaign's frequency caps.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mktlab import tracking
from mktlab.campaigns.rollout import CampaignStates
from mktlab.config import service_settings, settings
from mktlab.errors import MktlabError, NotFoundError, ServiceUnavailableError, ValidationError
from mktlab.service.answers import _answer, _first, _num

DENIAL_REASONS = (
    "holdout",
    "not_in_audience",
    "not_drawn",
    "policy_none",
    "low_uplift",
    "capped",
    "out_of_stock",
    "budget_exhausted",
    "duplicate",
)
FALLBACK_ACTIONS = ("coupon", "none")
REQUEST_TTL = 24 * 3600


def unavailable(capability: str, why: str) -> ServiceUnavailableError:
    """The 503 of an endpoint whose capability is not there (no model, no data)."""
    return ServiceUnavailableError(f"capability not available: {capability}: {why}")


def _redis_errors() -> tuple[type[BaseException], ...]:
    import redis

    return (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


class _RequestContext:
    """Audience membership and (lazily) uplift for one ``/issue`` request."""

    def __init__(self, core: ServiceCore, user_id: str, context: Mapping[str, Any]):
        self.core, self.user_id, self.context = core, user_id, context
        self.scored: float | None = None

    def in_audience(self, audience: str, user_id: str) -> bool:
        try:
            return self.core.audiences.in_audience(audience, user_id)
        except NotFoundError as exc:
            raise ServiceUnavailableError(f"the campaign's strategy names {exc}") from exc

    def uplift(self, user_id: str) -> float | None:
        feats = self.core._features(user_id, self.context)
        self.scored = self.core.uplift([feats])[0]["uplift"]
        return self.scored


# ------------------------------------------------------------------------------- core
class ServiceCore:
    """The request logic behind every endpoint.

    Parameters
    ----------
    models : mapping of str to pyfunc
        Loaded models by name (``uplift`` required; ``attribution``, ``rl_policy`` optional).
    served : mapping of str to dict
        What is served: ``{name: {"tag": ..., "mlflow_version": ..., ...}}``.
    schemas : mapping of str to dict
        Input schema per model (``input_columns``, ``categorical``).
    issuer : CouponIssuer, optional
        Created on first use (``MKTLAB_REDIS_URL`` / embedded Redis, default ledger).
    """

    def __init__(
        self,
        models: Mapping[str, Any],
        served: Mapping[str, Mapping[str, Any]] | None = None,
        schemas: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        issuer: Any = None,
        strategies: Any = None,
        audiences: Any = None,
        profiles: Any = None,
        threshold: float | None = None,
        namespace: str | None = None,
    ):
        if "uplift" not in models:
            raise ValidationError("models: the service needs the 'uplift' model")
        cfg = service_settings()
        self.models = dict(models)
        self.served = {k: dict(v) for k, v in (served or {}).items()}
        self.schemas = {k: dict(v) for k, v in (schemas or {}).items()}
        self.threshold = cfg.uplift_threshold if threshold is None else float(threshold)
        self.namespace = namespace or cfg.namespace
        if strategies is None:
            from mktlab.strategy import StrategyCatalog

            strategies = StrategyCatalog()
        if profiles is None:
            from mktlab.datasets.profiles import ProfileLookup

            profiles = ProfileLookup()
        self.strategies = strategies
        self._audiences = audiences
        self.profiles = profiles
        self._issuer = issuer
        self._issuer_lock = threading.Lock()
        self._caps: Any = None
        self._gate: Any = None
        self._bus: Any = None
        self._predictors: dict[str, Any] = {}

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_store(cls, served: Mapping[str, Any] | None = None, **kwargs: Any) -> ServiceCore:
        """Load models from the BentoML model store.

        ``served`` maps names to :class:`~mktlab.service.models.ServedModel` (what the
        service class declared); default: the newest stored model of each served name.
        """
        from mktlab.service import models as store

        bentoml = store.bentoml_module()
        present = dict(served) if served is not None else store.require_models()
        models, served, schemas = {}, {}, {}
        for name, sm in present.items():
            models[name] = tracking.bentoml_load(bentoml, sm.tag)
            with contextlib.suppress(Exception):  # not every pyfunc wraps a python object
                store.single_threaded(models[name].unwrap_python_model())
            served[name] = {"tag": sm.tag, "mlflow_version": sm.mlflow_version}
            schemas[name] = {
                k: sm.metadata.get(k) for k in ("input_columns", "categorical") if k in sm.metadata
            }
        return cls(models, served, schemas, **kwargs)

    @property
    def audiences(self) -> Any:
        """Saved audiences by user id (:class:`mktlab.audience.membership.SavedAudiences`)."""
        if self._audiences is None:
            from mktlab.audience.membership import SavedAudiences

            self._audiences = SavedAudiences()
        return self._audiences

    def issuer(self) -> Any:
        """The coupon issuer, connected on first use (503 while Redis is unreachable)."""
        if self._issuer is None:
            with self._issuer_lock:
                if self._issuer is None:
                    from mktlab.coupons import CouponIssuer

                    durability = service_settings().durability
                    issuer = CouponIssuer(namespace=self.namespace, durability=durability)
                    if durability == "outbox":
                        issuer.start_worker()
                    self._issuer = issuer
        return self._issuer

    def caps(self) -> Any:
        """The frequency-cap ledger the live workers share (Redis, service namespace)."""
        if self._caps is None:
            from mktlab.strategy import RedisCapLedger

            self._caps = RedisCapLedger(self.issuer().redis, self.namespace)
        return self._caps

    def gate(self) -> Any:
        """The campaign lifecycle's published states (paused / gray rollout), service namespace."""
        if self._gate is None:
            self._gate = CampaignStates(self.issuer().redis, self.namespace)
        return self._gate

    def close(self) -> None:
        if self._issuer is not None:
            self._issuer.close()
        if self._bus is not None:
            self._bus.close()

    # ------------------------------------------------------------------ uplift
    def _predict(self, name: str, X: pd.DataFrame) -> Any:
        """Call a model: the pickled mktlab predictor directly when there is one.

        Skips MLflow's per-call pyfunc wrapper (input checks against a schema we do not
        log; about a tenth of a one-row call), which the typed request body replaces.
        """
        fn = self._predictors.get(name)
        if fn is None:
            model = self.models[name]
            fn = model.predict
            with contextlib.suppress(Exception):
                inner = model.unwrap_python_model()
                predictor = getattr(inner, "predictor", None)
                if predictor is not None and callable(getattr(predictor, "predict", None)):
                    fn = predictor.predict
            self._predictors[name] = fn
        return fn(X)

    def input_columns(self, name: str = "uplift") -> list[str] | None:
        cols = self.schemas.get(name, {}).get("input_columns")
        return list(cols) if cols else None

    def _records_scorer(self, name: str) -> Any:
        """The pickled predictor's ``predict_records`` (mktlab uplift models), else ``None``.

        It scores raw rows without building DataFrames (see
        :meth:`mktlab.uplift.UpliftModel.predict_records`); other pyfunc models go through
        the DataFrame path of :meth:`_predict`.
        """
        key = f"{name}:records"
        if key not in self._predictors:
            fn = None
            with contextlib.suppress(Exception):
                predictor = getattr(self.models[name].unwrap_python_model(), "predictor", None)
                if callable(getattr(predictor, "predict_records", None)):
                    fn = predictor.predict_records
            self._predictors[key] = fn
        return self._predictors[key]

    def _check_rows(self, rows: Sequence[Mapping[str, Any]], name: str) -> list[str] | None:
        """Non-empty rows with exactly the model's input columns (each bad row named)."""
        cols = self.input_columns(name)
        if not rows:
            raise ValidationError("rows: no rows given")
        if cols is not None:
            for i, r in enumerate(rows):
                if len(r) == len(cols) and all(c in r for c in cols):
                    continue
                missing = [c for c in cols if c not in r]
                extra = [c for c in r if c not in cols]
                raise ValidationError(
                    f"rows[{i}]: missing feature(s) {missing or 'none'}, unexpected {extra or 'none'}; "
                    f"the {name} model takes {cols}"
                )
        return cols

    def _frame(self, rows: Sequence[Mapping[str, Any]], name: str) -> pd.DataFrame:
        cols = self._check_rows(rows, name)
        if cols is None:
            return pd.DataFrame.from_records(list(rows))
        return pd.DataFrame.from_records([[r[c] for c in cols] for r in rows], columns=cols)

    def _score(self, rows: Sequence[Mapping[str, Any]], *, frame: bool) -> Any:
        """Uplift predictions: a DataFrame, or (``frame=False``, fast path) a dict of arrays."""
        fast = self._records_scorer("uplift")
        if fast is not None:
            self._check_rows(rows, "uplift")
            try:
                return fast(rows, as_frame=frame)
            except MktlabError as exc:
                raise ValidationError(f"rows: {exc}") from exc
        X = self._frame(rows, "uplift")
        try:
            out = self._predict("uplift", X)
        except MktlabError as exc:
            raise ValidationError(f"rows: {exc}") from exc
        if not isinstance(out, pd.DataFrame) or "uplift" not in out.columns:
            raise ServiceUnavailableError(
                "uplift model: its predict() did not return an 'uplift' column"
            )
        return out

    def score(self, rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
        """Predictions of the uplift champion (``uplift, p0, p1, quadrant``) for raw rows.

        A mktlab uplift model scores the rows directly (``predict_records``: no DataFrame
        of the rows, same numbers); any other pyfunc gets the rows as a DataFrame.
        """
        return self._score(rows, frame=True)

    def uplift(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """One answer per row: ``uplift, p0, p1, quadrant, treat``."""
        out = self._score(rows, frame=False)  # a DataFrame or a dict of arrays
        up = np.asarray(out["uplift"], dtype=float)
        n = len(up)
        p0 = np.asarray(out["p0"], dtype=float) if "p0" in out else np.full(n, np.nan)
        p1 = np.asarray(out["p1"], dtype=float) if "p1" in out else np.full(n, np.nan)
        quad = out["quadrant"].astype(str).tolist() if "quadrant" in out else [None] * n
        th = self.threshold
        return [
            {
                "uplift": float(up[i]),
                "p0": _num(p0[i]),
                "p1": _num(p1[i]),
                "quadrant": quad[i],
                "treat": bool(up[i] >= th),
            }
            for i in range(n)
        ]

    # ------------------------------------------------------------------ next action
    def next_action(self, state: Mapping[str, Any], user_id: str | None = None) -> dict[str, Any]:
        """The RL policy's action for ``state``; the documented fallback rule without one.

        Fallback rule (no ``rl_policy@champion``): ``coupon`` when the uplift champion
        predicts uplift >= the treat threshold for these features, else ``none``.
        """
        if "rl_policy" in self.models:
            X = self._frame([state], "rl_policy")
            try:
                pred = self._predict("rl_policy", X)
            except (MktlabError, KeyError, ValueError, TypeError) as exc:
                # the state schema is the policy's business: a missing or wrong field
                # surfaces here as the model's own error, named for the client
                raise ValidationError(f"state: the rl_policy model refused it: {exc!r}") from exc
            action = _first(pred, "action")
            return {
                "user_id": user_id,
                "action": str(action),
                "source": "rl_policy",
                "model_version": self.served.get("rl_policy", {}).get("mlflow_version"),
                "note": "action chosen by rl_policy@champion",
            }
        ans = self.uplift([state])[0]
        return {
            "user_id": user_id,
            "action": "coupon" if ans["treat"] else "none",
            "source": "fallback_rule",
            "model_version": None,
            "uplift": ans["uplift"],
            "note": (
                "no rl_policy@champion is registered; fallback rule: 'coupon' when the uplift "
                f"champion predicts uplift >= {self.threshold:g}, else 'none'"
            ),
        }

    # ------------------------------------------------------------------ attribution
    def attribute(self, journeys: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Channel credits per journey and in total from ``attribution@champion``."""
        model = self.models.get("attribution")
        if model is None:
            raise unavailable(
                "attribution", "no attribution@champion in the model store (`mktlab models import`)"
            )
        if not journeys:
            raise ValidationError("journeys: no journeys given")
        paths = [
            [c.strip() for c in j["path"].split(">")]
            if isinstance(j["path"], str)
            else list(j["path"])
            for j in journeys
        ]
        conv = [float(j.get("conversions", 1.0)) for j in journeys]
        df = pd.DataFrame({"path": paths, "conversions": conv})
        try:
            credits = self._predict("attribution", df)
        except MktlabError as exc:
            raise ValidationError(f"journeys: {exc}") from exc
        if not isinstance(credits, pd.DataFrame):
            credits = pd.DataFrame(credits)
        rows = [
            {c: round(float(v), 10) for c, v in r.items() if v != 0}
            for r in credits.to_dict("records")
        ]
        totals = {c: float(v) for c, v in credits.sum(axis=0).items() if v != 0}
        return {
            "credits": rows,
            "totals": totals,
            "model_version": self.served.get("attribution", {}).get("mlflow_version"),
        }

    # ------------------------------------------------------------------ issuance
    def _req_key(self, campaign_id: str, request_id: str) -> str:
        return f"{self.namespace}:svc:{{{campaign_id}}}:req:{request_id}"

    def issue(
        self,
        campaign_id: str,
        user_id: str,
        request_id: str,
        context: Mapping[str, Any] | None = None,
        now: float | None = None,
    ) -> dict[str, Any]:
        """Decide one coupon request; see the module docstring for the order of checks.

        Returns
        -------
        dict
            ``status`` (``issued``/``denied``), ``reason``, ``coupon_code``, ``seq``,
            ``uplift`` (when scored), ``replayed`` (a retry answered from memory).
        """
        from mktlab.coupons.campaign import check_request_id, check_user_id

        check_user_id(user_id)
        check_request_id(request_id)
        context = dict(context or {})
        issuer = self.issuer()
        try:  # 404 before anything else; the message does not expose the ledger's location
            issuer.campaign(campaign_id)
        except NotFoundError:
            raise NotFoundError(f"campaign_id={campaign_id!r}: no such campaign") from None
        errors = _redis_errors()
        key = self._req_key(campaign_id, request_id)
        try:
            cached = issuer.redis.get(key)
        except errors as exc:
            raise ServiceUnavailableError(
                f"Redis is unreachable: {exc}; nothing was issued"
            ) from exc
        if cached is not None:
            first = json.loads(cached)
            if first["user_id"] != user_id:
                return _answer(
                    campaign_id, user_id, request_id, "denied", "request_conflict", replayed=True
                )
            first["replayed"] = True
            return first
        now = time.time() if now is None else float(now)
        strategy = self.strategies.for_campaign(campaign_id)
        cap_key = f"issue:{campaign_id}:{request_id}"
        reason, uplift = self._eligibility(strategy, user_id, context, now, cap_key)
        if reason is not None:
            ans = _answer(campaign_id, user_id, request_id, "denied", reason, uplift=uplift)
        else:
            res = issuer.issue(campaign_id, user_id, request_id)
            ans = _answer(
                campaign_id,
                user_id,
                request_id,
                res.status,
                res.reason,
                coupon_code=res.coupon_code,
                seq=res.seq,
                uplift=uplift,
            )
            if res.transient:
                return ans
        # remember the answer for retries; an issued coupon counts towards the caps of every
        # campaign. Both best effort: the issuer remembers issued request ids itself.
        with contextlib.suppress(*errors, ServiceUnavailableError):
            pipe = issuer.redis.pipeline(transaction=False)  # one round trip for both
            pipe.set(key, json.dumps(ans), ex=REQUEST_TTL, nx=True)
            if ans["status"] == "issued":
                self.caps().record(user_id, "coupon", now, cap_key, pipe=pipe)
            pipe.execute()
        return ans

    def _eligibility(
        self, strategy: Any, user_id: str, context: Mapping[str, Any], now: float, key: str
    ) -> tuple[str | None, float | None]:
        """The campaign strategy's verdict (:mod:`mktlab.strategy.eligibility`) for a coupon."""
        if strategy is None:
            return None, None
        from mktlab.strategy import Eligibility

        ctx = _RequestContext(self, user_id, context)
        try:
            elig = Eligibility(strategy, ctx, self.caps(), gate=self.gate())
        except ValidationError as exc:
            raise ServiceUnavailableError(
                f"campaign strategy {strategy.name!r} cannot decide single requests: {exc}"
            ) from exc
        verdict = elig.check(user_id, "coupon", now, key, record=False)
        return (None if verdict.allowed else verdict.status), verdict.uplift

    def _features(self, user_id: str, context: Mapping[str, Any]) -> dict[str, Any]:
        cols = self.input_columns("uplift")
        given = context.get("features")
        if given is not None:
            if not isinstance(given, Mapping):
                raise ValidationError(
                    f"context.features: expected an object of {cols}, got {type(given).__name__}"
                )
            return dict(given)
        found = self.profiles.features(user_id, cols or [])
        if found is None:
            raise ValidationError(
                f"context.features: user {user_id!r} has no stored profile with the uplift model's "
                f"features; pass context.features with {cols}"
            )
        return found

    # ------------------------------------------------------------------ events
    def bus(self) -> Any:
        """The live loop's event bus (``MKTLAB_BUS``), opened on first use."""
        if self._bus is None:
            with self._issuer_lock:
                if self._bus is None:
                    from mktlab.live.bus import open_bus

                    s = settings()
                    self._bus = open_bus(namespace=s.live_namespace, known_events=s.event_types)
        return self._bus

    def publish_events(self, events: Sequence[Any]) -> dict[str, Any]:
        """Validate and publish app events; a malformed one goes to the dead-letter store.

        Returns ``published``, ``dead_lettered`` and one ``{index, reason, error}`` per
        refused event (the reasons of :data:`mktlab.live.events.REASONS`).
        """
        from mktlab.live.events import BadEvent, parse_event

        if not events:
            raise ValidationError("events: no events given")
        s = settings()
        good, refused = [], []
        for i, raw in enumerate(events):
            try:
                good.append(parse_event(raw, known_events=s.event_types))
            except BadEvent as exc:
                refused.append({"index": i, "reason": exc.reason, "error": str(exc)})
        bus = self.bus()
        if good:
            bus.publish(good)
        for r in refused:
            payload = json.dumps(events[r["index"]], default=str).encode()
            bus.dead_letter(payload[: 64 * 1024], r["reason"])
        return {"published": len(good), "dead_lettered": len(refused), "refused": refused}

    def live_status(self) -> dict[str, Any]:
        """Dead letters on the bus and the live workers' counters (for ``/metrics``)."""
        ns = settings().live_namespace
        counters = self.issuer().redis.hgetall(f"{ns}:metrics")
        st = self.bus().stats("live")
        return {
            "dead_letters": int(st.get("dead_letters") or 0),
            "workers": {k: int(v) for k, v in counters.items()},
        }

    # ------------------------------------------------------------------ status
    def campaign(self, campaign_id: str) -> dict[str, Any]:
        """Stock, issued, budget used of a campaign, plus the strategy that governs it."""
        try:
            st = self.issuer().status(campaign_id)
        except NotFoundError:
            raise NotFoundError(f"campaign_id={campaign_id!r}: no such campaign") from None
        strategy = self.strategies.for_campaign(campaign_id)
        keys = (
            "campaign_id",
            "stock",
            "issued",
            "remaining",
            "budget",
            "budget_used",
            "paused",
            "ready",
            "ledger_issued",
            "outbox_backlog",
            "pending",
        )
        out = {k: st.get(k) for k in keys}
        out["strategy"] = (
            {
                "name": strategy.name,
                "version": strategy.version,
                "audience": strategy.audience,
                "holdout": strategy.holdout,
                "policy": strategy.policy.to_dict(),
                "caps": [c.to_dict() for c in strategy.caps],
            }
            if strategy
            else None
        )
        return out

    def health(self) -> dict[str, Any]:
        """Served model versions and backing-service status (never raises)."""
        redis_state = "ok"
        try:
            self.issuer().redis.ping()
        except Exception as exc:  # health must answer whatever is broken
            redis_state = f"unavailable: {exc}"
        models = {name: self.served.get(name) for name in ("uplift", "attribution", "rl_policy")}
        return {
            "status": "ok" if redis_state == "ok" else "degraded",
            "models": models,
            "redis": redis_state,
            "endpoints": {
                "uplift": "ok",
                "next_action": "rl_policy" if "rl_policy" in self.models else "fallback_rule",
                "attribute": "ok"
                if "attribution" in self.models
                else "unavailable (no attribution@champion)",
                "issue": "ok" if redis_state == "ok" else "unavailable (Redis)",
            },
            "uplift_threshold": self.threshold,
        }
