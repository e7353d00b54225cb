r"""Uplift evaluation: uplift and Qini curves, AUUC, Qini coefficient, uplift@k.

Conventions. For binary outcomes the normalised areas and uplift@k are scikit-uplift
0.5.1's published definitions (``uplift_auc_score``, ``qini_auc_score`` with
``negative_effect=True``, ``uplift_at_k``); tests pin them against values worked out by
hand from those formulas. causalml's ``qini_score`` / ``auuc_score`` normalise
differently, so numbers from the two libraries are not comparable.

Sort rows by predicted uplift, highest first. Rows with equal scores form one block and
the curves are evaluated only at block ends (linear in between), so a constant score is
exactly "random". After the first :math:`k` rows let :math:`n_t, n_c` be the treated and
control counts and :math:`Y_t, Y_c` their summed outcomes. Then

.. math::

    \text{uplift}(k) = \Big(\frac{Y_t}{n_t} - \frac{Y_c}{n_c}\Big)\,k, \qquad
    \text{qini}(k) = Y_t - Y_c \,\frac{n_t}{n_c}

(a ratio with a zero denominator counts as 0). Curves are returned with
``x = k / N`` (share of the population targeted) and ``y = curve(k) / N`` (incremental
outcomes per person of the whole population), so ``uplift`` ends at the observed ATE.

**Normalisation of areas.** For a curve :math:`C` with trapezoid area :math:`A(C)` over
:math:`x \in [0, 1]`, the *random* curve is the straight line to the same end point and
the *perfect* curve is the curve of a perfect ordering of the observed outcomes. The
reported coefficient is

.. math:: \frac{A(\text{model}) - A(\text{random})}{A(\text{perfect}) - A(\text{random})}

so **1.0 = the perfect ordering, 0.0 = random targeting** (exactly 0 for a constant
score), negative = worse than random. The perfect orderings are scikit-uplift's:

- Qini (:func:`qini_coefficient`): the score :math:`y\,(2w-1)` (treated responders
  first, control responders last; scikit-uplift's ``perfect_qini_curve`` with
  ``negative_effect=True``).
- Uplift curve (:func:`auuc`), binary outcomes: treated responders, then control
  non-responders, then — whichever group is larger last — treated non-responders and
  control responders: the score :math:`2\,[y = w] + s` with :math:`s = y` when there are
  more control responders than treated non-responders, else :math:`s = w`
  (scikit-uplift's ``perfect_uplift_curve``). scikit-uplift refuses non-binary outcomes;
  for those mktlab uses :math:`y\,(2w-1)` as the perfect score (its own convention).

Real models land far below 1 (the perfect ordering knows each row's realised outcome);
the raw area gain :math:`A(\text{model}) - A(\text{random})` is :func:`qini_area`.

**uplift@k** (:func:`uplift_at_k`): rows ordered by predicted uplift, highest first, ties
in *reverse* row order (scikit-uplift's ``argsort(score, kind="mergesort")[::-1]``);
``strategy="overall"`` (default) takes the first ``int(k·N)`` rows (rounded down) and
returns their treated mean outcome minus their control mean outcome — e.g. the
treated-minus-control visit rate among the 30% the model ranks highest;
``strategy="by_group"`` takes the first ``int(k·N_t)`` treated and ``int(k·N_c)``
control rows instead. Where scikit-uplift returns NaN (an arm absent from the top rows)
mktlab raises :class:`~mktlab.errors.ValidationError`; ``k = 1`` (the whole sample) is
accepted.

With the true effect known (the synthetic world), :func:`pehe` is
:math:`\sqrt{\tfrac1N\sum_i(\hat\tau_i-\tau_i)^2}`, :func:`true_qini_coefficient` the same
normalised area for the cumulative *true* uplift (perfect = sorted by the true effect),
and :func:`true_uplift_at_k` the mean true effect in the same top ``int(k·N)`` rows as
uplift@k.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mktlab.errors import ValidationError


@dataclass(frozen=True)
class Curve:
    """A cumulative gain curve: ``x`` share targeted, ``y`` value per person of the population."""

    x: np.ndarray
    y: np.ndarray

    @property
    def area(self) -> float:
        """Trapezoid area under the curve over ``x`` in [0, 1]."""
        return float(np.trapezoid(self.y, self.x))

    @property
    def random_area(self) -> float:
        """Area under the straight line to the same end point."""
        return float(self.y[-1] / 2.0)


def _check(y, treatment, score) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=np.float64)
    w = np.asarray(treatment)
    s = np.asarray(score, dtype=np.float64)
    if s.ndim != 1:
        raise ValidationError(f"score: expected one uplift score per row, got shape {s.shape}")
    if not (len(y) == len(w) == len(s)):
        raise ValidationError(f"lengths differ: y {len(y)}, treatment {len(w)}, score {len(s)}")
    if len(y) == 0:
        raise ValidationError("y: no rows to evaluate")
    if not np.isfinite(y).all():
        raise ValidationError("y: outcome has missing (NaN) or infinite values")
    if not np.isfinite(s).all():
        raise ValidationError("score: predicted uplift has missing (NaN) or infinite values")
    vals = set(np.unique(w).tolist())
    if not vals <= {0, 1}:
        raise ValidationError(
            f"treatment: expected binary 0/1, got values {sorted(map(str, vals))[:10]}"
        )
    w = w.astype(np.int8)
    if w.all() or not w.any():
        raise ValidationError("treatment: both treated (1) and control (0) rows are needed")
    return y, w, s


def _cumulative(y: np.ndarray, w: np.ndarray, s: np.ndarray):
    order = np.argsort(-s, kind="stable")
    y, w, s = y[order], w[order], s[order]
    ends = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]  # last index of each tie block
    n_t = np.cumsum(w)[ends].astype(np.float64)
    n_c = (ends + 1) - n_t
    y_t = np.cumsum(y * w)[ends]
    y_c = np.cumsum(y * (1 - w))[ends]
    k = (ends + 1).astype(np.float64)
    return k, n_t, n_c, y_t, y_c


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.zeros_like(a, dtype=np.float64), where=b != 0)


def qini_curve(y, treatment, score) -> Curve:
    """Qini curve ``Y_t − Y_c·n_t/n_c`` of the top-k rows (see module docs)."""
    y, w, s = _check(y, treatment, score)
    k, n_t, n_c, y_t, y_c = _cumulative(y, w, s)
    n = len(y)
    q = y_t - y_c * _div(n_t, n_c)
    return Curve(np.r_[0.0, k / n], np.r_[0.0, q / n])


def uplift_curve(y, treatment, score) -> Curve:
    """Uplift (gain) curve ``(Y_t/n_t − Y_c/n_c)·k`` of the top-k rows (see module docs)."""
    y, w, s = _check(y, treatment, score)
    k, n_t, n_c, y_t, y_c = _cumulative(y, w, s)
    n = len(y)
    u = (_div(y_t, n_t) - _div(y_c, n_c)) * k
    return Curve(np.r_[0.0, k / n], np.r_[0.0, u / n])


def _perfect_qini_score(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    return y * (2.0 * w - 1.0)


def _perfect_uplift_score(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """scikit-uplift's perfect ordering for the uplift curve (see the module docs)."""
    if not np.isin(y, (0.0, 1.0)).all():
        return _perfect_qini_score(y, w)  # mktlab's convention for non-binary outcomes
    control_responders = int(np.sum((y == 1) & (w == 0)))
    treated_non_responders = int(np.sum((y == 0) & (w == 1)))
    # the larger of the two "bad" groups goes last, which maximises the curve's area
    last = y if control_responders > treated_non_responders else w
    return 2.0 * (y == w) + last


