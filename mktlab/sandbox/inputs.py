"""What a strategy reads from a replay: audiences, uplift models and the rule events.

:func:`resolve_audience` and :func:`resolve_model` find what a strategy names;
:func:`uplift_scores` scores the log with a model; the rest shapes the log for the rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from mktlab.errors import NotFoundError, SchemaError, ValidationError
from mktlab.rules.engine import Membership
from mktlab.sandbox.data import LoggedData
from mktlab.strategy.spec import Strategy


def resolve_audience(expr: str | None, data: LoggedData, audiences: Any = None) -> np.ndarray:
    """Boolean mask of log rows inside audience ``expr``.

    ``expr`` is looked up, in order: as a key of ``audiences`` (members: set, array,
    BitMap or boolean Series by user), as a boolean column of the log, and through an
    audience store passed as ``audiences`` (any object with ``evaluate(expr)``, e.g.
    :mod:`mktlab.audience`'s ``AudienceStore``) returning members. Bitmap members are
    uids, matched against the log's ``uid`` column when it has one.
    """
    n = len(data)
    if expr is None:
        return np.ones(n, bool)
    users = data.frame[data.user_col].to_numpy() if data.user_col else np.arange(n)
    members = None
    if isinstance(audiences, Mapping) and expr in audiences:
        members = audiences[expr]
    elif expr in data.frame.columns and pd.api.types.is_bool_dtype(data.frame[expr].dtype):
        return data.frame[expr].to_numpy(dtype=bool)
    elif audiences is not None and not isinstance(audiences, Mapping):
        for meth in ("evaluate", "query", "members"):
            if hasattr(audiences, meth):
                members = getattr(audiences, meth)(expr)
                break
    if members is None:
        known = sorted(audiences) if isinstance(audiences, Mapping) else []
        raise NotFoundError(
            f"unknown audience {expr!r}: not among supplied audiences {known}, not a boolean column of "
            f"{data.name}, and no audience store was given"
        )
    if isinstance(members, np.ndarray) and members.dtype == bool and len(members) == n:
        return members
    m = Membership(members)
    if m.integer_keys and "uid" in data.frame.columns:
        # bitmap audiences hold dense uids (mktlab.identity); match the log's uid column
        users = data.frame["uid"].to_numpy()
    return m.mask(users)


def resolve_model(name: str, models: Mapping[str, Any] | None = None) -> Any:
    """An object with ``predict(X)``: from ``models`` or the MLflow registry (``@champion``)."""
    if models and name in models:
        m = models[name]
    else:
        from mktlab import tracking

        try:
            m = tracking.load_pyfunc(name)
        except NotFoundError as exc:
            raise NotFoundError(
                f"unknown model {name!r}: not among supplied models {sorted(models or {})} and {exc}"
            ) from None
    if not hasattr(m, "predict"):
        raise ValidationError(f"model {name!r}: expected an object with predict(X) -> uplift")
    return m


def uplift_scores(model: Any, data: LoggedData, arm: Any) -> np.ndarray:
    """The model's predicted uplift of ``arm`` for each log row."""
    cols = getattr(model, "input_columns", None)
    X = data.frame[list(cols)] if cols is not None else data.X
    out = model.predict(X)
    if isinstance(out, pd.DataFrame):
        col = (
            f"uplift_{arm}"
            if f"uplift_{arm}" in out.columns
            else ("uplift" if "uplift" in out.columns else out.columns[0])
        )
        out = out[col].to_numpy()
    out = np.asarray(out, dtype=float)
    if out.ndim == 2:
        j = list(data.arms[1:]).index(arm) if out.shape[1] == data.n_arms - 1 else 0
        out = out[:, j]
    if out.shape != (len(data),):
        raise SchemaError(
            f"model predictions: expected {len(data)} uplift values, got shape {out.shape}"
        )
    return out


def _treat_arm(strategy: Strategy, data: LoggedData) -> int:
    arm = strategy.policy.arm
    if arm is None:
        return 1
    if arm not in data.arms:
        str_arms = [str(a) for a in data.arms]
        if str(arm) in str_arms:
            return str_arms.index(str(arm))
        raise ValidationError(
            f"strategy {strategy.name!r}: policy.arm {arm!r} is not an arm of {data.name} {data.arms!r}"
        )
    idx = data.arms.index(arm)
    if idx == 0:
        raise ValidationError(f"strategy {strategy.name!r}: policy.arm {arm!r} is the control arm")
    return idx


def _rule_events(data: LoggedData) -> pd.DataFrame:
    ev = data.frame.copy()
    if "event" not in ev.columns:
        ev["event"] = "decision"
    if data.ts_col is None:
        ev["ts"] = pd.Timestamp("2000-01-01") + pd.to_timedelta(np.arange(len(ev)), unit="s")
    elif data.ts_col != "ts":
        ev["ts"] = ev[data.ts_col]
    if data.user_col is None or data.user_col != "user_id":
        ev["user_id"] = ev[data.user_col] if data.user_col else np.arange(len(ev))
    return ev
