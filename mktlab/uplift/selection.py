"""Model selection: every learner on the same folds, a table, a plot and a champion.

Folds are stratified on treatment × outcome (outcome > 0 for continuous outcomes), so
every fold keeps the arm shares and the response rate. Feature preparation is fitted on
each training fold only. Metrics are those of :mod:`mktlab.uplift.metrics` on the
held-out fold; with several treated arms each arm is scored on its own rows plus the
control rows and the learner's score is the mean over arms.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit

from mktlab.errors import ValidationError
from mktlab.uplift import metrics as M
from mktlab.uplift.data import FeaturePrep, UpliftData
from mktlab.uplift.learners import UpliftLearner

LOWER_IS_BETTER = {"pehe", "fit_seconds"}


def _strata(data: UpliftData) -> np.ndarray:
    codes = pd.factorize(pd.Series(data.treatment).astype(str))[0]
    return codes * 2 + (data.y > 0).astype(int)


def make_folds(
    data: UpliftData, n_splits: int = 5, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Shared stratified K folds as ``(train_idx, test_idx)`` position arrays."""
    if n_splits < 2:
        raise ValidationError(f"n_splits: need at least 2 folds, got {n_splits}")
    skf = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return [(tr, te) for tr, te in skf.split(np.zeros(len(data)), _strata(data))]


def make_splits(data: UpliftData, n_repeats: int = 5, test_size: float = 0.3, seed: int = 0):
    """``n_repeats`` stratified train/test splits (e.g. five 70/30 splits)."""
    sss = StratifiedShuffleSplit(n_splits=n_repeats, test_size=test_size, random_state=seed)
    return [(tr, te) for tr, te in sss.split(np.zeros(len(data)), _strata(data))]


def score_split(
    learner: UpliftLearner,
    train: UpliftData,
    test: UpliftData,
    *,
    k: float = 0.3,
    n_boot: int = 0,
    seed: int = 0,
) -> tuple[list[dict], UpliftLearner, FeaturePrep, np.ndarray]:
    """Fit a clone of ``learner`` on ``train`` and score ``test``.

    Returns one metrics row per treated arm, the fitted learner and preparation, and the
    test rows' predicted uplift (``(n_test, n_arms)``).
    """
    prep = FeaturePrep().fit(train.X)
    est = clone(learner)
    t0 = time.perf_counter()
    est.fit(prep.transform(train.X), train.treatment, train.y, p=train.propensity)
    fit_s = time.perf_counter() - t0
    u = est.predict(prep.transform(test.X)).reshape(len(test), -1)
    pct = round(k * 100)
    rows = []
    for j, arm in enumerate(est.arms_):
        keep = (test.treatment == test.control) | (test.treatment == arm)
        y, w, s = test.y[keep], (test.treatment[keep] == arm).astype(int), u[keep, j]
        row: dict = {"arm": str(arm), "fit_seconds": fit_s}
        if n_boot:
            row.update(M.evaluate(y, w, s, k=k, n_boot=n_boot, seed=seed))
        else:
            row["qini"] = M.qini_coefficient(y, w, s)
            row["auuc"] = M.auuc(y, w, s)
            try:
                row[f"uplift_at_{pct}"] = M.uplift_at_k(y, w, s, k)
            except ValidationError:
                row[f"uplift_at_{pct}"] = np.nan
        if test.truth is not None and len(est.arms_) == 1:
            tau = test.truth["true_uplift"].to_numpy()
            row["pehe"] = M.pehe(s, tau)
            row["true_qini"] = M.true_qini_coefficient(tau, s)
            row[f"true_uplift_at_{pct}"] = M.true_uplift_at_k(tau, s, k)
        rows.append(row)
    return rows, est, prep, u


@dataclass
class CVResult:
    """Per-fold scores of each learner and the summary table.

    Attributes
    ----------
    scores : DataFrame
        One row per learner × fold × arm.
    metric : str
        Metric the champion is chosen by.
    oof : dict of name -> ndarray
        Out-of-fold predicted uplift of every row (``(n,)`` or ``(n, n_arms)``).
    """

    scores: pd.DataFrame
    metric: str = "qini"
    oof: dict[str, np.ndarray] | None = None

    @property
    def table(self) -> pd.DataFrame:
        """Mean and standard deviation over folds per learner, best first."""
        num = self.scores.drop(columns=["fold", "arm"]).groupby("learner")
        mean = num.mean().add_suffix("_mean")
        std = num.std(ddof=1).add_suffix("_std")
        tab = pd.concat([mean, std], axis=1)
        cols = [c for m in num.mean().columns for c in (f"{m}_mean", f"{m}_std")]
        asc = self.metric in LOWER_IS_BETTER
        return tab[cols].sort_values(f"{self.metric}_mean", ascending=asc)

    @property
    def champion(self) -> str:
        """Name of the best learner by :attr:`metric` (mean over folds)."""
        return str(self.table.index[0])

    def plot(self, metrics: tuple[str, ...] | None = None, ax=None):
        """Bar chart of the fold means with ±1 s.d. error bars for each metric."""
        import matplotlib.pyplot as plt

        tab = self.table
        metrics = metrics or tuple(
            m for m in ("qini", "auuc", "uplift_at_30", "pehe") if f"{m}_mean" in tab
        )
        if ax is None:
            _, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.5), squeeze=False)
            axes = axes[0]
        else:
            axes = np.atleast_1d(ax)
        for a, m in zip(axes, metrics):
            a.barh(tab.index, tab[f"{m}_mean"], xerr=tab[f"{m}_std"], color="tab:blue", alpha=0.8)
            a.set_title(m)
            a.invert_yaxis()
        plt.tight_layout()
        return axes


