"""What the endpoints do, without HTTP: uplift scores, next action, attribution, issuance.

:class:`ServiceCore` holds the loaded champions and the backing stores and answers in
plain dicts. The BentoML class (:mod:`mktlab.service.service`) is a thin shell around
it; tests and the benchmark call it in-process for the same answers. Errors are
mktlab errors: :class:`~mktlab.errors.ValidationError` (HTTP 422),
:class:`~mktlab.errors.NotFoundError` (404), :class:`~mktlab.errors.ServiceUnavailableError`
(503, e.g. Redis down or a capability without a registered model).

``/issue`` runs, in order (cheapest first): idempotency replay by ``request_id`` ->
audience membership (identity map + saved bitmap) -> frequency cap -> uplift threshold
-> the Redis issuer (stock, budget, per-user limit). A request is answered once:
non-transient answers are remembered per ``request_id`` in Redis, so a retry returns
the first answer even when eligibility has changed since.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mktlab.config import service_settings, settings
from mktlab.errors import MktlabError, NotFoundError, ServiceUnavailableError, ValidationError
from mktlab.service.policy import CampaignPolicy, PolicyStore

DENIAL_REASONS = (
    "not_in_audience",
    "low_uplift",
    "fatigue_cap",
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


# ----------------------------------------------------------------------------- lookups
class _Stamped:
    """Reload a derived object when the file it comes from changes (mtime, size)."""

    def __init__(self) -> None:
        self._stamp: Any = None
        self._value: Any = None
        self._checked = 0.0
        self._lock = threading.Lock()

    def get(self, path_fn, load, every: float = 1.0) -> Any:
        now = time.monotonic()
        if self._value is not None and now - self._checked < every:
            return self._value
        with self._lock:
            path = path_fn()
            try:
                st = path.stat()
                stamp = (str(path), st.st_mtime_ns, st.st_size)
            except FileNotFoundError:
                stamp = None
            if stamp is None:
                self._value, self._stamp = None, None
            elif stamp != self._stamp or self._value is None:
                self._value, self._stamp = load(), stamp
            self._checked = now
            return self._value


class IdentityLookup:
    """``user_id`` -> dense ``uid`` through the saved identity map (reloaded when re-saved)."""

    def __init__(self, path: Any = None):
        self.path = path
        self._cache = _Stamped()

    def _pointer(self):
        from mktlab.identity.map import default_path

        root = self.path or default_path()
        return root / "CURRENT"

    def _map(self):
        from mktlab.identity import IdentityMap

        imap = self._cache.get(self._pointer, lambda: IdentityMap.load(self.path))
        if imap is None:
            raise unavailable(
                "audience membership", f"no identity map saved at {self._pointer().parent}"
            )
        return imap

    def uid(self, user_id: str) -> int | None:
        try:
            return int(self._map().lookup("user_id", user_id).uid)
        except NotFoundError:
            return None


class AudienceMembership:
    """Membership of a uid in saved audiences (bitmaps re-read when the catalog changes)."""

    def __init__(self, catalog: Any = None):
        from mktlab.audience import AudienceCatalog

        self.catalog = catalog if catalog is not None else AudienceCatalog()
        self._bitmaps: dict[str, Any] = {}
        self._stamp: Any = None
        self._checked = 0.0
        self._lock = threading.Lock()

    def _fresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < 1.0:
            return
        with self._lock:
            try:
                st = self.catalog.path.stat()
                stamp = (st.st_mtime_ns, st.st_size)
            except FileNotFoundError:
                stamp = None
            if stamp != self._stamp:
                self._bitmaps, self._stamp = {}, stamp
            self._checked = now

    def contains(self, audience: str, uid: int) -> bool:
        self._fresh()
        bm = self._bitmaps.get(audience)
        if bm is None:
            try:
                bm = self.catalog.get(audience).bitmap
            except NotFoundError as exc:
                raise NotFoundError(f"campaign policy names audience {audience!r}: {exc}") from exc
            self._bitmaps[audience] = bm
        return uid in bm


class ProfileLookup:
    """Feature rows by ``user_id`` from the world's ``profiles.parquet`` (for ``/issue``)."""

    def __init__(self, path: Any = None):
        self.path = path
        self._cache = _Stamped()

    def _path(self):
        return self.path or settings().world_dir / "profiles.parquet"

    def _load(self) -> pd.DataFrame:
        df = pd.read_parquet(self._path())
        return df.drop_duplicates("user_id").set_index("user_id")

    def features(self, user_id: str, columns: Sequence[str]) -> dict[str, Any] | None:
        df = self._cache.get(self._path, self._load, every=5.0)
        if df is None or user_id not in df.index:
            return None
        missing = [c for c in columns if c not in df.columns]
        if missing:
            return None
        row = df.loc[user_id, list(columns)]
        return {c: (v.item() if hasattr(v, "item") else v) for c, v in row.items()}


