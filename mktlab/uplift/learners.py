"""Uplift learners behind one scikit-learn style interface.

Every learner here is a thin, validated wrapper around a causalml or econml estimator:

========================  ====================================================  =========
name                      estimator                                              outcomes
========================  ====================================================  =========
``s``                     ``causalml BaseSRegressor`` (LightGBM)                 native
``t``                     ``causalml BaseTRegressor`` (LightGBM)                 native
``x``                     ``causalml BaseXRegressor`` (LightGBM)                 native
``r``                     ``causalml BaseRRegressor`` (LightGBM)                 native
``dr``                    ``causalml BaseDRRegressor`` (LightGBM)                native
``urf``                   ``causalml UpliftRandomForestClassifier``              native
``causal_forest``         ``econml CausalForestDML`` (LightGBM nuisances)        baseline
``econml_dr``             ``econml DRLearner`` (LightGBM nuisances and final)    baseline
========================  ====================================================  =========

The interface:

- ``fit(X, treatment, y, p=None)``: ``X`` a numeric DataFrame (see
  :class:`mktlab.uplift.data.FeaturePrep`), ``treatment`` the arm of each row, ``y``
  binary or continuous, ``p`` the known propensity ``P(T=1|X)`` (binary designs) — if
  omitted the learners assume a randomised design with the observed arm shares.
- ``predict(X)`` → uplift ``E[Y|T=arm,X] − E[Y|T=control,X]``: shape ``(n,)`` with one
  treated arm, ``(n, n_arms)`` with several (columns in ``arms_`` order).
- ``predict_outcomes(X)`` → ``(mu0, mu1)``: the control outcome ``(n,)`` and the treated
  outcome(s) ``mu1 = mu0 + uplift``, shaped like ``predict``. ``mu0`` comes from the
  learner's own control-outcome model; "baseline" learners above have none, so they fit
  a LightGBM model of the control arm.

Binary outcomes are modelled with LightGBM *regressors* on 0/1 (a probability estimate
under squared loss) because causalml's DR classifier feeds class labels, not
probabilities, into its pseudo-outcomes; outcome predictions are clipped to [0, 1].

Treatment coding: ``control`` (default 0) is the untreated value. Without ``arms`` the
treatment must be binary (``control`` and one other value); with ``arms`` every value must
be ``control`` or a declared arm, and every declared arm must be present.

The learners live by family: :mod:`~mktlab.uplift.base` (the shared base class and the
LightGBM fast path), :mod:`~mktlab.uplift.meta_learners` (S/T/X/R/DR) and
:mod:`~mktlab.uplift.forests` (uplift forest, econml); this module is the catalogue.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mktlab.errors import ValidationError
from mktlab.uplift.base import (
    MIN_ROWS_PER_ARM,
    UpliftLearner,
    lgbm_predictor,
)
from mktlab.uplift.forests import CausalForest, EconDRLearner, UpliftForest
from mktlab.uplift.meta_learners import DRLearner, RLearner, SLearner, TLearner, XLearner

__all__ = [
    "LEARNERS", "MIN_ROWS_PER_ARM", "CausalForest", "DRLearner",
    "EconDRLearner", "RLearner", "SLearner", "TLearner", "UpliftForest", "UpliftLearner",
    "XLearner", "default_learners", "lgbm_predictor", "make_learner",
]  # fmt: skip


LEARNERS: dict[str, type[UpliftLearner]] = {
    cls.name: cls
    for cls in (
        SLearner,
        TLearner,
        XLearner,
        RLearner,
        DRLearner,
        UpliftForest,
        CausalForest,
        EconDRLearner,
    )
}


def make_learner(name: str, **params: Any) -> UpliftLearner:
    """Build learner ``name`` (one of :data:`LEARNERS`) with ``params``."""
    if name not in LEARNERS:
        raise ValidationError(f"learner: unknown {name!r}; choose from {sorted(LEARNERS)}")
    return LEARNERS[name](**params)


def default_learners(
    *,
    names: Sequence[str] | None = None,
    n_estimators: int = 100,
    forest_estimators: int = 100,
    random_state: int = 0,
    control: Any = 0,
    arms: Sequence[Any] | None = None,
    binary: bool = True,
) -> dict[str, UpliftLearner]:
    """The candidate set for model selection, one instance per learner name.

    ``forest_estimators`` sizes the uplift and causal forests; ``binary=False`` drops the
    uplift random forest (it needs a binary outcome).
    """
    names = list(names) if names is not None else list(LEARNERS)
    out: dict[str, UpliftLearner] = {}
    for nm in names:
        if nm == "urf" and not binary:
            continue
        n_est = forest_estimators if nm in {"urf", "causal_forest"} else n_estimators
        out[nm] = make_learner(
            nm, n_estimators=n_est, random_state=random_state, control=control, arms=arms
        )
    return out
