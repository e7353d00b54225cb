"""The one place that talks to MLflow.

Runs go to the tracking URI from :mod:`mktlab.config` (SQLite under ``mlruns/`` by
default; artifacts under ``mlruns/artifacts``). Capabilities call these helpers instead
of importing :mod:`mlflow` themselves, so the store, tags and registry conventions stay
in one place.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from mktlab.config import PROJ_ROOT, quiet_tools, settings
from mktlab.errors import NotFoundError, ValidationError

CHAMPION = "champion"
_configured_uri: str | None = None


def _mlflow():
    # mlflow costs ~1 s to import; keep it off the import path of mktlab itself.
    quiet_tools()
    import mlflow

    return mlflow


def tracking_uri() -> str:
    """Configure MLflow for the current settings and return the tracking URI."""
    global _configured_uri
    s = settings()
    uri = s.mlflow_tracking_uri
    if _configured_uri != uri:
        mlflow = _mlflow()
        if uri.startswith("sqlite:///"):
            Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        _configured_uri = uri
    return uri


def _artifact_location(experiment: str) -> str | None:
    uri = settings().mlflow_tracking_uri
    if not uri.startswith("sqlite:///"):
        return None  # a tracking server decides where artifacts go
    return (settings().mlruns_dir / "artifacts" / experiment).resolve().as_uri()


def get_or_create_experiment(name: str) -> str:
    """Return the id of experiment ``name``, creating it with artifacts under ``mlruns/``."""
    tracking_uri()
    mlflow = _mlflow()
    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return mlflow.create_experiment(name, artifact_location=_artifact_location(name))
    except Exception:  # created concurrently by another process
        exp = mlflow.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJ_ROOT, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


@contextlib.contextmanager
def start_run(
    experiment: str,
    run_name: str | None = None,
    *,
    tags: Mapping[str, str] | None = None,
    params: Mapping[str, Any] | None = None,
) -> Iterator[Any]:
    """Start an MLflow run in ``experiment`` (one experiment per notebook or job).

    Tags every run with the mktlab version and git commit. Yields the active run.
    """
    import mktlab

    mlflow = _mlflow()
    exp_id = get_or_create_experiment(experiment)
    all_tags = {"mktlab.version": mktlab.__version__}
    commit = _git_commit()
    if commit:
        all_tags["mlflow.source.git.commit"] = commit
    all_tags.update(tags or {})
    with mlflow.start_run(experiment_id=exp_id, run_name=run_name, tags=all_tags) as run:
        if params:
            log_params(params)
        yield run


def log_params(params: Mapping[str, Any]) -> None:
    """Log parameters to the active run (values are stringified by MLflow)."""
    _mlflow().log_params({k: v for k, v in params.items()})


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    """Log numeric metrics to the active run; non-finite values are refused by name."""
    import math

    clean: dict[str, float] = {}
    for k, v in metrics.items():
        fv = float(v)
        if not math.isfinite(fv):
            raise ValidationError(f"metric {k!r} is not finite ({v!r})")
        clean[k] = fv
    _mlflow().log_metrics(clean, step=step)


def log_figure(fig: Any, artifact_file: str) -> None:
    """Log a matplotlib figure as an image artifact of the active run."""
    _mlflow().log_figure(fig, artifact_file)


def log_table(df: Any, artifact_file: str) -> None:
    """Log a DataFrame as a JSON table artifact of the active run."""
    _mlflow().log_table(df, artifact_file)


def log_dict(d: Mapping[str, Any], artifact_file: str) -> None:
    """Log a dictionary as a JSON/YAML artifact of the active run."""
    _mlflow().log_dict(dict(d), artifact_file)


def log_pyfunc_model(
    python_model: Any,
    *,
    name: str = "model",
    artifacts: Mapping[str, str] | None = None,
    input_example: Any = None,
    signature: Any = None,
    registered_model_name: str | None = None,
    pip_requirements: list[str] | None = None,
    code_paths: list[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Any:
    """Log an ``mlflow.pyfunc.PythonModel`` to the active run and return its ModelInfo.

    ``pip_requirements`` defaults to this project's package, so MLflow does not spawn a
    subprocess to infer requirements; ``metadata`` is stored with the model (what the
    service needs to know about it, e.g. an attribution model's channels).
    """
    mlflow = _mlflow()
    return mlflow.pyfunc.log_model(
        name=name,
        python_model=python_model,
        artifacts=dict(artifacts) if artifacts else None,
        input_example=input_example,
        signature=signature,
        registered_model_name=registered_model_name,
        pip_requirements=pip_requirements or _default_requirements(),
        code_paths=code_paths,
        metadata=dict(metadata) if metadata else None,
    )


def _default_requirements() -> list[str]:
    import importlib.metadata as md

    reqs = []
    for pkg in ("mlflow", "pandas", "numpy", "scikit-learn", "lightgbm"):
        try:
            reqs.append(f"{pkg}=={md.version(pkg)}")
        except md.PackageNotFoundError:
            continue
    return reqs


def register_model(model_uri: str, name: str, *, alias: str | None = CHAMPION) -> str:
    """Register ``model_uri`` as a new version of ``name`` and point ``alias`` at it.

    Returns the new version number as a string.
    """
    tracking_uri()
    mlflow = _mlflow()
    mv = mlflow.register_model(model_uri, name)
    if alias:
        set_alias(name, mv.version, alias)
    return str(mv.version)


def set_alias(name: str, version: str | int, alias: str = CHAMPION) -> None:
    """Point ``name@alias`` at ``version`` (raises :class:`NotFoundError` if absent)."""
    tracking_uri()
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    try:
        client.get_model_version(name, str(version))
    except MlflowException as exc:
        raise NotFoundError(f"model {name!r} has no version {version!r}") from exc
    client.set_registered_model_alias(name, alias, str(version))


def champion_version(name: str, alias: str = CHAMPION) -> str | None:
    """Version that ``name@alias`` points at, or ``None`` when there is none."""
    tracking_uri()
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return str(MlflowClient().get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def load_pyfunc(name: str, alias: str = CHAMPION) -> Any:
    """Load ``models:/name@alias`` as a pyfunc; :class:`NotFoundError` if not registered."""
    if champion_version(name, alias) is None:
        raise NotFoundError(f"no registered model {name!r} with alias @{alias}")
    return _mlflow().pyfunc.load_model(f"models:/{name}@{alias}")


def spark_udf(spark: Any, name: str, alias: str = CHAMPION, *, result_type: Any = None) -> Any:
    """``models:/name@alias`` as a Spark UDF (``mlflow.pyfunc.spark_udf``, this environment).

    ``env_manager="local"``: executors run this Python environment, as the local Spark of
    our machines does; a cluster's executors need the same packages installed.
    :class:`NotFoundError` if the model is not registered.
    """
    if champion_version(name, alias) is None:
        raise NotFoundError(f"no registered model {name!r} with alias @{alias}")
    return _mlflow().pyfunc.spark_udf(
        spark, model_uri(name, alias), result_type=result_type, env_manager="local"
    )


def model_uri(name: str, alias: str = CHAMPION) -> str:
    """The ``models:/name@alias`` URI (for BentoML's ``import_model``)."""
    return f"models:/{name}@{alias}"


def runs(experiment: str) -> Any:
    """Runs of ``experiment`` as a DataFrame (empty if the experiment does not exist)."""
    tracking_uri()
    import pandas as pd

    mlflow = _mlflow()
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        return pd.DataFrame()
    return mlflow.search_runs(experiment_ids=[exp.experiment_id])


# --- pickled predictors as pyfunc (added for mktlab.uplift; generic) -----------------
_PREDICTOR_CLS: Any = None
PREDICTOR_ARTIFACT = "predictor"


def _predictor_class() -> Any:
    """The ``PythonModel`` that forwards ``predict`` to a pickled object.

    Built lazily (mlflow is imported on first use) and published as
    ``mktlab.tracking.PickledPredictor`` through the module ``__getattr__``, so pickles
    refer to it by name instead of embedding its code.
    """
    global _PREDICTOR_CLS
    if _PREDICTOR_CLS is None:
        mlflow = _mlflow()

        class PickledPredictor(mlflow.pyfunc.PythonModel):
            """Loads the pickled object in ``load_context``; ``predict`` calls its ``predict``."""

            def load_context(self, context):
                import cloudpickle

                with open(context.artifacts[PREDICTOR_ARTIFACT], "rb") as fh:
                    self.predictor = cloudpickle.load(fh)

            def predict(self, context, model_input, params=None):
                return self.predictor.predict(model_input)

        PickledPredictor.__module__ = __name__
        PickledPredictor.__qualname__ = "PickledPredictor"
        _PREDICTOR_CLS = PickledPredictor
    return _PREDICTOR_CLS


def __getattr__(name: str) -> Any:
    if name == "PickledPredictor":
        return _predictor_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def log_python_predictor(
    predictor: Any,
    *,
    name: str = "model",
    registered_model_name: str | None = None,
    pip_requirements: list[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Any:
    """Log any picklable object with ``predict(DataFrame) -> DataFrame`` as a pyfunc.

    The object is cloudpickled into the artifact ``predictor`` and loaded back by a thin
    ``PythonModel``. No signature is inferred (pass none): the object validates its own
    input, and MLflow's schema enforcement would silently reorder columns. Returns the
    ``ModelInfo``; the loading environment must be able to import the object's classes.
    """
    import tempfile

    import cloudpickle

    mlflow = _mlflow()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "predictor.pkl"
        with path.open("wb") as fh:
            cloudpickle.dump(predictor, fh)
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=_predictor_class()(),
            artifacts={PREDICTOR_ARTIFACT: str(path)},
            registered_model_name=registered_model_name,
            pip_requirements=pip_requirements or _default_requirements(),
            metadata=dict(metadata) if metadata else None,
        )


def log_artifact(local_path: str | Path, artifact_path: str | None = None) -> None:
    """Log a local file or folder as an artifact of the active run."""
    _mlflow().log_artifact(str(local_path), artifact_path)


def load_pyfunc_uri(uri: str) -> Any:
    """Load any MLflow model URI (``models:/name/3``, ``runs:/...``) as a pyfunc (for the service)."""
    tracking_uri()
    return _mlflow().pyfunc.load_model(uri)


def bentoml_import(bentoml: Any, name: str, uri: str, **kwargs: Any) -> Any:
    """Copy MLflow model ``uri`` into the BentoML model store (``bentoml.mlflow.import_model``).

    BentoML's MLflow integration reads the registry itself, so it lives here with the rest
    of mktlab's MLflow access; ``bentoml`` is the module the service configured.
    """
    tracking_uri()
    return bentoml.mlflow.import_model(name, uri, **kwargs)


def bentoml_load(bentoml: Any, tag: str) -> Any:
    """Load a stored MLflow model from the BentoML model store as a pyfunc."""
    return bentoml.mlflow.load_model(tag)