class FatigueCounter:
    """Coupons a user received recently, across campaigns (Redis sorted set per user)."""

    def __init__(self, redis_client: Any, namespace: str):
        self.redis = redis_client
        self.namespace = namespace

    def _key(self, user_id: str) -> str:
        return f"{self.namespace}:svc:fatigue:{{{user_id}}}"

    def count(self, user_id: str, per: int, now: float) -> int:
        return int(self.redis.zcount(self._key(user_id), now - per, "+inf"))

    def record(self, user_id: str, token: str, per: int, now: float, pipe: Any = None) -> None:
        """Count a coupon at ``now``; keep ``per`` seconds of history (queued on ``pipe`` if given)."""
        key = self._key(user_id)
        p = pipe if pipe is not None else self.redis.pipeline(transaction=False)
        p.zadd(key, {token: now})
        p.zremrangebyscore(key, "-inf", now - per)
        p.expire(key, int(per) + 60)
        if pipe is None:
            p.execute()


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
        policies: PolicyStore | None = None,
        identity: IdentityLookup | None = None,
        audiences: AudienceMembership | None = None,
        profiles: ProfileLookup | None = None,
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
        self.policies = policies or PolicyStore()
        self.identity = identity or IdentityLookup()
        self._audiences = audiences
        self.profiles = profiles or ProfileLookup()
        self._issuer = issuer
        self._issuer_lock = threading.Lock()
        self._fatigue: FatigueCounter | None = None
        self._predictors: dict[str, Any] = {}

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_store(cls, served: Mapping[str, Any] | None = None, **kwargs: Any) -> ServiceCore:
        """Load models from the BentoML model store.

        ``served`` maps names to :class:`~mktlab.service.store.ServedModel` (what the
        service class declared); default: the newest stored model of each served name.
        """
        from mktlab.service import store

        bentoml = store.bentoml_module()
        present = dict(served) if served is not None else store.require_models()
        models, served, schemas = {}, {}, {}
        for name, sm in present.items():
            models[name] = bentoml.mlflow.load_model(sm.tag)
            with contextlib.suppress(Exception):  # not every pyfunc wraps a python object
                single_threaded(models[name].unwrap_python_model())
            served[name] = {"tag": sm.tag, "mlflow_version": sm.mlflow_version}
            schemas[name] = {
                k: sm.metadata.get(k) for k in ("input_columns", "categorical") if k in sm.metadata
            }
        return cls(models, served, schemas, **kwargs)

    @property
    def audiences(self) -> AudienceMembership:
        if self._audiences is None:
            self._audiences = AudienceMembership()
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

    def _fatigue_counter(self) -> FatigueCounter:
        if self._fatigue is None:
            self._fatigue = FatigueCounter(self.issuer().redis, self.namespace)
        return self._fatigue

    def close(self) -> None:
        if self._issuer is not None:
            self._issuer.close()

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
        policy = self.policies.get(campaign_id)
        reason, uplift = self._eligibility(policy, user_id, context, now)
        if reason is not None:
            ans = _answer(campaign_id, user_id, request_id, "denied", reason, uplift=uplift)
        else:
            res = issuer.issue(campaign_id, user_id, request_id)
            ans = _answer(
                campaign_id, user_id, request_id, res.status, res.reason,
                coupon_code=res.coupon_code, seq=res.seq, uplift=uplift,
            )  # fmt: skip
            if res.transient:
                return ans
        # one round trip: remember the answer for retries and, for a coupon, count it
        # towards every campaign's frequency cap. Both are best effort: the issuer itself
        # remembers issued request ids, and a missed count only loosens a cap.
        with contextlib.suppress(*errors):
            pipe = issuer.redis.pipeline(transaction=False)
            pipe.set(key, json.dumps(ans), ex=REQUEST_TTL, nx=True)
            if ans["status"] == "issued":
                self._fatigue_counter().record(
                    user_id,
                    f"{campaign_id}:{request_id}",
                    self._fatigue_retention(),
                    now,
                    pipe=pipe,
                )
            pipe.execute()
        return ans

    def _fatigue_retention(self) -> int:
        """Seconds of issuance history kept per user: the longest cap window (at least a week)."""
        pers = [p.fatigue_per for p in self.policies.all().values() if p.fatigue_max is not None]
        return max([7 * 24 * 3600, *pers])

    def _eligibility(
        self, policy: CampaignPolicy | None, user_id: str, context: Mapping[str, Any], now: float
    ) -> tuple[str | None, float | None]:
        if policy is None:
            return None, None
        if policy.audience is not None:
            uid = self.identity.uid(user_id)
            if uid is None or not self.audiences.contains(policy.audience, uid):
                return "not_in_audience", None
        if policy.fatigue_max is not None:
            try:
                n = self._fatigue_counter().count(user_id, policy.fatigue_per, now)
            except _redis_errors() as exc:
                raise ServiceUnavailableError(
                    f"Redis is unreachable: {exc}; nothing was issued"
                ) from exc
            if n >= policy.fatigue_max:
                return "fatigue_cap", None
        if policy.min_uplift is not None:
            feats = self._features(user_id, context)
            up = self.uplift([feats])[0]["uplift"]
            if up < policy.min_uplift:
                return "low_uplift", up
            return None, up
        return None, None

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

    # ------------------------------------------------------------------ status
    def campaign(self, campaign_id: str) -> dict[str, Any]:
        """Stock, issued, budget used of a campaign, plus its eligibility policy."""
        try:
            st = self.issuer().status(campaign_id)
        except NotFoundError:
            raise NotFoundError(f"campaign_id={campaign_id!r}: no such campaign") from None
        policy = self.policies.get(campaign_id)
        keys = ("campaign_id", "stock", "issued", "remaining", "budget", "budget_used", "paused",
                "ready", "ledger_issued", "outbox_backlog", "pending")  # fmt: skip
        out = {k: st.get(k) for k in keys}
        out["policy"] = policy.to_dict() if policy else None
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


