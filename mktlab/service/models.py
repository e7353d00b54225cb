"""Served models: MLflow registry champions imported into the BentoML model store.

The registry alias ``@champion`` says *which* version should be served; the BentoML
model store (``settings().models_dir``, i.e. ``BENTOML_HOME``) holds the copy the service
loads. :func:`import_champion` copies ``models:/<name>/<version>`` into the store with
``bentoml.mlflow.import_model`` and labels it with the MLflow version, so the service can
report what it serves; :func:`promote` moves the alias and re-imports.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mktlab import tracking
from mktlab.config import use_bentoml_home
from mktlab.errors import ConfigError, NotFoundError, ValidationError

#: model name -> required by the service
SERVED_MODELS: dict[str, bool] = {"uplift": True, "attribution": False, "rl_policy": False}


def bentoml_module() -> Any:
    """``bentoml``, imported after pointing ``BENTOML_HOME`` at our model store."""
    import os

    home = str(use_bentoml_home())
    import bentoml

    # BentoML's public API takes the store location only from BENTOML_HOME, read when
    # bentoml is first imported; it has no call to move the store afterwards. When
    # bentoml was imported first (a notebook, `bentoml serve` started by hand), the one
    # way to point it at our store is its DI container: the private part of this module.
    from bentoml._internal.configuration.containers import BentoMLContainer

    if BentoMLContainer.bentoml_home.get() != home:
        # bentoml was imported (e.g. by `bentoml serve`) before BENTOML_HOME pointed at
        # our store: re-point the store providers it has already resolved
        from bentoml._internal.bento import BentoStore
        from bentoml._internal.models import ModelStore

        for sub in ("bentos", "models", "envs", "tmp"):
            os.makedirs(os.path.join(home, sub), exist_ok=True)
        BentoMLContainer.bentoml_home.set(home)
        BentoMLContainer.model_store_dir.set(os.path.join(home, "models"))
        BentoMLContainer.bento_store_dir.set(os.path.join(home, "bentos"))
        BentoMLContainer.env_store_dir.set(os.path.join(home, "envs"))
        BentoMLContainer.tmp_bento_store_dir.set(os.path.join(home, "tmp"))
        BentoMLContainer.model_store.set(ModelStore(os.path.join(home, "models")))
        BentoMLContainer.bento_store.set(BentoStore(os.path.join(home, "bentos")))
        BentoMLContainer.tmp_bento_store.set(BentoStore(os.path.join(home, "tmp")))
    return bentoml


def store_dir() -> str:
    """Folder of the BentoML model store in use."""
    import os

    bentoml_module()
    return os.path.join(str(use_bentoml_home()), "models")


def _check_name(name: str) -> str:
    if name not in SERVED_MODELS:
        raise ValidationError(f"model name {name!r}: the service serves {sorted(SERVED_MODELS)}")
    return name


def feature_schema(pyfunc: Any) -> dict[str, Any]:
    """Input schema of a served pyfunc: ``{"input_columns": [...], "categorical": {col: levels}}``.

    Read from mktlab predictors (``predictor.prep`` of an uplift model, or an
    ``input_columns`` attribute), else from the MLflow model metadata; empty when unknown.
    """
    try:
        inner = pyfunc.unwrap_python_model()
    except Exception:  # not a python_function model with a PythonModel inside
        inner = None
    predictor = getattr(inner, "predictor", inner)
    prep = getattr(predictor, "prep", None)
    if prep is not None and hasattr(prep, "input_columns_"):
        levels = getattr(prep, "levels_", {}) or {}
        return {
            "input_columns": [str(c) for c in prep.input_columns_],
            "categorical": {str(c): [str(v) for v in lv] for c, lv in levels.items()},
        }
    meta = getattr(getattr(pyfunc, "metadata", None), "metadata", None) or {}
    if meta.get("channels"):  # an attribution model: the channels it knows
        return {"channels": [str(c) for c in meta["channels"]]}
    cols = getattr(predictor, "input_columns", None)
    if cols is None:
        cols = meta.get("input_columns")
    if cols:
        return {"input_columns": [str(c) for c in cols], "categorical": {}}
    return {}


@dataclass(frozen=True)
class ServedModel:
    """One model in the BentoML store."""

    name: str
    tag: str
    mlflow_version: str | None
    metadata: dict[str, Any]


def _served(model: Any) -> ServedModel:
    return ServedModel(
        name=model.tag.name,
        tag=str(model.tag),
        mlflow_version=model.info.labels.get("mlflow_version"),
        metadata=dict(model.info.metadata or {}),
    )


def latest(name: str) -> Any | None:
    """The newest BentoML model ``name`` in the store, or ``None``."""
    bentoml = bentoml_module()
    try:
        return bentoml.models.get(f"{name}:latest")
    except bentoml.exceptions.NotFound:
        return None


def import_champion(
    name: str, alias: str = tracking.CHAMPION, *, force: bool = False
) -> ServedModel:
    """Import ``name@alias`` from the MLflow registry into the BentoML model store.

    Skips the copy when the newest stored ``name`` already holds that MLflow version
    (unless ``force``). Returns the stored model.

    Raises
    ------
    NotFoundError
        ``name@alias`` is not registered.
    """
    _check_name(name)
    version = tracking.champion_version(name, alias)
    if version is None:
        raise NotFoundError(
            f"no registered model {name!r} with alias @{alias} in {tracking.tracking_uri()}; "
            f"train and register it first"
        )
    current = latest(name)
    if current is not None and not force and current.info.labels.get("mlflow_version") == version:
        return _served(current)
    bentoml = bentoml_module()
    uri = f"models:/{name}/{version}"
    tracking.tracking_uri()
    pyfunc = tracking.load_pyfunc_uri(uri)
    schema = feature_schema(pyfunc)
    model = tracking.bentoml_import(
        bentoml,
        name,
        uri,
        labels={"mlflow_version": str(version), "mlflow_alias": alias, "project": "mktlab"},
        metadata={"mlflow_name": name, "mlflow_version": str(version), "mlflow_uri": uri, **schema},
    )
    return _served(model)


def import_champions(names: list[str] | None = None) -> dict[str, ServedModel | None]:
    """Import every registered champion among ``names`` (default: all served models).

    A required model that is not registered raises; optional ones map to ``None``.
    """
    out: dict[str, ServedModel | None] = {}
    for name in names or list(SERVED_MODELS):
        try:
            out[name] = import_champion(name)
        except NotFoundError:
            if SERVED_MODELS.get(name):
                raise
            out[name] = None
    return out


def promote(name: str, version: str | int) -> ServedModel:
    """Point ``name@champion`` at ``version`` and import that version into the store."""
    _check_name(name)
    tracking.set_alias(name, version, tracking.CHAMPION)
    return import_champion(name)


def served_models() -> dict[str, ServedModel]:
    """The newest stored model of each served name that is present."""
    out = {}
    for name in SERVED_MODELS:
        m = latest(name)
        if m is not None:
            out[name] = _served(m)
    return out


def require_models() -> dict[str, ServedModel]:
    """:func:`served_models`, raising a clear :class:`ConfigError` if a required one is missing."""
    present = served_models()
    missing = [n for n, req in SERVED_MODELS.items() if req and n not in present]
    if missing:
        raise ConfigError(
            f"model(s) {missing} not in the BentoML model store at {store_dir()}: import the "
            f"registry champion with `mktlab models import` (or `mktlab models promote NAME VERSION`)"
        )
    return present


def model_table() -> list[dict[str, Any]]:
    """One row per served name: registry champion version, stored tag and version, in sync."""
    rows = []
    stored = served_models()
    for name, required in SERVED_MODELS.items():
        champ = tracking.champion_version(name)
        m = stored.get(name)
        rows.append(
            {
                "name": name,
                "required": required,
                "champion_version": champ,
                "stored_tag": m.tag if m else None,
                "stored_version": m.mlflow_version if m else None,
                "in_sync": champ is not None and m is not None and m.mlflow_version == champ,
            }
        )
    return rows


def single_threaded(obj: Any, _depth: int = 0, _seen: set | None = None) -> int:
    """Set ``n_jobs=1`` on every fitted estimator inside ``obj``; return how many.

    A served model answers one small request per thread: worker processes and batching
    give the parallelism. LightGBM fitted with ``n_jobs=2`` starts an OpenMP team for
    every one-row predict, which under load costs tens of milliseconds per call.
    """
    seen = _seen if _seen is not None else set()
    if (
        _depth > 8
        or id(obj) in seen
        or isinstance(obj, str | bytes | int | float | np.ndarray | pd.DataFrame)
    ):
        return 0
    seen.add(id(obj))
    n = 0
    if hasattr(obj, "n_jobs") and hasattr(obj, "set_params") and getattr(obj, "n_jobs", 1) != 1:
        with contextlib.suppress(Exception):
            obj.set_params(n_jobs=1)
            n += 1
    if isinstance(obj, dict):
        children = list(obj.values())
    elif isinstance(obj, list | tuple | set):
        children = list(obj)
    else:
        children = list(getattr(obj, "__dict__", {}).values())
    for child in children:
        n += single_threaded(child, _depth + 1, seen)
    return n