def cross_validate(
    data: UpliftData,
    learners: Mapping[str, UpliftLearner],
    *,
    folds: list[tuple[np.ndarray, np.ndarray]] | None = None,
    n_splits: int = 5,
    seed: int = 0,
    k: float = 0.3,
    metric: str = "qini",
    progress: bool = True,
) -> CVResult:
    """Score every learner on the same folds.

    Parameters
    ----------
    data : UpliftData
    learners : mapping of name -> unfitted learner (cloned per fold)
    folds : list of (train_idx, test_idx), optional
        Defaults to :func:`make_folds` with ``n_splits`` and ``seed``.
    k : float
        Share for uplift@k.
    metric : str
        Champion criterion (``qini``, ``auuc``, ``uplift_at_30``, or ``pehe`` with truth).
    progress : bool
        Show a tqdm bar over fold × learner fits.
    """
    from tqdm.auto import tqdm

    if not learners:
        raise ValidationError("learners: need at least one learner to compare")
    folds = folds if folds is not None else make_folds(data, n_splits, seed)
    rows = []
    oof: dict[str, np.ndarray] = {}
    bar = tqdm(total=len(folds) * len(learners), desc="uplift CV", disable=not progress)
    for f, (tr, te) in enumerate(folds):
        train, test = data.subset(tr), data.subset(te)
        for name, learner in learners.items():
            bar.set_postfix_str(f"fold {f} {name}")
            fold_rows, _, _, pred = score_split(learner, train, test, k=k)
            if name not in oof:
                oof[name] = np.full((len(data), pred.shape[1]), np.nan)
            oof[name][te] = pred
            for row in fold_rows:
                rows.append({"learner": name, "fold": f, **row})
            bar.update()
    bar.close()
    oof = {nm: (v[:, 0] if v.shape[1] == 1 else v) for nm, v in oof.items()}
    scores = pd.DataFrame(rows)
    if f"{metric}" not in scores.columns:
        raise ValidationError(f"metric: {metric!r} not computed; have {sorted(scores.columns)}")
    return CVResult(scores=scores, metric=metric, oof=oof)


def repeated_split_report(
    data: UpliftData,
    learner: UpliftLearner,
    *,
    n_repeats: int = 5,
    test_size: float = 0.3,
    seed: int = 0,
    k: float = 0.3,
    n_boot: int = 200,
    progress: bool = True,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Evaluate ``learner`` on ``n_repeats`` stratified splits (the Hillstrom protocol).

    Returns
    -------
    per_split : DataFrame
        Each split's metrics with bootstrap 95% intervals (``*_lo``, ``*_hi``).
    summary : dict
        Mean over splits of each metric and a 95% t-interval across splits
        (``<metric>_mean``, ``<metric>_ci_lo``, ``<metric>_ci_hi``).
    """
    from scipy import stats
    from tqdm.auto import tqdm

    rows = []
    for i, (tr, te) in enumerate(
        tqdm(make_splits(data, n_repeats, test_size, seed), desc="splits", disable=not progress)
    ):
        for row in score_split(
            learner, data.subset(tr), data.subset(te), k=k, n_boot=n_boot, seed=seed + i
        )[0]:
            rows.append({"split": i, **row})
    per = pd.DataFrame(rows)
    summary: dict[str, float] = {}
    pct = round(k * 100)
    for m in ("qini", "auuc", f"uplift_at_{pct}", "pehe", "true_qini"):
        if m not in per:
            continue
        v = per[m].to_numpy(dtype=float)
        mean = float(v.mean())
        half = (
            float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
            if len(v) > 1
            else float("nan")
        )
        summary[f"{m}_mean"], summary[f"{m}_ci_lo"], summary[f"{m}_ci_hi"] = (
            mean,
            mean - half,
            mean + half,
        )
    return per, summary