def single_threaded(obj: Any, _depth: int = 0, _seen: set | None = None) -> int:
    """Set ``n_jobs=1`` on every fitted estimator inside ``obj``; return how many.

    A served model answers one small request per thread: worker processes and batching
    give the parallelism. LightGBM fitted with ``n_jobs=2`` starts an OpenMP team for
    every one-row predict, which under load costs tens of milliseconds per call.
    """
    seen = _seen if _seen is not None else set()
    if (
        _depth > 8
        or id(obj) in seen
        or isinstance(obj, str | bytes | int | float | np.ndarray | pd.DataFrame)
    ):
        return 0
    seen.add(id(obj))
    n = 0
    if hasattr(obj, "n_jobs") and hasattr(obj, "set_params") and getattr(obj, "n_jobs", 1) != 1:
        with contextlib.suppress(Exception):
            obj.set_params(n_jobs=1)
            n += 1
    if isinstance(obj, dict):
        children = list(obj.values())
    elif isinstance(obj, list | tuple | set):
        children = list(obj)
    else:
        children = list(getattr(obj, "__dict__", {}).values())
    for child in children:
        n += single_threaded(child, _depth + 1, seen)
    return n


def _num(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _first(pred: Any, column: str) -> Any:
    if isinstance(pred, pd.DataFrame):
        return pred[column].iloc[0] if column in pred.columns else pred.iloc[0, 0]
    if isinstance(pred, pd.Series):
        return pred.iloc[0]
    arr = np.asarray(pred)
    return arr.reshape(-1)[0].item() if arr.size else None


def _answer(
    campaign_id: str,
    user_id: str,
    request_id: str,
    status: str,
    reason: str | None,
    *,
    coupon_code: str | None = None,
    seq: int | None = None,
    uplift: float | None = None,
    replayed: bool = False,
) -> dict[str, Any]:
    return {
        "campaign_id": campaign_id,
        "user_id": user_id,
        "request_id": request_id,
        "status": status,
        "reason": reason,
        "coupon_code": coupon_code,
        "seq": seq,
        "uplift": uplift,
        "replayed": replayed,
    }
