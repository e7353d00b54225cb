"""Uplift modelling: who to treat, measured honestly, tracked in MLflow.

- :mod:`~mktlab.uplift.data`: :class:`UpliftData`, :class:`FeaturePrep`, loaders for
  Hillstrom, the synthetic world and simulated experiments with a planted effect.
- :mod:`~mktlab.uplift.learners`: S/T/X/R/DR (causalml + LightGBM), uplift random forest,
  econml causal forest and DR learner behind ``fit(X, treatment, y)`` /
  ``predict(X)`` / ``predict_outcomes(X)``.
- :mod:`~mktlab.uplift.metrics`: Qini/uplift curves, Qini coefficient, AUUC, uplift@k,
  deciles, bootstrap CIs, PEHE and true-uplift metrics (normalisation documented there).
- :mod:`~mktlab.uplift.selection`: cross-validation on shared folds, champion choice.
- :mod:`~mktlab.uplift.quadrants`, :mod:`~mktlab.uplift.targeting`: quadrants and
  budgeted targeting; :mod:`~mktlab.uplift.explain`: SHAP of the uplift.
- :mod:`~mktlab.uplift.train`: the pipeline that logs to MLflow and registers
  ``uplift@champion`` (:class:`UpliftModel`, a pyfunc returning uplift and quadrant).
"""

from mktlab.uplift.data import FeaturePrep, UpliftData, hillstrom_data, simulate, world_data
from mktlab.uplift.explain import UpliftExplanation, explain_uplift
from mktlab.uplift.learners import (
    LEARNERS,
    CausalForest,
    DRLearner,
    EconDRLearner,
    RLearner,
    SLearner,
    TLearner,
    UpliftForest,
    UpliftLearner,
    XLearner,
    default_learners,
    make_learner,
)
from mktlab.uplift.model import UpliftModel, fit_uplift_model, unseen_levels
from mktlab.uplift.quadrants import (
    QUADRANTS,
    QuadrantThresholds,
    assign_quadrants,
    quadrant_summary,
)
from mktlab.uplift.selection import CVResult, cross_validate, make_folds, repeated_split_report
from mktlab.uplift.targeting import Economics, TargetingPlan, compare_to_oracle, plan_targeting
from mktlab.uplift.train import TrainResult, evaluate_model, load_champion, load_data, train

__all__ = [
    "LEARNERS", "QUADRANTS", "CVResult", "CausalForest", "DRLearner", "EconDRLearner", "Economics",
    "FeaturePrep", "QuadrantThresholds", "RLearner", "SLearner", "TLearner", "TargetingPlan",
    "TrainResult", "UpliftData", "UpliftExplanation", "UpliftForest", "UpliftLearner", "UpliftModel",
    "XLearner", "assign_quadrants", "compare_to_oracle", "cross_validate", "default_learners",
    "evaluate_model", "explain_uplift", "fit_uplift_model", "hillstrom_data", "load_champion",
    "load_data", "make_folds", "make_learner", "plan_targeting", "quadrant_summary",
    "repeated_split_report", "simulate", "train", "unseen_levels", "world_data",
]  # fmt: skip
