"""Sequential monitoring: anytime-valid confidence sequences and guardrail auto-stop.

A fixed-horizon test looked at every day rejects a true null far more often than alpha
(with 28 daily looks about 4 times as often). A *confidence sequence* holds the true
effect at every look at once with probability ``1 - alpha``, so one may peek daily and
stop whenever it excludes zero.

The boundary is the two-sided normal mixture of Robbins, in the form of Howard,
Ramdas, McAuliffe, Sekhon (2021, eq. 14), applied to the difference in means with the
plug-in (unpooled) variance — the asymptotic confidence sequence of Waudby-Smith et
al. (2023). For an estimate ``d`` with standard error ``se`` the sequence is::

    d ± se · b(r),   b(r) = sqrt((1 + 1/(c r)) · log((1 + c r) / α²))

with ``r = n_eff / n_eff_opt`` the information fraction (``n_eff = 1 / (1/n_c + 1/n_t)``)
and ``c = 2 log(1/α) + log(1 + 2 log(1/α))``, which makes the sequence tightest when each
arm holds ``n_opt`` units (Howard et al., sec. 3.5). The matching always-valid p-value is
the running minimum of ``1 / Λ``, ``Λ = (1 + c r)^(-1/2) exp(z² / (2 (1 + 1/(c r))))``
(the mixture martingale; Ville's inequality gives ``P(sup Λ >= 1/α) <= α``).

References
----------
Howard, Ramdas, McAuliffe, Sekhon (2021), "Time-uniform, nonparametric, nonasymptotic
confidence sequences", Annals of Statistics 49(2).
Johari, Koomen, Pekelis, Walsh (2017), "Peeking at A/B tests" (the mSPRT).
Waudby-Smith, Arnold, Wu, Ramdas (2023), "Time-uniform central limit theory and
asymptotic confidence sequences".
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pandas as pd
from scipy import stats

from mktlab.errors import ValidationError, require_columns
from mktlab.experiments import report
from mktlab.experiments.stats import SRM_THRESHOLD, check_alpha, srm_test

log = logging.getLogger("mktlab.experiments")


def _c(alpha: float) -> float:
    la = math.log(1 / alpha)
    return 2 * la + math.log(1 + 2 * la)


def mixture_boundary(info_fraction: Any, alpha: float = 0.05) -> np.ndarray:
    """Anytime-valid |z| boundary at information fraction ``r`` (see the module docstring).

    Parameters
    ----------
    info_fraction : float or array
        ``n_eff / n_eff_opt`` (> 0); the boundary is tightest near 1.
    alpha : float, default 0.05
    """
    alpha = check_alpha(alpha)
    r = np.asarray(info_fraction, dtype=float)
    if np.any(~(r > 0)):
        raise ValidationError("info_fraction: must be > 0")
    cr = _c(alpha) * r
    return np.sqrt((1 + 1 / cr) * np.log((1 + cr) / alpha**2))


def mixture_pvalue(z: Any, info_fraction: Any, alpha: float = 0.05) -> np.ndarray:
    """``min(1, 1/Λ)`` for the normal-mixture martingale at each look (not yet running-min)."""
    alpha = check_alpha(alpha)
    r = np.asarray(info_fraction, dtype=float)
    cr = _c(alpha) * r
    log_lambda = -0.5 * np.log1p(cr) + np.asarray(z, dtype=float) ** 2 / (2 * (1 + 1 / cr))
    return np.minimum(1.0, np.exp(-log_lambda))


@dataclass(frozen=True)
class ConfidenceSequence:
    """Anytime-valid confidence sequence for a difference in means between two arms.

    Parameters
    ----------
    alpha : float, default 0.05
    n_opt : float, default 10_000
        Units per arm at which the sequence is tightest; set it to the planned sample
        size per arm. It must be fixed before the data are seen.
    """

    alpha: float = 0.05
    n_opt: float = 10_000

    def __post_init__(self) -> None:
        check_alpha(self.alpha)
        if not (isinstance(self.n_opt, int | float) and self.n_opt >= 2):
            raise ValidationError(f"n_opt: must be a number >= 2, got {self.n_opt!r}")

    def info_fraction(self, n_control: Any, n_arm: Any) -> np.ndarray:
        """``n_eff / n_eff_opt`` with ``n_eff = 1 / (1/n_c + 1/n_t)`` and ``n_eff_opt = n_opt / 2``."""
        nc, nt = np.asarray(n_control, dtype=float), np.asarray(n_arm, dtype=float)
        return (1 / (1 / nc + 1 / nt)) / (self.n_opt / 2)

    def radius(self, std_error: Any, n_control: Any, n_arm: Any) -> np.ndarray:
        """Half-width of the sequence at each look."""
        return np.asarray(std_error, dtype=float) * mixture_boundary(
            self.info_fraction(n_control, n_arm), self.alpha
        )

    def interval(
        self, estimate: Any, std_error: Any, n_control: Any, n_arm: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(low, high)`` of the sequence at each look."""
        rad = self.radius(std_error, n_control, n_arm)
        est = np.asarray(estimate, dtype=float)
        return est - rad, est + rad

    def p_value(self, estimate: Any, std_error: Any, n_control: Any, n_arm: Any) -> np.ndarray:
        """Always-valid p-values over consecutive looks (running minimum of ``1/Λ``)."""
        se = np.asarray(std_error, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(se > 0, np.asarray(estimate, dtype=float) / se, 0.0)
        p = mixture_pvalue(z, self.info_fraction(n_control, n_arm), self.alpha)
        return np.minimum.accumulate(np.atleast_1d(p))


@dataclass(frozen=True)
class Guardrail:
    """A metric that must not get significantly worse; breaching it stops the experiment.

    Parameters
    ----------
    metric : str
    higher_is_better : bool, default True
        Direction of "better": a guardrail on revenue is True, on unsubscribes False.
    """

    metric: str
    higher_is_better: bool = True


@dataclass
class MonitorResult:
    """What a sequential monitor saw: one row per look × metric × arm, and its decisions."""

    history: pd.DataFrame
    decisions: list[dict[str, Any]]
    stopped: bool
    stop_day: Any = None
    reason: str = ""
    alpha: float = 0.05
    n_opt: float = 10_000

    def plot(self, metric: str, arm: str | None = None, ax: Any = None) -> Any:
        """Estimate, confidence sequence and naive CI over time for one metric."""
        return report.plot_sequential(self, metric, arm=arm, ax=ax)

    def log(self, *, experiment: str | None = None, run_name: str | None = None) -> None:
        """Log history, decisions and plots to MLflow."""
        report.log_monitor(self, experiment=experiment, run_name=run_name)


@dataclass
class SequentialMonitor:
    """Watch an experiment look after look; stop on a guardrail breach (or a win).

    Parameters
    ----------
    metrics : sequence of str
        Metrics to watch (means of per-unit values; 0/1 for rates).
    control : str, default "control"
    alpha : float, default 0.05
    n_opt : float, default 10_000
        Planned units per arm (tunes the confidence sequence).
    guardrails : sequence of Guardrail
        A guardrail whose confidence sequence lies wholly on the harmful side of zero
        stops the experiment.
    stop_on_success : str, optional
        A primary metric; stop when its sequence lies wholly above zero for some arm.
    shares : mapping arm -> planned share, optional
        For the sample-ratio check at each look; equal shares by default.
    srm_threshold : float or None, default 0.001
        Stop when the arm counts fail the χ² sample-ratio check at this level (a broken
        split invalidates every metric); ``None`` disables the check. The level is
        strict because the check repeats at every look.

    Notes
    -----
    Feed :meth:`update` the *cumulative* per-arm sums after each look. Each decision is
    appended to :attr:`decisions` and logged on the ``mktlab.experiments`` logger.
    """

    metrics: Sequence[str]
    control: str = "control"
    alpha: float = 0.05
    n_opt: float = 10_000
    guardrails: Sequence[Guardrail] = ()
    stop_on_success: str | None = None
    shares: Mapping[str, float] | None = None
    srm_threshold: float | None = SRM_THRESHOLD
    decisions: list[dict[str, Any]] = field(default_factory=list, init=False)
    rows: list[dict[str, Any]] = field(default_factory=list, init=False)
    stopped: bool = field(default=False, init=False)
    stop_day: Any = field(default=None, init=False)
    reason: str = field(default="", init=False)
    _pmin: dict[tuple[str, str], float] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.cs = ConfidenceSequence(self.alpha, self.n_opt)
        self.metrics = [str(m) for m in self.metrics]
        if not self.metrics:
            raise ValidationError("metrics: give at least one metric to monitor")
        for g in self.guardrails:
            if not isinstance(g, Guardrail):
                raise ValidationError(f"guardrails: expected Guardrail, got {type(g).__name__}")
            if g.metric not in self.metrics:
                raise ValidationError(
                    f"guardrails: metric {g.metric!r} is not monitored ({self.metrics})"
                )
        if self.stop_on_success is not None and self.stop_on_success not in self.metrics:
            raise ValidationError(
                f"stop_on_success: metric {self.stop_on_success!r} is not monitored"
            )

    def update(self, day: Any, cumulative: pd.DataFrame) -> dict[str, Any]:
        """Take one look.

        Parameters
        ----------
        day : any
            Label of the look (a date or day number).
        cumulative : pandas.DataFrame
            Columns ``arm, metric, n, sum, sum_sq``: cumulative units, sum and sum of
            squares of each metric per arm up to and including this look.

        Returns
        -------
        dict
            The decision of this look: ``action`` ("continue" or "stop"), ``reason``.
        """
        if self.stopped:
            raise ValidationError(
                f"day: the experiment was stopped on {self.stop_day!r}; no further looks"
            )
        require_columns(cumulative, ["arm", "metric", "n", "sum", "sum_sq"], table="cumulative")
        cum = cumulative.assign(
            arm=cumulative["arm"].astype(str), metric=cumulative["metric"].astype(str)
        )
        arms = list(pd.unique(cum["arm"]))
        if self.control not in arms:
            raise ValidationError(f"control: unknown arm {self.control!r}; arms are {arms}")
        if len(arms) < 2:
            raise ValidationError(f"arm: an experiment needs at least two arms, got {arms}")
        idx = {
            (str(m), str(a)): (float(n), float(s), float(q))
            for m, a, n, s, q in cum[["metric", "arm", "n", "sum", "sum_sq"]].itertuples(
                index=False, name=None
            )
        }
        decision: dict[str, Any] = {"day": day, "action": "continue", "reason": ""}
        if self.srm_threshold is not None:
            counts = {a: int(idx.get((self.metrics[0], a), (0.0, 0.0, 0.0))[0]) for a in arms}
            if sum(counts.values()) > 0:
                srm = srm_test(counts, self.shares, threshold=self.srm_threshold)
                decision["srm_p_value"] = srm.p_value
                if srm.mismatch:
                    decision.update(
                        action="stop",
                        metric=None,
                        arm=None,
                        reason=f"sample ratio mismatch: counts {counts}, chi2 p={srm.p_value:.3g}",
                    )
        for metric in self.metrics:
            for a in arms:
                if a == self.control:
                    continue
                row = self._look(day, metric, a, idx)
                self.rows.append(row)
                if not row["valid"]:
                    continue
                for g in self.guardrails:
                    harmful = row["cs_high"] < 0 if g.higher_is_better else row["cs_low"] > 0
                    if g.metric == metric and harmful and decision["action"] == "continue":
                        decision.update(
                            action="stop", metric=metric, arm=a,
                            reason=f"guardrail {metric!r} significantly worse in arm {a!r}: "
                            f"lift {row['estimate']:.4g}, {1 - self.alpha:.0%} CS "
                            f"[{row['cs_low']:.4g}, {row['cs_high']:.4g}]",
                        )  # fmt: skip
                if (
                    self.stop_on_success == metric
                    and row["cs_low"] > 0
                    and decision["action"] == "continue"
                ):
                    decision.update(
                        action="stop", metric=metric, arm=a,
                        reason=f"primary {metric!r} significantly better in arm {a!r}: CS "
                        f"[{row['cs_low']:.4g}, {row['cs_high']:.4g}]",
                    )  # fmt: skip
        self.decisions.append(decision)
        if decision["action"] == "stop":
            self.stopped, self.stop_day, self.reason = True, day, decision["reason"]
            log.warning("experiment stopped on %s: %s", day, decision["reason"])
        else:
            log.info("look %s: continue", day)
        return decision

    def _look(
        self,
        day: Any,
        metric: str,
        arm: str,
        idx: dict[tuple[str, str], tuple[float, float, float]],
    ) -> dict[str, Any]:
        for a in (self.control, arm):
            if (metric, a) not in idx:
                raise ValidationError(f"cumulative: no row for metric {metric!r} and arm {a!r}")
        nc, sc, qc = idx[(metric, self.control)]
        nt, st, qt = idx[(metric, arm)]
        out: dict[str, Any] = {
            "day": day,
            "metric": metric,
            "arm": arm,
            "n_control": nc,
            "n_arm": nt,
        }
        if nc < 2 or nt < 2:
            return {**out, "valid": False}
        mc, mt = sc / nc, st / nt
        # variance of each mean from the running sums (sample variance, ddof=1, over n)
        vc = max(qc / nc - mc**2, 0.0) / (nc - 1)
        vt = max(qt / nt - mt**2, 0.0) / (nt - 1)
        se = math.sqrt(vc + vt)
        d = mt - mc
        lo, hi = self.cs.interval(d, se, nc, nt)
        zq = stats.norm.isf(self.alpha / 2)
        p_now = float(self.cs.p_value(d, se, nc, nt)[0])
        key = (metric, arm)
        self._pmin[key] = min(self._pmin.get(key, 1.0), p_now)
        naive_p = float(2 * stats.norm.sf(abs(d / se))) if se > 0 else 1.0
        return {
            **out, "valid": se > 0, "mean_control": mc, "mean_arm": mt, "estimate": d, "std_error": se,
            "cs_low": float(lo), "cs_high": float(hi), "naive_low": d - zq * se, "naive_high": d + zq * se,
            "p_always_valid": self._pmin[key], "p_naive": naive_p,
        }  # fmt: skip

    def result(self) -> MonitorResult:
        """The history so far as a :class:`MonitorResult`."""
        return MonitorResult(pd.DataFrame(self.rows), list(self.decisions), self.stopped, self.stop_day,
                             self.reason, self.alpha, self.n_opt)  # fmt: skip


def cumulative_stats(
    data: pd.DataFrame, metrics: Sequence[str], *, arm: str = "arm", day: str = "day"
) -> pd.DataFrame:
    """Cumulative ``n, sum, sum_sq`` per look × arm × metric from unit-level rows.

    Each unit is counted on the day it entered (its row's ``day``).
    """
    require_columns(data, [arm, day, *metrics], table="data")
    for m in metrics:
        if not pd.api.types.is_numeric_dtype(data[m]) and not pd.api.types.is_bool_dtype(data[m]):
            raise ValidationError(f"{m}: metric must be numeric, got dtype {data[m].dtype}")
    frames = []
    for m in metrics:
        y = data[m].astype("float64")
        g = pd.DataFrame(
            {"day": data[day], "arm": data[arm].astype(str), "y": y, "y2": y * y}
        ).dropna()
        daily = g.groupby(["arm", "day"], sort=True).agg(
            n=("y", "size"), sum=("y", "sum"), sum_sq=("y2", "sum")
        )
        # every arm on every day, so the running sums line up across arms
        daily = cast(
            pd.DataFrame, daily.unstack("arm", fill_value=0).stack("arm", future_stack=True)
        ).fillna(0)
        cum = daily.groupby(level="arm").cumsum().reset_index()
        cum["metric"] = m
        frames.append(cum)
    return pd.concat(frames, ignore_index=True)[["day", "arm", "metric", "n", "sum", "sum_sq"]]


def monitor(
    data: pd.DataFrame,
    metrics: Sequence[str],
    *,
    arm: str = "arm",
    day: str = "day",
    control: str = "control",
    alpha: float = 0.05,
    n_opt: float = 10_000,
    guardrails: Sequence[Guardrail] = (),
    stop_on_success: str | None = None,
    shares: Mapping[str, float] | None = None,
    srm_threshold: float | None = SRM_THRESHOLD,
) -> MonitorResult:
    """Replay an experiment look by look (one look per distinct ``day``).

    Parameters
    ----------
    data : pandas.DataFrame
        One row per unit: arm, day of entry and metric values.
    metrics, control, alpha, n_opt, guardrails, stop_on_success, shares, srm_threshold
        See :class:`SequentialMonitor`.

    Returns
    -------
    MonitorResult
        Stops at the first look whose decision is "stop"; later days are not looked at.
    """
    mon = SequentialMonitor(metrics, control=control, alpha=alpha, n_opt=n_opt, guardrails=guardrails,
                            stop_on_success=stop_on_success, shares=shares, srm_threshold=srm_threshold)  # fmt: skip
    cum = cumulative_stats(data, metrics, arm=arm, day=day)
    for d, g in cum.groupby("day", sort=True):
        if mon.update(d, g).get("action") == "stop":
            break
    return mon.result()


def simulate_peeking(
    n_sims: int = 2000,
    days: int = 28,
    daily_per_arm: int = 500,
    *,
    baseline: float = 0.10,
    effect: float = 0.0,
    alpha: float = 0.05,
    n_opt: float | None = None,
    kind: str = "proportion",
    seed: int = 0,
) -> dict[str, Any]:
    """Rejection rates of daily peeking: naive z-test vs the confidence sequence.

    Simulates ``n_sims`` experiments (A/A when ``effect == 0``) with ``daily_per_arm``
    new units per arm a day and looks once a day.

    Parameters
    ----------
    kind : {"proportion", "mean"}
        Bernoulli(``baseline``) conversions, or log-normal spend per unit (mean
        ``baseline``, heavy right tail like revenue).
    effect : float
        Relative lift of the treatment (0 for an A/A test).
    n_opt : float, optional
        Planned units per arm; default the final sample ``days * daily_per_arm``.

    Returns
    -------
    dict
        ``naive_fpr`` (any daily look significant at alpha), ``sequential_fpr`` (any
        look whose confidence sequence excludes 0), ``fixed_fpr`` (only the last look,
        fixed horizon), and the inputs. With ``effect != 0`` these are powers.
    """
    alpha = check_alpha(alpha)
    for v, name in ((n_sims, "n_sims"), (days, "days"), (daily_per_arm, "daily_per_arm")):
        if not isinstance(v, int) or v < 1:
            raise ValidationError(f"{name}: must be a positive integer, got {v!r}")
    if kind not in ("proportion", "mean"):
        raise ValidationError(f"kind: must be 'proportion' or 'mean', got {kind!r}")
    rng = np.random.default_rng(seed)
    n_opt = float(n_opt or days * daily_per_arm)
    cs = ConfidenceSequence(alpha, n_opt)
    n = daily_per_arm * np.arange(1, days + 1, dtype=float)
    bound = mixture_boundary(cs.info_fraction(n, n), alpha)
    zq = stats.norm.isf(alpha / 2)
    naive = np.zeros(n_sims, dtype=bool)
    seq = np.zeros(n_sims, dtype=bool)
    fixed = np.zeros(n_sims, dtype=bool)
    # bound memory: a chunk of simulations holds at most ~2M unit draws per arm
    chunk = max(1, min(n_sims, 2_000_000 // (days * (daily_per_arm if kind == "mean" else 1))))
    for s0 in range(0, n_sims, chunk):
        k = min(chunk, n_sims - s0)
        sums, sqs = [], []
        for lift in (0.0, effect):
            mu = baseline * (1 + lift)
            if kind == "proportion":
                if not 0 < mu < 1:
                    raise ValidationError(f"baseline: rate {mu} outside (0, 1)")
                x = rng.binomial(daily_per_arm, mu, size=(k, days)).astype(float)
                sums.append(np.cumsum(x, axis=1))
                sqs.append(sums[-1])
            else:
                sigma = 1.0  # log-normal shape: sd ≈ 1.3 × mean, a revenue-like skew
                y = rng.lognormal(np.log(mu) - sigma**2 / 2, sigma, size=(k, days, daily_per_arm))
                sums.append(np.cumsum(y.sum(axis=2), axis=1))
                sqs.append(np.cumsum((y * y).sum(axis=2), axis=1))
        m0, m1 = sums[0] / n, sums[1] / n
        with np.errstate(divide="ignore", invalid="ignore"):
            # variance of each mean from the running sums (ddof=1)
            v0 = np.maximum(sqs[0] / n - m0**2, 0) / (n - 1)
            v1 = np.maximum(sqs[1] / n - m1**2, 0) / (n - 1)
            se = np.sqrt(v0 + v1)
            z = np.where(se > 0, (m1 - m0) / se, 0.0)
        naive[s0 : s0 + k] = (np.abs(z) > zq).any(axis=1)
        seq[s0 : s0 + k] = (np.abs(z) > bound).any(axis=1)
        fixed[s0 : s0 + k] = np.abs(z[:, -1]) > zq
    return {
        "n_sims": n_sims, "days": days, "daily_per_arm": daily_per_arm, "effect": effect, "alpha": alpha,
        "kind": kind, "naive_fpr": float(naive.mean()), "sequential_fpr": float(seq.mean()),
        "fixed_fpr": float(fixed.mean()),
    }  # fmt: skip


def peeking_table(
    looks: Mapping[int, int] | None = None,
    *,
    n_sims: int = 2000,
    total_per_arm: int = 14_000,
    alpha: float = 0.05,
    kinds: Sequence[str] = ("proportion",),
    seed: int = 0,
) -> pd.DataFrame:
    """False-positive rates of A/A tests against the number of looks (a table).

    ``looks`` maps number of looks -> units per arm per look; by default the same total
    sample split into 1, 7, 14, 28 and 56 looks.
    """
    looks = dict(looks or {k: total_per_arm // k for k in (1, 7, 14, 28, 56)})
    rows = []
    for kind in kinds:
        for days, per in looks.items():
            r = simulate_peeking(n_sims, days, per, alpha=alpha, kind=kind, seed=seed,
                                 n_opt=total_per_arm)  # fmt: skip
            rows.append(
                {
                    k: r[k]
                    for k in (
                        "kind",
                        "days",
                        "daily_per_arm",
                        "naive_fpr",
                        "sequential_fpr",
                        "fixed_fpr",
                    )
                }
            )
    return pd.DataFrame(rows).rename(columns={"days": "looks", "daily_per_arm": "per_arm_per_look"})