def _perfect_score(curve_fn: Callable[..., Curve], y: np.ndarray, w: np.ndarray) -> np.ndarray:
    return (_perfect_qini_score if curve_fn is qini_curve else _perfect_uplift_score)(y, w)


def _normalised(curve_fn: Callable[..., Curve], y, treatment, score) -> float:
    y, w, s = _check(y, treatment, score)
    model = curve_fn(y, w, s)
    perfect = curve_fn(y, w, _perfect_score(curve_fn, y, w))
    denom = perfect.area - perfect.random_area
    if denom <= 0:
        raise ValidationError(
            "the perfect curve does not beat random (no outcome variation); metric undefined"
        )
    return (model.area - model.random_area) / denom


def qini_coefficient(y, treatment, score) -> float:
    """Normalised area between the Qini curve and random: 1 = perfect, 0 = random."""
    return _normalised(qini_curve, y, treatment, score)


def auuc(y, treatment, score) -> float:
    """Normalised area between the uplift curve and random: 1 = perfect, 0 = random."""
    return _normalised(uplift_curve, y, treatment, score)


def qini_area(y, treatment, score) -> float:
    """Unnormalised area between the Qini curve and random (outcomes per person)."""
    c = qini_curve(y, treatment, score)
    return c.area - c.random_area


def _order(s: np.ndarray) -> np.ndarray:
    # highest score first; ties in reverse row order, exactly as scikit-uplift sorts
    return np.argsort(s, kind="stable")[::-1]


def _top_size(k: float, n: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int | float | np.floating) or not 0 < k <= 1:
        raise ValidationError(f"k: share must be in (0, 1], got {k!r}")
    return int(n * k)  # rounded down, as scikit-uplift does


