"""ServiceCore scores mktlab uplift models without DataFrames, with the same answers.

In-process (no server): a real uplift model trained on simulated data, wrapped like the
MLflow pyfunc the store loads. The fast path (``predict_records``) is compared with the
DataFrame path a pyfunc without ``predict_records`` takes.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from mktlab.errors import ValidationError
from mktlab.service.core import ServiceCore
from mktlab.uplift import make_learner, simulate
from mktlab.uplift.model import fit_uplift_model


class PyFunc:
    """What ``bentoml.mlflow.load_model`` gives: ``predict`` and the unwrapped predictor."""

    def __init__(self, predictor):
        self._inner = SimpleNamespace(predictor=predictor)

    def unwrap_python_model(self):
        return self._inner

    def predict(self, X):
        return self._inner.predictor.predict(X)


def _cores(model, threshold=0.05):
    schemas = {"uplift": {"input_columns": model.input_columns}}
    fast = ServiceCore({"uplift": PyFunc(model)}, schemas=schemas, threshold=threshold)
    plain = PyFunc(SimpleNamespace(predict=model.predict))  # no predict_records
    slow = ServiceCore({"uplift": plain}, schemas=schemas, threshold=threshold)
    assert fast._records_scorer("uplift") is not None
    assert slow._records_scorer("uplift") is None
    return fast, slow


@pytest.fixture(scope="module", params=[1, 2], ids=["one-arm", "two-arms"])
def model(request):
    arms = request.param
    d = simulate(1500, seed=31, n_arms=arms, effect=0.2)
    kw = {"arms": [1, 2]} if arms == 2 else {}
    return d, fit_uplift_model(d, make_learner("t", n_estimators=25, **kw))


def _rows(d, n, seed):
    rng = np.random.default_rng(seed)
    out = []
    for r in d.X.sample(n, random_state=seed).to_dict("records"):
        r = {k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
        if rng.random() < 0.3:
            r["region"] = "atlantis"
        out.append(r)
    return out


def test_uplift_and_score_match_the_dataframe_path(model):
    d, m = model
    fast, slow = _cores(m)
    for n, seed in ((1, 0), (1, 1), (16, 2), (50, 3)):
        rows = _rows(d, n, seed)
        assert fast.uplift(rows) == slow.uplift(rows)
        pd.testing.assert_frame_equal(fast.score(rows), slow.score(rows), check_exact=True)
        pd.testing.assert_frame_equal(
            fast.score(rows), m.predict(pd.DataFrame(rows)), check_exact=True
        )
    ans = fast.uplift(_rows(d, 1, 4))[0]
    assert set(ans) == {"uplift", "p0", "p1", "quadrant", "treat"}
    assert isinstance(ans["quadrant"], str)
    assert isinstance(ans["treat"], bool)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"x0": "lots"}, r"^rows: features: column 'x0' is not numeric"),
        ({"x4": None}, r"^rows: features: column 'x4' has missing values \(rows \[1\]\)"),
        ({"x1": float("inf")}, r"^rows: X: missing or infinite values in column\(s\) \['x1'\]"),
        ({"age": 3}, r"^rows\[1\]: missing feature\(s\) none, unexpected \['age'\]"),
        ({"x2": ...}, r"^rows\[1\]: missing feature\(s\) \['x2'\], unexpected none"),
    ],
)
def test_bad_rows_raise_the_same_validation_errors(model, change, message):
    d, m = model
    fast, slow = _cores(m)
    good = _rows(d, 1, 0)[0]
    bad = {k: v for k, v in good.items() if change.get(k, None) is not ...}
    bad.update({k: v for k, v in change.items() if v is not ...})
    for core in (fast, slow):
        with pytest.raises(ValidationError, match=message):
            core.uplift([good, bad])
    if "x0" in change:  # the fast path also names the row and the value
        with pytest.raises(ValidationError, match=r"row 1 holds 'lots'"):
            fast.uplift([good, bad])
    for core in (fast, slow):
        with pytest.raises(ValidationError, match="rows: no rows given"):
            core.uplift([])
