"""The retrospective of a campaign: what it did against its holdout, and against its forecast.

:func:`retrospective` reads the live decision log (:class:`mktlab.live.DecisionLog`
rows) and the outcomes that followed, and measures the campaign as an intention-to-treat
experiment: every user the strategy decided about is in the holdout (a salted hash, random
and fixed for the campaign's life) or not, and everybody not held out is compared with
everybody held out, whether or not they were finally treated (capped, not drawn, outside
the gray rollout). That comparison is unbiased whatever the policy did, because the
holdout was drawn before any of it; refusals only dilute it.

* **Lift**: conversion rate of the not-held-out users against the holdout, absolute and
  relative, with 95% intervals (:func:`mktlab.experiments.compare_proportions`), and a
  sample-ratio check of the split against the strategy's holdout fraction.
* **Incremental conversions and revenue**: the per-user differences times the users not
  held out (revenue per user by Welch, :func:`~mktlab.experiments.compare_means`).
* **Spend** is accounting, not an estimate: coupons redeemed × face value plus sends ×
  send cost (the strategy's :class:`~mktlab.strategy.CouponTerms`; redemptions are the
  coupon recipients who converted unless the ledger's count is given).
  **ROI** ``(incremental revenue × margin − spend) / spend`` is linear in the
  incremental revenue, so its interval is that interval mapped through (the delta
  method, exact here).
* **Segments**: the same comparison inside each segment, labelled with the uplift
  quadrants (:func:`mktlab.uplift.quadrants.assign_quadrants` on the holdout rate and
  the uplift where its interval excludes 0). With a model's ``scores`` the users are put
  in their predicted quadrant and each quadrant's observed effect is measured: the check
  that persuadables did respond and sleeping dogs did not.
* **Attribution** of the conversions over touch paths (:func:`mktlab.attribution.attribute`).
* **Forecast**: the sandbox prediction stored with the launched version (spend, ROI,
  reach, ...) next to what happened, with the relative error.

:func:`review_campaign` takes the strategy and the stored prediction from a
:class:`~mktlab.campaigns.lifecycle.Lifecycle` record.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mktlab.errors import SchemaError, ValidationError, require_columns
from mktlab.experiments.stats import check_alpha, compare_means, compare_proportions, srm_test

ACTIONS = ("coupon", "message")
PREDICTED = ("spend", "roi", "reach", "incremental_conversions", "coupons", "messages")


# ------------------------------------------------------------------------------ inputs
def _epoch(ts: pd.Series, what: str) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(ts):
        return ts.to_numpy(dtype=float)
    try:
        return pd.to_datetime(ts, utc=True).dt.as_unit("ns").astype("int64").to_numpy() / 1e9
    except (TypeError, ValueError) as exc:
        raise SchemaError(f"{what}.ts: expected epoch seconds or timestamps ({exc})") from exc


def _strategy(strategy: Any):
    if strategy is None:
        return None
    from mktlab.strategy import Strategy

    if isinstance(strategy, Strategy):
        return strategy
    if isinstance(strategy, Mapping):
        return Strategy.from_dict(dict(strategy))
    raise ValidationError(
        f"strategy: expected a Strategy or its dict, got {type(strategy).__name__}"
    )


def _users(decisions: pd.DataFrame, strategy, actions: Sequence[str], notes: list[str]):
    """One row per user: arm, entry (first decision), last decision, sends, coupons."""
    if not isinstance(decisions, pd.DataFrame):
        raise ValidationError(f"decisions: expected a DataFrame, got {type(decisions).__name__}")
    require_columns(decisions, ("user_id", "ts", "holdout", "status"), table="decisions")
    dec = decisions
    if strategy is not None and "source" in dec.columns:
        mine = dec["source"].astype(str) == strategy.name
        if not mine.any():
            raise ValidationError(
                f"decisions: none of strategy {strategy.name!r}; the log holds "
                f"{sorted(dec['source'].astype(str).unique())[:10]}"
            )
        dec = dec[mine]
    if "action" in dec.columns:
        # lifecycle updates skip eligibility, so their holdout flag says nothing
        dec = dec[dec["action"].astype(str).isin(list(actions))]
    if dec.empty:
        raise ValidationError(f"decisions: no {list(actions)} decisions to review")
    hold = dec["holdout"]
    if hold.isna().any():
        raise SchemaError(f"decisions.holdout: {int(hold.isna().sum())} missing value(s)")
    d = pd.DataFrame(
        {
            "user_id": dec["user_id"].astype(str).to_numpy(),
            "ts": _epoch(dec["ts"], "decisions"),
            "holdout": hold.astype(bool).to_numpy(),
            "sent": (dec["status"].astype(str) == "ok").to_numpy() & ~hold.astype(bool).to_numpy(),
        }
    )
    kind = dec["action"].astype(str).to_numpy() if "action" in dec.columns else "coupon"
    d["coupon"] = d["sent"] & (kind == "coupon")
    g = d.groupby("user_id", sort=True)
    # a stacked refusal is logged with holdout False even for a held-out user: any() decides
    u = g.agg(
        holdout=("holdout", "any"),
        entry=("ts", "min"),
        last=("ts", "max"),
        sends=("sent", "sum"),
        coupons=("coupon", "sum"),
    )
    u["treated"] = u["sends"] > 0
    if strategy is not None and strategy.holdout > 0:
        from mktlab.strategy import in_holdout

        expected = in_holdout(strategy, list(u.index))
        off = int((expected != u["holdout"].to_numpy()).sum())
        if off:
            notes.append(
                f"{off} user(s) logged in the other arm than strategy {strategy.name!r}'s "
                "holdout hash gives (another salt or holdout fraction in the log?)"
            )
    return u


def _join_outcomes(
    users: pd.DataFrame,
    outcomes: pd.DataFrame,
    *,
    outcome_event: str,
    window: Any,
    revenue_col: str | None,
    value_per_conversion: float | None,
) -> tuple[pd.DataFrame, pd.DataFrame | None, bool]:
    """Add ``converted`` and ``revenue`` per user; also the conversion rows (for attribution)."""
    if not isinstance(outcomes, pd.DataFrame):
        raise ValidationError(f"outcomes: expected a DataFrame, got {type(outcomes).__name__}")
    u = users.copy()
    if "event" in outcomes.columns:  # raw events: join like DecisionLog.to_logged
        from mktlab.rules.model import parse_duration

        require_columns(outcomes, ("user_id", "ts", "event"), table="outcomes")
        horizon = parse_duration(window, what="window")
        ev = outcomes[outcomes["event"].astype(str) == outcome_event]
        has_rev = bool(revenue_col) and revenue_col in ev.columns
        amt = (
            pd.to_numeric(ev[revenue_col], errors="coerce").fillna(0.0).to_numpy()
            if has_rev
            else np.zeros(len(ev))
        )
        out = pd.DataFrame(
            {
                "user_id": ev["user_id"].astype(str).to_numpy(),
                "ots": _epoch(ev["ts"], "outcomes"),
                "amt": amt,
            }
        )
        j = out.merge(u[["entry", "last"]], left_on="user_id", right_index=True)
        # after the first decision, and within the window of the last one: the same span
        # in both arms, since held-out users are logged at the same triggers
        j = j[(j["ots"] > j["entry"]) & (j["ots"] <= j["last"] + horizon)]
        agg = j.groupby("user_id").agg(n=("amt", "size"), rev=("amt", "sum"))
        u["converted"] = u.index.map(agg["n"]).fillna(0).astype(float).to_numpy() > 0
        u["revenue"] = u.index.map(agg["rev"]).fillna(0.0).astype(float).to_numpy()
        conv = j.groupby("user_id").agg(ts=("ots", "min"), value=("amt", "sum")).reset_index()
    else:
        if "converted" not in outcomes.columns:
            raise SchemaError(
                "outcomes: expected events (user_id, ts, event[, amount]) or one row per user "
                f"(user_id, converted[, revenue]); got {list(outcomes.columns)}"
            )
        require_columns(outcomes, ("user_id", "converted"), table="outcomes")
        o = outcomes.assign(user_id=outcomes["user_id"].astype(str))
        has_rev = bool(revenue_col) and revenue_col in o.columns
        agg = o.groupby("user_id").agg(
            converted=("converted", "max"),
            **({"revenue": (revenue_col, "sum")} if has_rev else {}),
        )
        u["converted"] = u.index.map(agg["converted"]).fillna(0).astype(float).to_numpy() > 0
        u["revenue"] = (
            u.index.map(agg["revenue"]).fillna(0.0).astype(float).to_numpy() if has_rev else 0.0
        )
        conv = None
    if not has_rev:
        u["revenue"] = u["converted"] * float(value_per_conversion or 0.0)
    has_value = has_rev or value_per_conversion is not None
    return u, conv, has_value


# ------------------------------------------------------------------------- the report
@dataclass
class Retrospective:
    """A campaign's measured effect, spend and forecast error.

    Attributes
    ----------
    summary : dict
        Headline numbers (``lift``, ``lift_lo``, ``lift_hi``, ``rel_lift``..., ``roi``,
        ``roi_lo``, ``roi_hi``, ``spend``, ``incremental_conversions``, ...).
    tables : dict of DataFrame
        ``arms``; ``segments``, ``quadrants``, ``attribution``, ``prediction`` when their
        inputs were given.
    notes : list of str
        What to read the numbers with (SRM, arm mismatches, missing revenue).
    """

    summary: dict[str, Any]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    title: str = "Campaign retrospective"

    def figures(self) -> dict[str, Any]:
        """Matplotlib Figures: ``lift`` and, with segments, ``segments``."""
        from mktlab.campaigns import review_html

        return review_html.figures(self)

    def plot(self) -> Any:
        """The lift figure (the segments figure is displayed below it in a notebook)."""
        from mktlab.campaigns import review_html

        return review_html.plot(self)

    def _repr_html_(self) -> str:
        from mktlab.campaigns import review_html

        return review_html.html_body(self)

    def to_html(self, path: str | Path) -> Path:
        """Write a self-contained HTML page (plots inline) atomically; return the path."""
        from mktlab.campaigns import review_html

        return review_html.to_html(self, path)


# ------------------------------------------------------------------------ measurement
def _arm_table(u: pd.DataFrame, alpha: float) -> pd.DataFrame:
    from scipy.stats import beta

    rows = []
    for name, m in (("not held out", ~u["holdout"]), ("holdout", u["holdout"])):
        n, x = int(m.sum()), int(u.loc[m, "converted"].sum())
        # Clopper-Pearson: honest at the small rates and small holdouts campaigns have
        lo = float(beta.ppf(alpha / 2, x, n - x + 1)) if x > 0 else 0.0
        hi = float(beta.ppf(1 - alpha / 2, x + 1, n - x)) if x < n else 1.0
        rows.append({"arm": name, "users": n, "treated": int(u.loc[m, "treated"].sum()),
                     "conversions": x, "rate": x / n, "rate_lo": lo, "rate_hi": hi,
                     "revenue": float(u.loc[m, "revenue"].sum()),
                     "revenue_per_user": float(u.loc[m, "revenue"].mean())})  # fmt: skip
    return pd.DataFrame(rows)


def _segment_table(u: pd.DataFrame, seg: pd.Series, alpha: float, thresholds) -> pd.DataFrame:
    from mktlab.uplift.quadrants import QuadrantThresholds, assign_quadrants

    rows = []
    for name, g in u.groupby(seg, sort=True, observed=True):
        h, t = g[g["holdout"]], g[~g["holdout"]]
        row = {"segment": name, "users": len(g), "n_treated": len(t), "n_holdout": len(h),
               "rate_treated": t["converted"].mean() if len(t) else math.nan,
               "rate_holdout": h["converted"].mean() if len(h) else math.nan}  # fmt: skip
        if len(t) and len(h):
            c = compare_proportions(int(h["converted"].sum()), len(h), int(t["converted"].sum()),
                                    len(t), alpha=alpha)  # fmt: skip
            row.update(lift=c.abs_lift, lift_lo=c.abs_ci_low, lift_hi=c.abs_ci_high, p_value=c.p_value,
                       incremental_conversions=c.abs_lift * len(t))  # fmt: skip
        else:  # a segment without one of the arms has no measurable effect
            row.update(lift=math.nan, lift_lo=math.nan, lift_hi=math.nan, p_value=math.nan,
                       incremental_conversions=math.nan)  # fmt: skip
        rows.append(row)
    df = pd.DataFrame(rows)
    base = float(u.loc[u["holdout"], "converted"].mean())
    th = thresholds or QuadrantThresholds(uplift=0.0, response=base)
    # only an effect whose interval excludes 0 makes persuadables or sleeping dogs
    sure = np.where((df["lift_lo"] > 0) | (df["lift_hi"] < 0), df["lift"], 0.0)
    df["quadrant"] = assign_quadrants(df["rate_holdout"].fillna(0.0).to_numpy(), sure, th)
    df.loc[df["lift"].isna(), "quadrant"] = "unmeasured"
    return df


def _segments_of(segments: Any, u: pd.DataFrame, decisions: pd.DataFrame) -> pd.Series:
    """A segment label per user from a Series (by user_id), a frame, or a decisions column."""
    if isinstance(segments, str):
        if segments not in decisions.columns:
            raise SchemaError(
                f"segments: {segments!r} is not a column of decisions; give a Series indexed by "
                "user_id or a frame (user_id, segment)"
            )
        s = (
            decisions.assign(user_id=decisions["user_id"].astype(str))
            .groupby("user_id")[segments]
            .first()
        )
    elif isinstance(segments, pd.DataFrame):
        if "user_id" in segments.columns:
            segments = segments.set_index("user_id")
        cols = [c for c in segments.columns if c != "user_id"]
        if len(cols) != 1:
            raise SchemaError(f"segments: expected one segment column besides user_id, got {cols}")
        s = segments[cols[0]]
    elif isinstance(segments, pd.Series):
        s = segments
    else:
        raise ValidationError(
            f"segments: expected a column name, Series or DataFrame, got {type(segments).__name__}"
        )
    s = s[~pd.Index(s.index.astype(str)).duplicated()]
    s.index = s.index.astype(str)
    out = u.index.map(s)
    return pd.Series(out, index=u.index, name="segment").fillna("(none)").astype(str)


def _quadrant_table(u: pd.DataFrame, scores: pd.DataFrame, alpha: float, thresholds):
    from mktlab.uplift.quadrants import QUADRANTS, assign_quadrants, quadrant_summary

    require_columns(scores, ("user_id", "mu0"), table="scores")
    if "mu1" not in scores.columns and "uplift" not in scores.columns:
        raise SchemaError("scores: needs mu1 or uplift beside user_id, mu0")
    sc = scores.assign(user_id=scores["user_id"].astype(str)).drop_duplicates("user_id")
    sc = sc.set_index("user_id").reindex(u.index)
    if sc["mu0"].isna().all():
        raise ValidationError("scores: no reviewed user has a score (user_id mismatch?)")
    mu0 = sc["mu0"].to_numpy(float)
    tau = (
        sc["uplift"].to_numpy(float) if "uplift" in sc.columns else sc["mu1"].to_numpy(float) - mu0
    )
    ok = np.isfinite(mu0) & np.isfinite(tau)
    q = pd.Series("(no score)", index=u.index, dtype=object)
    q[ok] = assign_quadrants(mu0[ok], tau[ok], thresholds)
    pred = quadrant_summary(q[ok].to_numpy(), mu0[ok], mu0[ok] + tau[ok])
    seen = _segment_table(u, q.rename("segment"), alpha, None).drop(columns="quadrant")
    seen = seen.rename(columns={"segment": "quadrant", "lift": "observed_lift",
                                "lift_lo": "observed_lift_lo", "lift_hi": "observed_lift_hi"})  # fmt: skip
    out = pred[["quadrant", "share", "mean_uplift"]].rename(
        columns={"mean_uplift": "predicted_uplift"}
    )
    out = out.merge(seen, on="quadrant", how="outer")
    order = {k: i for i, k in enumerate((*QUADRANTS, "(no score)"))}
    return out.sort_values("quadrant", key=lambda c: c.map(order)).reset_index(drop=True)


def _attribution_table(touches: pd.DataFrame, u: pd.DataFrame, conv, methods) -> pd.DataFrame:
    from mktlab.attribution import Paths, attribute

    require_columns(touches, ("user_id", "ts", "channel"), table="touches")
    t = touches.assign(user_id=touches["user_id"].astype(str), ts=_epoch(touches["ts"], "touches"))
    t = t[t["user_id"].isin(u.index)]
    if t.empty:
        raise ValidationError("touches: none of the reviewed users has a touch")
    if conv is None:  # per-user outcomes carry no time: a convert's conversion ends its path
        last = t.groupby("user_id")["ts"].max()
        conv_users = u.index[u["converted"].to_numpy()]
        conv = pd.DataFrame({"user_id": conv_users, "ts": last.reindex(conv_users).to_numpy() + 1,
                             "value": u.loc[conv_users, "revenue"].to_numpy()}).dropna()  # fmt: skip
    if conv.empty:
        raise ValidationError("touches: no reviewed user converted, there is nothing to attribute")
    conv = conv.assign(value=np.where(conv["value"] > 0, conv["value"], 1.0))
    paths = Paths.from_touches(t[["user_id", "ts", "channel"]], conv[["user_id", "ts", "value"]],
                               id_col="user_id")  # fmt: skip
    res = attribute(paths, list(methods))
    out = res.conversions.add_suffix("_conversions")
    out["share_markov" if "markov" in res.conversions else "share"] = res.shares.iloc[:, -1]
    return out.reset_index()


def _prediction_table(prediction: Mapping[str, Any], actual: Mapping[str, Any]) -> pd.DataFrame:
    rows = []
    intervals = prediction.get("intervals") or {}
    for k in PREDICTED:
        p = prediction.get(k)
        if p is None or isinstance(p, bool) or not isinstance(p, int | float) or k not in actual:
            continue
        a = actual[k]
        iv = intervals.get("cost" if k == "spend" else "treated" if k == "reach" else k) or {}
        rows.append({"metric": k, "predicted": float(p), "actual": float(a) if a is not None else math.nan,
                     "predicted_lo": iv.get("lo", math.nan), "predicted_hi": iv.get("hi", math.nan)})  # fmt: skip
    if not rows:
        raise ValidationError(
            f"prediction: none of {list(PREDICTED)} is a number; got {sorted(prediction)}"
        )
    df = pd.DataFrame(rows)
    df["error"] = df["actual"] - df["predicted"]
    with np.errstate(divide="ignore", invalid="ignore"):
        df["relative_error"] = np.where(df["predicted"] != 0, df["error"] / df["predicted"].abs(),
                                        np.nan)  # fmt: skip
    return df


def retrospective(
    decisions: pd.DataFrame,
    outcomes: pd.DataFrame,
    *,
    strategy: Any = None,
    prediction: Mapping[str, Any] | None = None,
    segments: Any = None,
    touches: pd.DataFrame | None = None,
    scores: pd.DataFrame | None = None,
    outcome_event: str = "purchase",
    window: str | int = "7d",
    revenue_col: str | None = None,
    value_per_conversion: float | None = None,
    redemptions: int | None = None,
    rollout: tuple[str, float] | None = None,
    actions: Sequence[str] = ACTIONS,
    attribution_methods: Sequence[str] = ("first_touch", "last_touch", "linear", "markov"),
    quadrant_thresholds: Any = None,
    alpha: float = 0.05,
    title: str | None = None,
) -> Retrospective:
    """Measure a campaign from its decision log against its holdout.

    Parameters
    ----------
    decisions : DataFrame
        Live decision rows (:meth:`mktlab.live.DecisionLog.read`): ``user_id, ts, holdout,
        status`` at least; ``source`` (kept: the strategy's) and ``action`` (kept:
        ``actions``) when present.
    outcomes : DataFrame
        Later events (``user_id, ts, event`` and ``amount``): a user converted with an
        ``outcome_event`` after their first decision and within ``window`` of their last;
        or one row per user, ``user_id, converted`` (and ``revenue``).
    strategy : Strategy or dict, optional
        Coupon terms (face value, send cost, margin), the holdout fraction for the
        sample-ratio check, and the ``source`` to keep. Without it spend is 0 and ROI n/a.
    prediction : dict, optional
        The sandbox's forecast stored with the launched version (``spend``, ``roi``,
        ``reach``...; see :meth:`Lifecycle.record_simulation`).
    segments : str, Series or DataFrame, optional
        A decisions column, a Series indexed by ``user_id``, or a ``user_id, segment`` frame.
    touches : DataFrame, optional
        ``user_id, ts, channel`` touch rows; the conversions are attributed over them.
    scores : DataFrame, optional
        A model's ``user_id, mu0`` and ``mu1`` or ``uplift``: predicted quadrants, each
        with its observed effect.
    revenue_col : str, optional
        Revenue column of ``outcomes`` (default ``amount`` for events, ``revenue`` per user).
    value_per_conversion : float, optional
        Revenue of a conversion when the outcomes carry none.
    redemptions : int, optional
        Coupons redeemed (the ledger's count); default the coupon recipients who converted.
    rollout : (salt, fraction), optional
        Review only users inside the campaign's final gray rollout, in both arms
        (:func:`mktlab.campaigns.rollout.in_rollout`): less dilution, still unbiased.

    Raises
    ------
    SchemaError
        A table misses a column.
    ValidationError
        No holdout (lift cannot be measured), nobody outside it, nothing to review.
    """
    alpha = check_alpha(alpha)
    strat = _strategy(strategy)
    notes: list[str] = []
    u = _users(decisions, strat, actions, notes)
    if rollout is not None:
        from mktlab.campaigns.rollout import in_rollout

        salt, frac = rollout
        keep = np.array([in_rollout(x, salt, float(frac)) for x in u.index], dtype=bool)
        u = u[keep]
        if u.empty:
            raise ValidationError(f"rollout={rollout!r}: no reviewed user is inside the rollout")
    if not u["holdout"].any():
        raise ValidationError(
            f"decisions: the campaign has no holdout (none of {len(u):,} users was held out), "
            "so lift cannot be measured; give the strategy a holdout fraction"
        )
    if u["holdout"].all():
        raise ValidationError(
            f"decisions: every one of {len(u):,} users was held out; nobody could be treated"
        )
    if revenue_col is None:
        revenue_col = "amount" if "event" in getattr(outcomes, "columns", ()) else "revenue"
    u, conv, has_value = _join_outcomes(
        u, outcomes, outcome_event=outcome_event, window=window, revenue_col=revenue_col,
        value_per_conversion=value_per_conversion,
    )  # fmt: skip
    h, t = u[u["holdout"]], u[~u["holdout"]]
    nh, nt = len(h), len(t)
    c = compare_proportions(int(h["converted"].sum()), nh, int(t["converted"].sum()), nt,
                            alpha=alpha, arm="not held out", control="holdout")  # fmt: skip
    s: dict[str, Any] = {
        "n_users": len(u), "n_treated": nt, "n_holdout": nh, "reach": int(t["treated"].sum()),
        "rate_treated": c.mean_arm, "rate_holdout": c.mean_control,
        "lift": c.abs_lift, "lift_lo": c.abs_ci_low, "lift_hi": c.abs_ci_high,
        "rel_lift": c.rel_lift, "rel_lift_lo": c.rel_ci_low, "rel_lift_hi": c.rel_ci_high,
        "p_value": c.p_value, "chance_to_beat": c.chance_to_beat,
        "incremental_conversions": c.abs_lift * nt,
        "incremental_conversions_lo": c.abs_ci_low * nt,
        "incremental_conversions_hi": c.abs_ci_high * nt,
    }  # fmt: skip
    if nh >= 2 and nt >= 2:
        r = compare_means(float(h["revenue"].mean()), float(h["revenue"].std()), nh,
                          float(t["revenue"].mean()), float(t["revenue"].std()), nt, alpha=alpha)  # fmt: skip
        inc, inc_lo, inc_hi = r.abs_lift * nt, r.abs_ci_low * nt, r.abs_ci_high * nt
    else:
        inc = float(t["revenue"].mean() - h["revenue"].mean()) * nt
        inc_lo = inc_hi = math.nan
    s.update(incremental_revenue=inc, incremental_revenue_lo=inc_lo, incremental_revenue_hi=inc_hi)
    coupons, sends = int(t["coupons"].sum()), int(t["sends"].sum())
    redeemed = (
        int(((t["coupons"] > 0) & t["converted"]).sum())
        if redemptions is None
        else int(redemptions)
    )
    terms = strat.coupon if strat is not None else None
    face = terms.face_value if terms else 0.0
    send_cost = terms.send_cost if terms else 0.0
    margin = terms.margin if terms else 1.0
    spend = redeemed * face + sends * send_cost
    s.update(coupons=coupons, messages=sends - coupons, sends=sends, redemptions=redeemed,
             spend=float(spend), margin=margin)  # fmt: skip
    if spend > 0 and has_value:
        # spend is booked, not estimated: ROI is linear in the incremental revenue
        s.update(roi=(inc * margin - spend) / spend, roi_lo=(inc_lo * margin - spend) / spend,
                 roi_hi=(inc_hi * margin - spend) / spend)  # fmt: skip
    else:
        s.update(roi=None, roi_lo=None, roi_hi=None)
        notes.append(
            "ROI n/a: "
            + (
                "nothing was spent"
                if spend <= 0
                else "the outcomes carry no revenue (give revenue_col or value_per_conversion)"
            )
        )
    if strat is not None and strat.holdout > 0:
        srm = srm_test({"not held out": nt, "holdout": nh},
                       {"not held out": 1 - strat.holdout, "holdout": strat.holdout})  # fmt: skip
        s.update(srm_p_value=srm.p_value, srm_mismatch=srm.mismatch)
        if srm.mismatch:
            notes.append(
                f"sample ratio mismatch: {nh / len(u):.2%} held out against {strat.holdout:.0%} "
                f"planned (p={srm.p_value:.2g}); the split is broken, do not trust the lift"
            )
    if strat is not None:
        s.update(strategy=strat.name, strategy_version=strat.version)
    tables = {"arms": _arm_table(u, alpha)}
    if segments is not None:
        tables["segments"] = _segment_table(
            u, _segments_of(segments, u, decisions), alpha, quadrant_thresholds
        )
    if scores is not None:
        tables["quadrants"] = _quadrant_table(u, scores, alpha, quadrant_thresholds)
    if touches is not None:
        tables["attribution"] = _attribution_table(touches, u, conv, attribution_methods)
    if prediction is not None:
        if not isinstance(prediction, Mapping):
            raise ValidationError(f"prediction: expected a dict, got {type(prediction).__name__}")
        tables["prediction"] = _prediction_table(prediction, s)
        if prediction.get("source"):
            s["prediction_source"] = prediction["source"]
    name = title or (
        f"Retrospective: {strat.name} v{strat.version}" if strat else "Campaign retrospective"
    )
    return Retrospective(s, tables, notes, name)


def review_campaign(
    lifecycle: Any, campaign_id: str, decisions: pd.DataFrame, outcomes: pd.DataFrame, **kw: Any
) -> Retrospective:
    """:func:`retrospective` with the strategy and stored prediction of ``lifecycle``'s record.

    The launched version's strategy and simulation (else the current one's); with a
    partial final rollout, only users inside it are reviewed (pass ``rollout=None`` to
    keep everybody).
    """
    rec = lifecycle.get(campaign_id)
    version = rec.get("launched_version") or rec.get("version")
    sim = rec.get("simulation")
    spec = rec.get("spec") or {}
    strategy = spec.get("strategy")
    if version is not None and version != rec.get("version") and hasattr(lifecycle, "versions"):
        for v in lifecycle.versions(campaign_id):
            if v.get("version") == version:
                sim, strategy = v.get("simulation"), (v.get("spec") or {}).get("strategy", strategy)
    if strategy is None:
        raise ValidationError(f"campaign {campaign_id!r}: its record holds no strategy")
    strat = _strategy(strategy)
    frac = rec.get("rollout")
    launched = rec.get("state") not in (None, "draft", "in_review", "approved")
    if "rollout" not in kw and launched and frac is not None and 0.0 < float(frac) < 1.0:
        kw["rollout"] = (strat.assignment_salt, float(frac))
    kw.setdefault("prediction", sim)
    kw.setdefault("title", f"Retrospective: {rec.get('name') or campaign_id} (v{version})")
    return retrospective(decisions, outcomes, strategy=strat, **kw)