def uplift_at_k(y, treatment, score, k: float = 0.3, strategy: str = "overall") -> float:
    """Treated-minus-control mean outcome among the top ``k`` share by predicted uplift.

    scikit-uplift 0.5.1's ``uplift_at_k`` (see the module docs for the ordering of ties).

    Parameters
    ----------
    y, treatment, score : array-like
        Outcomes, binary treatment, predicted uplift.
    k : float, default 0.3
        Share of rows in (0, 1]; the top ``int(k * N)`` rows count.
    strategy : {"overall", "by_group"}
        ``"overall"``: the top rows of the whole sample, then each arm's mean among them.
        ``"by_group"``: the top ``int(k * N_t)`` treated and ``int(k * N_c)`` control rows.

    Raises
    ------
    ValidationError
        ``k`` outside (0, 1], an unknown ``strategy``, or the top rows hold no treated or
        no control row.
    """
    y, w, s = _check(y, treatment, score)
    if strategy not in ("overall", "by_group"):
        raise ValidationError(f"strategy: expected 'overall' or 'by_group', got {strategy!r}")
    n = _top_size(k, len(s))
    order = _order(s)
    if strategy == "overall":
        top = order[:n]
        yt, wt = y[top], w[top]
        if wt.all() or not wt.any():
            raise ValidationError(f"uplift@{k}: the top {len(top)} rows hold only one arm")
        return float(yt[wt == 1].mean() - yt[wt == 0].mean())
    n_t, n_c = _top_size(k, int(w.sum())), _top_size(k, int((w == 0).sum()))
    if n_t == 0 or n_c == 0:
        raise ValidationError(
            f"uplift@{k} by_group: the top {k} share holds {n_t} treated and {n_c} control rows"
        )
    ranked_t, ranked_c = order[w[order] == 1], order[w[order] == 0]
    return float(y[ranked_t[:n_t]].mean() - y[ranked_c[:n_c]].mean())


def uplift_by_decile(y, treatment, score, bins: int = 10) -> pd.DataFrame:
    """Observed uplift per score bin (bin 1 = highest predicted uplift).

    Returns
    -------
    DataFrame
        ``bin, n, n_treated, n_control, mean_score, rate_treated, rate_control, uplift``.
    """
    y, w, s = _check(y, treatment, score)
    order = np.argsort(-s, kind="stable")
    rows = []
    for b, idx in enumerate(np.array_split(order, bins), start=1):
        yt, wt = y[idx], w[idx]
        rt = yt[wt == 1].mean() if wt.any() else np.nan
        rc = yt[wt == 0].mean() if (wt == 0).any() else np.nan
        rows.append(
            {"bin": b, "n": len(idx), "n_treated": int(wt.sum()), "n_control": int((wt == 0).sum()),
             "mean_score": float(s[idx].mean()), "rate_treated": rt, "rate_control": rc, "uplift": rt - rc}
        )  # fmt: skip
    return pd.DataFrame(rows)


def bootstrap_ci(
    metric: Callable[..., float],
    y,
    treatment,
    score,
    *,
    n_boot: int = 200,
    alpha: float = 0.05,
    seed: int = 0,
    **kwargs,
) -> tuple[float, float, float]:
    """Point estimate and percentile bootstrap interval of ``metric(y, treatment, score)``.

    Rows are resampled with replacement within each arm (arm sizes stay fixed).

    Returns
    -------
    (estimate, low, high)
    """
    y, w, s = _check(y, treatment, score)
    if n_boot < 10:
        raise ValidationError(f"n_boot: need at least 10 resamples, got {n_boot}")
    point = float(metric(y, w, s, **kwargs))
    rng = np.random.default_rng(seed)
    it = np.flatnonzero(w == 1)
    ic = np.flatnonzero(w == 0)
    vals = []
    for _ in range(n_boot):
        idx = np.r_[rng.choice(it, len(it)), rng.choice(ic, len(ic))]
        try:
            vals.append(metric(y[idx], w[idx], s[idx], **kwargs))
        except ValidationError:
            continue  # a degenerate resample (e.g. one arm in the top k) carries no information
    if len(vals) < n_boot // 2:
        raise ValidationError("bootstrap: most resamples were degenerate; is the data too small?")
    lo, hi = np.quantile(vals, [alpha / 2, 1 - alpha / 2])
    return point, float(lo), float(hi)


# ---------------------------------------------------------------------- with the truth
def _check_truth(true_uplift, score) -> tuple[np.ndarray, np.ndarray]:
    tau = np.asarray(true_uplift, dtype=np.float64)
    s = np.asarray(score, dtype=np.float64)
    if tau.shape != s.shape or s.ndim != 1:
        raise ValidationError(
            f"true_uplift {tau.shape} and score {s.shape} must be equal-length vectors"
        )
    if not (np.isfinite(tau).all() and np.isfinite(s).all()):
        raise ValidationError("true_uplift/score: missing (NaN) or infinite values")
    return tau, s


