"""SHAP explanations of the predicted uplift.

Where the uplift is a linear combination of tree models the SHAP values are exact (SHAP
values are linear in the model):

- T-learner: ``φ(mu1) − φ(mu0)``;
- R-learner: ``φ(tau)``; DR-learner: mean of ``φ`` over the cross-fitted effect models;
- X-learner: ``p·φ(tau_c) + (1 − p)·φ(tau_t)`` with the mean training propensity.

Every other learner (S-learner, forests, econml) is explained through a *surrogate*: a
LightGBM regressor fitted to the learner's predicted uplift, whose R² on those rows is
reported so the reader knows how faithful the explanation is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mktlab.errors import ValidationError
from mktlab.uplift.learners import DRLearner, RLearner, TLearner, UpliftLearner, XLearner


@dataclass
class UpliftExplanation:
    """SHAP values of the uplift for the rows of ``X``.

    Attributes
    ----------
    values : ndarray (n_rows, n_features)
    X : DataFrame
        The explained rows (prepared features).
    method : str
        ``"tree"`` (exact on the learner's own trees) or ``"surrogate"``.
    surrogate_r2 : float
        Held-out R² of the surrogate against the predicted uplift (nan for ``"tree"``).
    """

    values: np.ndarray
    X: pd.DataFrame
    method: str
    surrogate_r2: float = float("nan")

    def importance(self) -> pd.Series:
        """Mean absolute SHAP value per feature, largest first."""
        return pd.Series(np.abs(self.values).mean(axis=0), index=self.X.columns).sort_values(
            ascending=False
        )

    def plot(self, max_display: int = 15):
        """SHAP summary (beeswarm) plot; returns the matplotlib Figure."""
        import matplotlib.pyplot as plt
        import shap

        shap.summary_plot(self.values, self.X, max_display=max_display, show=False)
        fig = plt.gcf()
        fig.suptitle(f"SHAP of predicted uplift ({self.method})", fontsize=10)
        return fig


def _tree_shap(model, X: np.ndarray) -> np.ndarray:
    import shap

    return np.asarray(shap.TreeExplainer(model).shap_values(X))


def explain_uplift(
    learner: UpliftLearner,
    X: pd.DataFrame,
    *,
    arm_index: int = 0,
    max_rows: int = 2000,
    seed: int = 0,
    surrogate: bool | None = None,
) -> UpliftExplanation:
    """SHAP values of ``learner``'s predicted uplift on (a sample of) prepared features ``X``.

    Parameters
    ----------
    learner : fitted UpliftLearner
    X : DataFrame
        Prepared features (``FeaturePrep`` output) in the learner's column order.
    arm_index : int
        Which treated arm to explain (0 for a single arm).
    max_rows : int
        Explain a random sample of at most this many rows (TreeSHAP is O(rows)).
    surrogate : bool, optional
        Force (True) or forbid (False) the surrogate; default: tree where exact.
    """
    Xa = learner._check_X(X, fitting=False)
    if not 0 <= arm_index < len(learner.arms_):
        raise ValidationError(f"arm_index: {arm_index} out of range for arms {list(learner.arms_)}")
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(Xa), size=min(max_rows, len(Xa)), replace=False))
    Xs = Xa[idx]
    Xdf = pd.DataFrame(Xs, columns=list(learner.feature_names_in_))
    g = arm_index + 1
    exact = isinstance(learner, (TLearner, RLearner, DRLearner, XLearner))
    if surrogate is None:
        surrogate = not exact
    if not surrogate and not exact:
        raise ValidationError(
            f"{type(learner).__name__} has no exact tree explanation; use surrogate=True"
        )
    if not surrogate:
        m = learner.model_
        if isinstance(learner, TLearner):
            vals = _tree_shap(m.models_t[g], Xs) - _tree_shap(m.model_c, Xs)
        elif isinstance(learner, RLearner):
            vals = _tree_shap(m.models_tau[g], Xs)
        elif isinstance(learner, DRLearner):
            vals = np.mean([_tree_shap(t, Xs) for t in m.models_tau[g]], axis=0)
        else:  # XLearner
            p = learner.mean_propensity_[g]
            vals = p * _tree_shap(m.models_tau_c[g], Xs) + (1 - p) * _tree_shap(
                m.models_tau_t[g], Xs
            )
        return UpliftExplanation(values=vals, X=Xdf, method="tree")
    from lightgbm import LGBMRegressor

    target = learner.predict(Xdf).reshape(len(Xdf), -1)[:, arm_index]

    def surrogate_model():
        return LGBMRegressor(
            n_estimators=300,
            learning_rate=0.05,
            num_leaves=31,
            min_child_samples=20,
            verbose=-1,
            random_state=seed,
            n_jobs=1,
        )

    # faithfulness is measured on rows the surrogate did not see (odd vs even rows)
    half = np.arange(len(Xs)) % 2 == 0
    if target.var() > 0 and half.sum() > 20:
        resid = target[~half] - surrogate_model().fit(Xs[half], target[half]).predict(Xs[~half])
        r2 = 1.0 - resid.var() / target[~half].var()
    else:
        r2 = float("nan")
    sur = surrogate_model().fit(Xs, target)
    return UpliftExplanation(
        values=_tree_shap(sur, Xs), X=Xdf, method="surrogate", surrogate_r2=float(r2)
    )
