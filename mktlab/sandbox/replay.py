"""Replay a strategy over logged decisions and estimate what it would have done.

Steps, all checks first (:func:`check_strategy`): resolve the audience and any uplift
model, validate rules, refuse off-policy estimation on logs without propensities. Then
:func:`decide` walks the log in time order, applying the policy, frequency caps and
budget, and yields the strategy's arm distribution per row. Finally the estimators of
:mod:`mktlab.sandbox.ope` turn logged outcomes into the strategy's conversions,
redemptions, revenue, cost and ROI, each with a bootstrap interval. Rows where the
strategy agrees with the log contribute their logged outcomes (weighted by
``π/μ``); rows where it disagrees are covered by the weights of the agreeing ones (IPS)
or by the reward model (DM / DR).

"Incremental" always means against treating nobody in the same population.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mktlab.errors import NotFoundError, ValidationError
from mktlab.rules.caps import Budget, enforce
from mktlab.rules.engine import compile_rules
from mktlab.rules.governance import FieldSchema
from mktlab.sandbox.data import LoggedData, RewardModel
from mktlab.sandbox.inputs import (
    _rule_events,
    _treat_arm,
    resolve_audience,
    resolve_model,
    uplift_scores,
)
from mktlab.sandbox.ope import (
    ESTIMATORS,
    Interval,
    bootstrap_weights,
    effective_sample_size,
    interval,
    per_arm_terms,
    warn_if_low_ess,
)
from mktlab.strategy.spec import Strategy

METRICS = (
    "treated", "coupons", "redemptions", "cost", "conversions", "incremental_conversions",
    "revenue", "incremental_revenue", "roi",
)  # fmt: skip
NO_PROPENSITY = (
    "the log has no propensities ({reason}): IPS, SNIPS, DM and DR need the probability the "
    "logging policy gave each logged arm to correct for who it chose. Only on-policy replay is "
    "possible (rows where the strategy agrees with the log; unbiased only if the log was "
    "uniformly randomised). Add a propensity column to enable off-policy estimates."
)


@dataclass
class StrategyResult:
    """What a strategy would have done on a log, per estimator, with intervals."""

    strategy: Strategy
    data_name: str
    n_rows: int
    estimates: dict[str, dict[str, Interval]]
    ess: dict[str, float]
    pi: np.ndarray
    on_policy_rows: float
    blocked: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.strategy.name

    @property
    def preferred(self) -> str:
        """The estimator reported by default: DR when available, else the first."""
        return "dr" if "dr" in self.estimates else next(iter(self.estimates))

    def get(self, metric: str, estimator: str | None = None) -> Interval:
        est = estimator or self.preferred
        if est not in self.estimates:
            raise NotFoundError(f"{self.name}: no estimate by {est!r}; have {list(self.estimates)}")
        return self.estimates[est][metric]

    def table(self) -> pd.DataFrame:
        """Long table: estimator, metric, value, lo, hi, se."""
        rows = [
            {
                "strategy": self.name,
                "estimator": e,
                "metric": m,
                "value": iv.value,
                "lo": iv.lo,
                "hi": iv.hi,
                "se": iv.se,
            }
            for e, ms in self.estimates.items()
            for m, iv in ms.items()
        ]
        return pd.DataFrame(rows)

    def summary(self, estimator: str | None = None) -> dict[str, float]:
        est = estimator or self.preferred
        out = {m: iv.value for m, iv in self.estimates[est].items()}
        out.update({f"{m}_lo": iv.lo for m, iv in self.estimates[est].items()})
        out.update({f"{m}_hi": iv.hi for m, iv in self.estimates[est].items()})
        out["on_policy_rows"] = self.on_policy_rows
        out["ess"] = self.ess.get(est, float("nan"))
        return out


# ---------------------------------------------------------------------- resolution
def check_strategy(
    strategy: Strategy,
    data: LoggedData,
    *,
    audiences: Any = None,
    models: Mapping[str, Any] | None = None,
    estimators: Sequence[str] | None = None,
    events: pd.DataFrame | None = None,
    profiles: pd.DataFrame | None = None,
) -> tuple[str, ...]:
    """Every check that can fail, before any replay; returns the estimators to run.

    Raises
    ------
    ValidationError
        Off-policy estimators requested on a log without propensities, an unknown
        estimator or arm, or rules that fail validation (all problems listed).
    NotFoundError
        An unknown audience or model.
    """
    if estimators is None:
        estimators = ESTIMATORS if data.has_propensity else ("replay",)
    estimators = tuple(estimators)
    for e in estimators:
        if e not in (*ESTIMATORS, "replay"):
            raise ValidationError(f"estimator {e!r}: expected one of {(*ESTIMATORS, 'replay')}")
    if not data.has_propensity and any(e != "replay" for e in estimators):
        raise ValidationError(
            f"strategy {strategy.name!r}: refusing off-policy estimation: "
            + NO_PROPENSITY.format(reason=data.meta.get("no_propensity_reason", "none given"))
        )
    resolve_audience(strategy.audience, data, audiences)
    _treat_arm(strategy, data)
    pol = strategy.policy
    if pol.kind == "uplift_threshold":
        resolve_model(str(pol.model), models)
    if pol.kind == "logged" and data.logging_pi() is None:
        raise ValidationError(
            f"strategy {strategy.name!r}: policy 'logged' needs the logging distribution over all arms "
            "(propensities of a two-arm log, or arm_propensities)"
        )
    if strategy.rules is not None:
        names = list(audiences) if isinstance(audiences, Mapping) else None
        if events is not None:
            prof = (
                profiles.reset_index()
                if profiles is not None and "user_id" not in profiles.columns
                else profiles
            )
            if prof is not None:
                prof = prof.drop(columns="user_id")
            schema = FieldSchema.from_frames(events, prof, audiences=names)
        else:
            schema = FieldSchema.from_frames(_rule_events(data), data.X, audiences=names)
        compile_rules(strategy.rules, schema)
    return estimators


# -------------------------------------------------------------------------- decide
def decide(
    strategy: Strategy,
    data: LoggedData,
    *,
    audiences: Any = None,
    models: Mapping[str, Any] | None = None,
    events: pd.DataFrame | None = None,
    profiles: pd.DataFrame | None = None,
) -> tuple[np.ndarray, dict[str, int]]:
    """The strategy's arm probabilities per log row, after caps and budget.

    ``events`` (with ``profiles``) is the event stream a ``rule`` policy runs over;
    without it the rules run over the logged decision rows.

    Returns
    -------
    pi : ndarray, shape (n_rows, n_arms)
    blocked : dict
        Treatments refused by caps (``capped``) and budget (``budget``).
    """
    n, k = len(data), data.n_arms
    pol = strategy.policy
    eligible = resolve_audience(strategy.audience, data, audiences)
    arm = _treat_arm(strategy, data)
    pi = np.zeros((n, k))
    blocked = {"capped": 0, "budget": 0}
    limited = bool(strategy.caps) or not strategy.budget.unlimited
    if pol.kind == "logged":
        logging = data.logging_pi()
        if logging is None:
            raise ValidationError(
                f"strategy {strategy.name!r}: the log's full logging distribution is unknown"
            )
        return logging.copy(), blocked
    rate = float(pol.rate or 0.0)
    if pol.kind == "random" and not limited:
        p = eligible * rate
        pi[:, arm] = p
        pi[:, 0] = 1 - p
        return pi, blocked
    if pol.kind == "rule":
        return _decide_rules(strategy, data, audiences, eligible, arm, events, profiles)
    treat = np.zeros(n, bool)
    if pol.kind == "all":
        treat = eligible.copy()
    elif pol.kind == "random":
        treat = eligible & (np.random.default_rng(pol.seed).random(n) < rate)
    elif pol.kind == "uplift_threshold":
        score = uplift_scores(resolve_model(str(pol.model), models), data, data.arms[arm])
        if pol.threshold is not None:
            treat = eligible & (score > pol.threshold)
        else:
            idx = np.flatnonzero(eligible)
            m = int(np.ceil(float(pol.top_fraction or 0.0) * len(idx)))
            top = idx[np.argsort(-score[idx], kind="stable")[:m]]
            treat[top] = True
    if limited and treat.any():
        treat, blocked = _apply_limits(strategy, data, treat)
    pi[np.arange(n), np.where(treat, arm, 0)] = 1.0
    return pi, blocked


def _apply_limits(
    strategy: Strategy, data: LoggedData, treat: np.ndarray
) -> tuple[np.ndarray, dict[str, int]]:
    order = data.order()
    rows = order[treat[order]]
    users = data.frame[data.user_col].to_numpy()[rows] if data.user_col else rows
    ucode = pd.factorize(pd.Series(users))[0]
    ts = (
        pd.to_datetime(data.frame[data.ts_col])
        .to_numpy()
        .astype("datetime64[ns]")
        .view(np.int64)[rows]
        if data.ts_col
        else rows.astype(np.int64) * 1_000_000_000
    )
    status, _ = enforce(
        np.arange(len(rows)), ucode, ts, np.zeros(len(rows), np.int64), np.ones(len(rows), bool),
        np.full(len(rows), strategy.coupon.face_value), strategy.caps, [strategy.coupon.channel],
        budget=strategy.budget,
    )  # fmt: skip
    out = treat.copy()
    out[rows[status != 0]] = False
    return out, {"capped": int((status == 1).sum()), "budget": int((status == 2).sum())}


def _decide_rules(strategy, data, audiences, eligible, arm, events=None, profiles=None):
    rs = dataclasses.replace(strategy.rules, caps=tuple(strategy.rules.caps) + tuple(strategy.caps))
    net = compile_rules(rs)
    aud = audiences if isinstance(audiences, Mapping) else None
    if events is None:
        ev = _rule_events(data)
        if ev["user_id"].is_unique:
            profiles = data.X.assign(user_id=ev["user_id"].to_numpy())
        firings = net.run_batch(ev, profiles=profiles, audiences=aud, budget=strategy.budget)
    else:
        firings = net.run_batch(events, profiles=profiles, audiences=aud, budget=strategy.budget)
    n = len(data)
    treat = np.zeros(n, bool)
    if len(firings):
        touch = firings["action"].isin(["issue_coupon", "send_message"]).to_numpy()
        ok = touch & (firings["status"] == "ok").to_numpy()
        if events is None:
            treat[firings.loc[ok, "row"].to_numpy(dtype=np.int64)] = True
        else:
            treat = _touched_before(firings.loc[ok, ["user", "ts"]], data, strategy.policy.lookback)
        status = firings.loc[touch, "status"].astype(str)
        blocked = {
            "capped": int((status == "capped").sum()),
            "budget": int((status == "budget").sum()),
        }
    else:
        blocked = {"capped": 0, "budget": 0}
    treat &= eligible
    pi = np.zeros((n, data.n_arms))
    pi[np.arange(n), np.where(treat, arm, 0)] = 1.0
    return pi, blocked


def _touched_before(touches: pd.DataFrame, data: LoggedData, lookback: int | None) -> np.ndarray:
    """Decision rows whose user had an allowed touch at or before the decision time."""
    if data.ts_col is None or data.user_col is None:
        raise ValidationError(
            f"{data.name}: a rule policy over an event stream needs user and time columns"
        )
    log = pd.DataFrame(
        {
            "user": data.frame[data.user_col].to_numpy(),
            "ts": pd.to_datetime(data.frame[data.ts_col]).to_numpy().astype("datetime64[ns]"),
            "pos": np.arange(len(data)),
        }
    ).sort_values("ts", kind="stable")
    right = pd.DataFrame(
        {
            "user": touches["user"].to_numpy(),
            "ts": touches["ts"].to_numpy().astype("datetime64[ns]"),
        }
    )
    right["hit"] = True
    right = right.sort_values("ts", kind="stable")
    tol = None if lookback is None else pd.Timedelta(seconds=lookback)
    if log["user"].dtype != right["user"].dtype:
        log["user"] = log["user"].astype(object)
        right["user"] = right["user"].astype(object)
    m = pd.merge_asof(log, right, on="ts", by="user", direction="backward", tolerance=tol)
    treat = np.zeros(len(data), bool)
    treat[m["pos"].to_numpy()] = m["hit"].fillna(False).to_numpy(dtype=bool)
    return treat


# ------------------------------------------------------------------------ estimate
def fit_reward_models(
    data: LoggedData, reward_model: RewardModel | None = None
) -> dict[str, np.ndarray]:
    """Cross-fitted ``q(x, a)`` for conversions and revenue (reuse across strategies)."""
    rm = reward_model or RewardModel()
    X = data.X
    out = {"conversion": rm.fit_predict(X, data.action, data.conversions, data.n_arms)}
    out["revenue"] = (
        rm.fit_predict(X, data.action, data.revenue, data.n_arms)
        if data.revenue.any()
        else np.zeros((len(data), data.n_arms))
    )
    return out


def _metrics(V: np.ndarray, treated: float, strategy: Strategy) -> dict[str, np.ndarray]:
    conv, conv0, red, rev, rev0 = (V[..., i] for i in range(5))
    c = strategy.coupon
    cost = red * c.face_value + treated * c.send_cost
    inc_rev = rev - rev0
    with np.errstate(divide="ignore", invalid="ignore"):
        roi = np.where(cost > 0, (inc_rev * c.margin - cost) / np.where(cost > 0, cost, 1), np.nan)
    t = np.full_like(conv, treated)
    return {
        "treated": t, "coupons": t, "redemptions": red, "cost": cost, "conversions": conv,
        "incremental_conversions": conv - conv0, "revenue": rev, "incremental_revenue": inc_rev, "roi": roi,
    }  # fmt: skip


def estimate(
    strategy: Strategy,
    data: LoggedData,
    pi: np.ndarray,
    estimators: Sequence[str],
    *,
    q_hat: Mapping[str, np.ndarray] | None = None,
    n_boot: int = 500,
    alpha: float = 0.05,
    seed: int = 0,
    min_ess: float = 50,
    min_ess_fraction: float = 0.01,
) -> tuple[dict[str, dict[str, Interval]], dict[str, float], list[str]]:
    """Per-estimator metrics with bootstrap intervals, ESS and warnings."""
    n, _k = pi.shape
    pi0 = np.zeros_like(pi)
    pi0[:, 0] = 1.0
    treated = float(pi[:, 1:].sum())
    out: dict[str, dict[str, Interval]] = {}
    ess: dict[str, float] = {}
    notes: list[str] = []
    blocks: list[np.ndarray] = []
    for e in estimators:
        base = "snips" if e == "replay" else e
        p = np.ones(n) if e == "replay" else data.pscore
        qc = q_hat["conversion"] if q_hat and base in ("dm", "dr") else None
        qr = q_hat["revenue"] if q_hat and base in ("dm", "dr") else None
        tc, w = per_arm_terms(base, data.action, p, data.conversions, pi, qc)
        tc0, w0 = per_arm_terms(base, data.action, p, data.conversions, pi0, qc)
        tr, _ = per_arm_terms(base, data.action, p, data.revenue, pi, qr)
        tr0, _ = per_arm_terms(base, data.action, p, data.revenue, pi0, qr)
        blocks.append(
            np.column_stack([tc.sum(1), tc0.sum(1), tc[:, 1:].sum(1), tr.sum(1), tr0.sum(1), w, w0])
        )
        if base != "dm":
            ess[e] = effective_sample_size(w)
            msg = warn_if_low_ess(ess[e], n, e, min_ess, min_ess_fraction)
            if msg:
                notes.append(msg)
        if base == "snips" and (w.sum() == 0 or w0.sum() == 0):
            raise ValidationError(
                f"strategy {strategy.name!r}: no logged row agrees with the strategy (or with treating "
                f"nobody); {e} has nothing to average"
            )
    # one set of bootstrap replicates shared by every estimator (paired comparisons, and
    # the Poisson draws — the dominant cost on large logs — are made once)
    M = np.hstack(blocks)
    sums = [M.sum(0)[None, :]]
    nbs = [np.array([float(n)])]
    for W in bootstrap_weights(n, n_boot, seed):
        sums.append(W @ M)
        nbs.append(W.sum(1))
    S_all, nb_all = np.vstack(sums), np.concatenate(nbs)
    for k, e in enumerate(estimators):
        base = "snips" if e == "replay" else e
        S = S_all[:, 7 * k : 7 * (k + 1)]
        if base == "snips":
            with np.errstate(divide="ignore", invalid="ignore"):
                V = n * np.column_stack(
                    [
                        S[:, 0] / S[:, 5],
                        S[:, 1] / S[:, 6],
                        S[:, 2] / S[:, 5],
                        S[:, 3] / S[:, 5],
                        S[:, 4] / S[:, 6],
                    ]
                )
        else:
            V = S[:, :5] * (n / nb_all)[:, None]
        mets = _metrics(V, treated, strategy)  # row 0: the point estimate; then replicates
        out[e] = {m: interval(float(mets[m][0]), mets[m][1:], alpha) for m in METRICS}
        for m in ("treated", "coupons"):
            out[e][m] = Interval(treated, treated, treated, 0.0)
    return out, ess, notes


def replay(
    strategy: Strategy,
    data: LoggedData,
    *,
    audiences: Any = None,
    models: Mapping[str, Any] | None = None,
    estimators: Sequence[str] | None = None,
    q_hat: Mapping[str, np.ndarray] | None = None,
    reward_model: RewardModel | None = None,
    n_boot: int = 500,
    alpha: float = 0.05,
    seed: int = 0,
    events: pd.DataFrame | None = None,
    profiles: pd.DataFrame | None = None,
    pi: np.ndarray | None = None,
) -> StrategyResult:
    """Replay ``strategy`` over ``data`` and estimate its outcomes.

    Parameters
    ----------
    strategy : Strategy
    data : LoggedData
    audiences : mapping or audience store, optional
        Where audience names resolve (see :func:`resolve_audience`).
    models : mapping, optional
        Model name -> object with ``predict(X)``; other names load from the registry.
    estimators : sequence of str, optional
        Subset of ``ips, snips, dm, dr`` (default: all four), or ``("replay",)`` — the
        only choice when the log has no propensities.
    q_hat : mapping, optional
        Precomputed reward-model predictions ``{"conversion": (n, k), "revenue": (n, k)}``
        (see :func:`fit_reward_models`); fitted here when DM / DR need them.
    n_boot, alpha, seed : bootstrap replicates, interval level, random seed.
    events, profiles : DataFrame, optional
        An event stream (``user_id, ts, event, ...``) and profiles for ``rule`` policies:
        rules run over it in time order with caps and budget, and a decision is treated
        when a rule touched its user before it (within ``policy.lookback``).
    pi : ndarray, optional
        The target policy's arm probabilities ``(n_rows, n_arms)`` computed elsewhere
        (an RL policy, an external evaluation policy); replaces the strategy's policy,
        audience, caps and budget, which then only label the result.

    Returns
    -------
    StrategyResult
    """
    ests = check_strategy(
        strategy,
        data,
        audiences=audiences,
        models=models,
        estimators=estimators,
        events=events,
        profiles=profiles,
    )
    if pi is None:
        pi, blocked = decide(
            strategy, data, audiences=audiences, models=models, events=events, profiles=profiles
        )
    else:
        pi, blocked = np.asarray(pi, dtype=float), {"capped": 0, "budget": 0}
        if pi.shape != (len(data), data.n_arms):
            raise ValidationError(f"pi: expected shape {(len(data), data.n_arms)}, got {pi.shape}")
    if q_hat is None and any(e in ("dm", "dr") for e in ests):
        q_hat = fit_reward_models(data, reward_model)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # thin matrix products: threads only add contention
        estimates, ess, notes = estimate(
            strategy, data, pi, ests, q_hat=q_hat, n_boot=n_boot, alpha=alpha, seed=seed
        )
    agree = float(pi[np.arange(len(data)), data.action].sum())
    result = StrategyResult(
        strategy, data.name, len(data), estimates, ess, pi, agree, blocked, notes
    )
    if not data.has_propensity:
        result.notes.append(
            NO_PROPENSITY.format(reason=data.meta.get("no_propensity_reason", "none given"))
        )
    return result


def replay_many(
    strategies: Sequence[Strategy], data: LoggedData, **kwargs: Any
) -> list[StrategyResult]:
    """Replay several strategies on one log, checking all first and fitting q once."""
    # load each registry model once, not once per check and per strategy
    models = dict(kwargs.get("models") or {})
    for s in strategies:
        if s.policy.kind == "uplift_threshold" and s.policy.model not in models:
            models[s.policy.model] = resolve_model(str(s.policy.model), models)
    kwargs["models"] = models
    ests = None
    for s in strategies:
        ests = check_strategy(
            s,
            data,
            audiences=kwargs.get("audiences"),
            models=kwargs.get("models"),
            estimators=kwargs.get("estimators"),
            events=kwargs.get("events"),
            profiles=kwargs.get("profiles"),
        )
    if kwargs.get("q_hat") is None and ests and any(e in ("dm", "dr") for e in ests):
        kwargs["q_hat"] = fit_reward_models(data, kwargs.pop("reward_model", None))
    kwargs.pop("reward_model", None)
    return [replay(s, data, **kwargs) for s in strategies]


def true_incremental(pi: np.ndarray, y0: np.ndarray, y1: np.ndarray) -> float:
    """Ground truth for a two-arm world: ``Σ_i π(1 | x_i) (y1_i − y0_i)``."""
    return float(np.sum(pi[:, 1] * (np.asarray(y1, float) - np.asarray(y0, float))))


__all__ = [
    "METRICS",
    "Budget",
    "StrategyResult",
    "check_strategy",
    "decide",
    "estimate",
    "fit_reward_models",
    "replay",
    "replay_many",
    "resolve_audience",
    "resolve_model",
    "true_incremental",
    "uplift_scores",
]