def pehe(predicted_uplift, true_uplift) -> float:
    """Precision in estimating heterogeneous effects: RMSE of predicted vs true uplift."""
    tau, s = _check_truth(true_uplift, predicted_uplift)
    return float(np.sqrt(np.mean((s - tau) ** 2)))


def true_uplift_curve(true_uplift, score) -> Curve:
    """Cumulative true uplift of the top-k rows by ``score`` (per person of the population)."""
    tau, s = _check_truth(true_uplift, score)
    order = np.argsort(-s, kind="stable")
    ss = s[order]
    ends = np.r_[np.flatnonzero(np.diff(ss) != 0), len(ss) - 1]
    c = np.cumsum(tau[order])[ends]
    return Curve(np.r_[0.0, (ends + 1) / len(s)], np.r_[0.0, c / len(s)])


def true_qini_coefficient(true_uplift, score) -> float:
    """Normalised area of the true-uplift curve: 1 = sorted by the true effect, 0 = random."""
    tau, s = _check_truth(true_uplift, score)
    model = true_uplift_curve(tau, s)
    perfect = true_uplift_curve(tau, tau)
    denom = perfect.area - perfect.random_area
    if denom <= 0:
        raise ValidationError("true_uplift: no heterogeneity; metric undefined")
    return (model.area - model.random_area) / denom


def true_uplift_at_k(true_uplift, score, k: float = 0.3) -> float:
    """Mean true uplift among the top ``int(k * N)`` rows by ``score`` (the rows of uplift@k)."""
    tau, s = _check_truth(true_uplift, score)
    n = _top_size(k, len(s))
    if n == 0:
        raise ValidationError(f"k: the top {k} share of {len(s)} rows holds no row")
    return float(tau[_order(s)[:n]].mean())


def evaluate(
    y,
    treatment,
    score,
    *,
    true_uplift=None,
    k: float = 0.3,
    n_boot: int = 200,
    seed: int = 0,
) -> dict[str, float]:
    """All headline metrics of one score vector, with bootstrap 95% intervals.

    Returns
    -------
    dict
        ``qini``, ``auuc``, ``uplift_at_{pct}`` each with ``_lo`` / ``_hi``, ``qini_area``
        and the ATE; with ``true_uplift`` also ``pehe``, ``true_qini``,
        ``true_uplift_at_{pct}``.
    """
    y, w, s = _check(y, treatment, score)
    pct = round(k * 100)
    out: dict[str, float] = {}
    for name, fn, kw in (
        ("qini", qini_coefficient, {}),
        ("auuc", auuc, {}),
        (f"uplift_at_{pct}", uplift_at_k, {"k": k}),
    ):
        est, lo, hi = bootstrap_ci(fn, y, w, s, n_boot=n_boot, seed=seed, **kw)
        out[name], out[f"{name}_lo"], out[f"{name}_hi"] = est, lo, hi
    out["qini_area"] = qini_area(y, w, s)
    out["ate"] = float(y[w == 1].mean() - y[w == 0].mean())
    if true_uplift is not None:
        out["pehe"] = pehe(s, true_uplift)
        out["true_qini"] = true_qini_coefficient(true_uplift, s)
        out[f"true_uplift_at_{pct}"] = true_uplift_at_k(true_uplift, s, k)
    return out


def plot_curves(scores: dict[str, np.ndarray], y, treatment, *, kind: str = "qini", ax=None):
    """Plot Qini (``kind="qini"``) or uplift curves of several scores with random and perfect.

    Returns the matplotlib Axes.
    """
    import matplotlib.pyplot as plt

    fn = {"qini": qini_curve, "uplift": uplift_curve}.get(kind)
    if fn is None:
        raise ValidationError(f"kind: expected 'qini' or 'uplift', got {kind!r}")
    y, w, _ = _check(y, treatment, next(iter(scores.values())))
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    perfect = fn(y, w, _perfect_score(fn, y, w))
    for name, s in scores.items():
        c = fn(y, w, s)
        ax.plot(c.x, c.y, label=f"{name} ({_normalised(fn, y, w, s):.3f})")
    ax.plot([0, 1], [0, perfect.y[-1]], "k--", label="random")
    ax.plot(perfect.x, perfect.y, ":", color="grey", label="perfect (observed)")
    ax.set_xlabel("share of population targeted")
    ax.set_ylabel(f"{kind} (incremental outcomes per person)")
    ax.legend(fontsize=8)
    return ax
