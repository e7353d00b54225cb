"""Training pipeline: cross-validate the learners, pick the champion, log and register it.

One MLflow run per call (experiment ``uplift`` by default) holds the parameters, the CV
table of every learner, the champion's out-of-fold metrics with bootstrap intervals, the
Qini/CV/SHAP plots and the model. The champion is refitted on all rows and registered as
``uplift`` with alias ``@champion``. The same function runs from the CLI, the notebook
and ``make demo``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mktlab.errors import ValidationError
from mktlab.uplift import metrics as M
from mktlab.uplift.data import FeaturePrep, UpliftData, hillstrom_data, simulate, world_data
from mktlab.uplift.learners import LEARNERS, default_learners
from mktlab.uplift.model import UpliftModel, fit_uplift_model, log_model
from mktlab.uplift.quadrants import QuadrantThresholds
from mktlab.uplift.selection import CVResult, cross_validate

MODEL_NAME = "uplift"
EXPERIMENT = "uplift"


def load_data(source: str, **kwargs: Any) -> UpliftData:
    """Build :class:`UpliftData` for ``source`` in ``{"hillstrom", "world", "simulated"}``.

    ``kwargs`` go to :func:`hillstrom_data` (``arms``, ``outcome``), :func:`world_data`
    (``world``, ``campaign_id``, ``outcome``) or :func:`simulate`.
    """
    if source == "hillstrom":
        return hillstrom_data(**kwargs)
    if source == "world":
        return world_data(**kwargs)
    if source == "simulated":
        return simulate(**kwargs)
    raise ValidationError(f"data: unknown source {source!r}; choose hillstrom, world or simulated")


@dataclass
class TrainResult:
    """What :func:`train` produced."""

    cv: CVResult
    champion: str
    model: UpliftModel
    metrics: dict[str, float]
    run_id: str | None = None
    model_version: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)


def _champion_metrics(
    data: UpliftData, oof: np.ndarray, *, k: float, n_boot: int, seed: int
) -> dict[str, float]:
    u = oof.reshape(len(data), -1)
    out: dict[str, float] = {}
    arms = data.arms
    for j, arm in enumerate(arms):
        keep = (data.treatment == data.control) | (data.treatment == arm)
        w = (data.treatment[keep] == arm).astype(int)
        truth = (
            data.truth["true_uplift"].to_numpy()[keep]
            if data.truth is not None and len(arms) == 1
            else None
        )
        m = M.evaluate(
            data.y[keep], w, u[keep, j], true_uplift=truth, k=k, n_boot=n_boot, seed=seed
        )
        prefix = "" if len(arms) == 1 else f"{arm}."
        out.update({f"{prefix}{key}": v for key, v in m.items()})
    return out


def train(
    data: UpliftData,
    *,
    learners: Sequence[str] | None = None,
    n_splits: int = 5,
    n_estimators: int = 100,
    forest_estimators: int = 100,
    seed: int = 0,
    k: float = 0.3,
    metric: str = "qini",
    n_boot: int = 200,
    thresholds: QuadrantThresholds | None = None,
    register: bool = True,
    model_name: str = MODEL_NAME,
    experiment: str = EXPERIMENT,
    track: bool = True,
    explain: bool = True,
    progress: bool = True,
    cv: CVResult | None = None,
) -> TrainResult:
    """Cross-validate ``learners`` on shared folds, refit the champion, log and register it.

    Parameters
    ----------
    data : UpliftData
    learners : sequence of str, optional
        Names from :data:`mktlab.uplift.learners.LEARNERS` (default: all that fit the outcome).
    n_splits, seed : CV folds and seed.
    n_estimators, forest_estimators : size of boosted bases and of forests.
    k : float
        Share for uplift@k (0.3 = uplift@30%).
    metric : str
        Champion criterion over the CV folds (``qini`` by default).
    n_boot : int
        Bootstrap resamples for the champion's intervals.
    thresholds : QuadrantThresholds, optional
        Quadrant thresholds stored with the model.
    register : bool
        Register the champion as ``model_name@champion``.
    track : bool
        Log to MLflow at all (``False`` for quick experiments).
    explain : bool
        Log a SHAP summary of the champion.
    cv : CVResult, optional
        Reuse a cross-validation already run on ``data`` with these learners (a notebook
        that just ran :func:`~mktlab.uplift.selection.cross_validate`); skips the CV.
    """
    binary = bool(np.isin(data.y, (0.0, 1.0)).all())
    unknown = [n for n in (learners or []) if n not in LEARNERS]
    if unknown:
        raise ValidationError(f"learners: unknown {unknown}; choose from {sorted(LEARNERS)}")
    arms = None if data.arms == (1,) and data.control == 0 else list(data.arms)
    cands = default_learners(
        names=learners, n_estimators=n_estimators, forest_estimators=forest_estimators,
        random_state=seed, control=data.control, arms=arms, binary=binary,
    )  # fmt: skip
    if not cands:
        raise ValidationError(
            "learners: none left to train (the uplift forest needs a binary outcome)"
        )
    if cv is None:
        cv = cross_validate(
            data, cands, n_splits=n_splits, seed=seed, k=k, metric=metric, progress=progress
        )
    elif (
        cv.oof is None
        or any(len(v) != len(data) for v in cv.oof.values())
        or set(cv.oof) - set(cands)
    ):
        raise ValidationError(
            "cv: the given CVResult was not computed on this data with these learners"
        )
    champ = cv.champion
    metrics = _champion_metrics(data, cv.oof[champ], k=k, n_boot=n_boot, seed=seed)
    model = fit_uplift_model(
        data, cands[champ], thresholds=thresholds, info={"champion": champ, "cv_metric": metric}
    )
    result = TrainResult(cv=cv, champion=champ, model=model, metrics=metrics)
    if track:
        _track(result, data, cands, n_splits=n_splits, seed=seed, k=k, metric=metric, register=register,
               model_name=model_name, experiment=experiment, explain=explain)  # fmt: skip
    return result


def _track(result: TrainResult, data: UpliftData, cands: dict, *, n_splits, seed, k, metric, register,
           model_name, experiment, explain) -> None:  # fmt: skip
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from mktlab import tracking

    cv = result.cv
    params = {
        "data": data.name, "rows": len(data), "arms": ",".join(map(str, data.arms)), "control": str(data.control),
        "learners": ",".join(cands), "n_splits": n_splits, "seed": seed, "k": k, "select_by": metric,
        "champion": result.champion, **{f"champion.{p}": v for p, v in cands[result.champion].get_params().items()},
        "quadrant.uplift": result.model.thresholds.uplift, "quadrant.response": result.model.thresholds.response,
    }  # fmt: skip
    with tracking.start_run(
        experiment,
        f"{data.name}:{result.champion}",
        tags={"capability": "uplift", "data": data.name},
    ) as run:
        tracking.log_params(params)
        tab = cv.table
        cv_metrics = {
            f"cv.{lrn}.{col}": float(v)
            for lrn, row in tab.iterrows()
            for col, v in row.items()
            if np.isfinite(v)
        }
        tracking.log_metrics(cv_metrics)
        tracking.log_metrics(
            {f"champion.{key}": v for key, v in result.metrics.items() if np.isfinite(v)}
        )
        tracking.log_table(tab.reset_index(), "cv_table.json")
        cv.plot()
        tracking.log_figure(plt.gcf(), "cv_comparison.png")
        plt.close("all")
        if len(data.arms) == 1:
            w = data.w
            scores = {nm: v for nm, v in cv.oof.items()}
            ax = M.plot_curves(scores, data.y, w, kind="qini")
            ax.set_title("out-of-fold Qini curves")
            tracking.log_figure(ax.figure, "qini_curves.png")
            plt.close("all")
            dec = M.uplift_by_decile(data.y, w, cv.oof[result.champion])
            tracking.log_table(dec, "champion_deciles.json")
        if explain:
            from mktlab.uplift.explain import explain_uplift

            feats = result.model.prep.transform(data.X)
            ex = explain_uplift(result.model.learner, feats, max_rows=1000, seed=seed)
            fig = ex.plot()
            tracking.log_figure(fig, "shap_summary.png")
            plt.close("all")
            tracking.log_dict({"method": ex.method, "surrogate_r2": ex.surrogate_r2,
                               "importance": ex.importance().to_dict()}, "shap_importance.json")  # fmt: skip
        info = log_model(result.model)
        result.run_id = run.info.run_id
    if register:
        result.model_version = tracking.register_model(info.model_uri, model_name)
    result.extras["model_uri"] = info.model_uri


def load_champion(model_name: str = MODEL_NAME, alias: str = "champion") -> UpliftModel:
    """The registered champion as an :class:`UpliftModel` (via its MLflow pyfunc)."""
    from mktlab import tracking

    return tracking.load_pyfunc(model_name, alias).unwrap_python_model().predictor


def evaluate_model(
    model: UpliftModel,
    data: UpliftData,
    *,
    k: float = 0.3,
    n_boot: int = 200,
    seed: int = 0,
) -> dict[str, float]:
    """Metrics of a fitted model on ``data`` (Qini, AUUC, uplift@k with CIs; truth metrics if known).

    Note: scoring the rows the model was trained on flatters it; pass held-out data.
    """
    pred = model.predict(data.X)
    if len(data.arms) == 1:
        return _champion_metrics(data, pred["uplift"].to_numpy(), k=k, n_boot=n_boot, seed=seed)
    u = np.column_stack([pred[f"uplift_{a}"].to_numpy() for a in model.arms])
    return _champion_metrics(data, u, k=k, n_boot=n_boot, seed=seed)


def prepared(data: UpliftData) -> tuple[FeaturePrep, pd.DataFrame]:
    """Fit :class:`FeaturePrep` on ``data.X`` and return it with the prepared frame."""
    prep = FeaturePrep().fit(data.X)
    return prep, prep.transform(data.X)


def world_report(
    model: UpliftModel,
    train_data: UpliftData,
    test_data: UpliftData,
    economics: Any,
    *,
    budget_share: float = 0.2,
    k: float = 0.3,
    seed: int = 0,
) -> dict[str, float]:
    """Score ``model`` against the world's truth on held-out ``test_data``.

    Compares with (a) a T-learner with the same LightGBM base fitted on ``train_data``
    (PEHE) and (b) two oracles for budgeted targeting at a budget of ``budget_share`` ×
    the expected cost of treating every test user (under the model's own ``p1``):

    - ``oracle``: knows every user's true uplift and ``p1`` (an upper bound no model can
      reach when the world draws each user's type at random given the features);
    - ``feature_oracle``: LightGBM fitted to the *true* uplift and ``p1`` of the training
      users — the best targeting the features allow.

    Returns a flat dict: ``pehe``, ``pehe_t_learner``, ``true_qini``, ``true_uplift_at_30``,
    ``quadrant_accuracy``, ``budget``, ``profit_model``, ``profit_oracle``,
    ``profit_feature_oracle``, ``ratio_oracle``, ``ratio_feature_oracle``, ...
    """
    from lightgbm import LGBMRegressor
    from sklearn.base import clone

    from mktlab.uplift.learners import TLearner
    from mktlab.uplift.targeting import compare_to_oracle, plan_targeting, realised_profit

    if test_data.truth is None or train_data.truth is None:
        raise ValidationError("world_report: both data sets need the truth (p0, p1, true_uplift)")
    pred = model.predict(test_data.X)
    tau = test_data.truth["true_uplift"].to_numpy()
    p1 = test_data.truth["p1"].to_numpy()
    u = pred["uplift"].to_numpy()
    base = model.learner
    t_params = {p: base.get_params()[p] for p in ("n_estimators", "learning_rate", "num_leaves", "min_child_samples")
                if p in base.get_params()}  # fmt: skip
    t_model = fit_uplift_model(train_data, TLearner(random_state=seed, **t_params))
    u_t = t_model.predict(test_data.X)["uplift"].to_numpy()
    out: dict[str, float] = {
        "pehe": M.pehe(u, tau),
        "pehe_t_learner": M.pehe(u_t, tau),
        "true_qini": M.true_qini_coefficient(tau, u),
        "true_qini_t_learner": M.true_qini_coefficient(tau, u_t),
        f"true_uplift_at_{round(k * 100)}": M.true_uplift_at_k(tau, u, k),
    }
    if "quadrant" in test_data.truth:
        out["quadrant_accuracy"] = float(
            (pred["quadrant"].to_numpy() == test_data.truth["quadrant"].to_numpy()).mean()
        )
    budget = float(budget_share * economics.cost(pred["p1"].to_numpy()).sum())
    cmp = compare_to_oracle(u, pred["p1"].to_numpy(), tau, p1, economics, budget=budget)
    Xtr = model.prep.transform(train_data.X).to_numpy()
    Xte = model.prep.transform(test_data.X).to_numpy()
    reg = LGBMRegressor(
        n_estimators=300,
        learning_rate=0.05,
        num_leaves=15,
        min_child_samples=50,
        verbose=-1,
        random_state=seed,
        n_jobs=1,
    )
    f_tau = clone(reg).fit(Xtr, train_data.truth["true_uplift"].to_numpy()).predict(Xte)
    f_p1 = clone(reg).fit(Xtr, train_data.truth["p1"].to_numpy()).predict(Xte)
    f_plan = plan_targeting(f_tau, f_p1, economics, budget=budget)
    f_prof = realised_profit(f_plan.selected, tau, p1, economics)["profit"]
    out.update(
        budget=budget,
        profit_model=cmp["model_profit"],
        profit_oracle=cmp["oracle_profit"],
        profit_feature_oracle=f_prof,
        ratio_oracle=cmp["ratio"],
        ratio_feature_oracle=cmp["model_profit"] / f_prof if f_prof > 0 else float("nan"),
        n_model=cmp["model_n"],
        n_oracle=cmp["oracle_n"],
        n_feature_oracle=int(f_plan.n_selected),
    )
    return out
