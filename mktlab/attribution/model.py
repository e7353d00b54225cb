"""The fitted attribution as a servable model, and logging it to MLflow.

:class:`AttributionModel` is a plain callable (MLflow wraps any one-argument callable as
a pyfunc), so this module never imports MLflow: :func:`log_attribution` goes through
:mod:`mktlab.tracking`. Given journeys it returns per-journey channel credits:

* ``method="shapley"``: each journey's conversions split equally over its distinct
  channels — exactly the journey's share of the simplified Shapley value, so summing
  the credits over the training journeys reproduces :class:`ShapleyAttribution`.
* ``method="markov"``: split in proportion to the channels' fitted removal effects
  (a journey-level reading of the chain; the sum over journeys is not the aggregate
  Markov credit, which is not decomposable by journey).

Channels the model never saw in training have no weight. Called as a model (the
served pyfunc, ``model(journeys)``) it refuses them with a
:class:`~mktlab.errors.ValidationError` naming each unknown channel, the journeys
holding it and the known channels, rather than silently crediting the rest of the
journey. :meth:`AttributionModel.credit` keeps them when asked (``unknown="split"``, its
default for analysts): they get zero credit, and a journey of only unknown channels is
split equally rather than dropped, so credits always sum to the journey's conversions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mktlab.attribution.compare import AttributionResult
from mktlab.attribution.paths import DEFAULT_SEP, Paths
from mktlab.errors import ValidationError

MODEL_NAME = "attribution"
EXPERIMENT = "attribution"


@dataclass(eq=False)  # hashable by identity: MLflow caches wrapped callables
class AttributionModel:
    """Channel weights learned from journeys; call it on journeys to get credits.

    Parameters
    ----------
    method : {"markov", "shapley"}
    weights : mapping of str to float
        Per-channel weight used to split a journey's conversions (removal effects for
        Markov, 1 for Shapley).
    summary : mapping of str to dict
        Channel-level results to ship with the model (credits per method, removal
        effects), returned by :meth:`tables`.
    sep : str
        Separator of string paths.
    """

    method: str
    weights: Mapping[str, float]
    summary: Mapping[str, Any] = field(default_factory=dict)
    sep: str = DEFAULT_SEP

    def __post_init__(self) -> None:
        if self.method not in ("markov", "shapley"):
            raise ValidationError(f"method: {self.method!r} is not 'markov' or 'shapley'")
        w = {str(k): float(v) for k, v in dict(self.weights).items()}
        bad = [k for k, v in w.items() if not np.isfinite(v) or v < 0]
        if bad:
            raise ValidationError(f"weights: negative or non-finite for {bad}")
        self.weights = w

    @classmethod
    def from_result(cls, result: AttributionResult, method: str = "markov") -> AttributionModel:
        """Build from :func:`~mktlab.attribution.compare.attribute` output."""
        if method == "markov":
            if result.markov is None:
                raise ValidationError("method: 'markov' was not run; include it in methods")
            weights = {str(c): float(v) for c, v in result.markov.removal_effects_.items()}
        elif method == "shapley":
            weights = dict.fromkeys(result.paths.channels, 1.0)
        else:
            raise ValidationError(f"method: {method!r} is not 'markov' or 'shapley'")
        summary: dict[str, Any] = {
            "conversions": result.conversions.to_dict(),
            "value": result.value.to_dict(),
        }
        if result.markov is not None:
            summary["removal_effects"] = result.markov.removal_effects_.to_dict()
            summary["conversion_probability"] = result.markov.conversion_probability_
        return cls(method=method, weights=weights, summary=summary)

    def tables(self) -> dict[str, Any]:
        """The channel-level results the model was built with."""
        return dict(self.summary)

    @property
    def channels(self) -> list[str]:
        """The channels seen in training (the ones with a weight), in fitted order."""
        return list(self.weights)

    def unknown_channels(self, journeys: Any) -> dict[str, list[int]]:
        """Channels of ``journeys`` the model never saw: channel -> journey positions.

        ``journeys`` takes the forms :meth:`credit` takes. Empty when every channel is known.
        """
        paths, _ = self._paths(journeys)
        return self._unknown(paths)

    def _unknown(self, paths: Paths) -> dict[str, list[int]]:
        known = len(self.weights)  # from_frame lists the fitted channels first
        hit = paths.touches >= known
        out: dict[str, list[int]] = {}
        for ch, j in sorted(set(zip(paths.touches[hit].tolist(), paths.path_index[hit].tolist()))):
            out.setdefault(paths.channels[ch], []).append(int(j))
        return out

    def _paths(self, journeys: Any) -> tuple[Paths, pd.Index]:
        if isinstance(journeys, Mapping):
            journeys = pd.DataFrame(dict(journeys))
        if isinstance(journeys, list | tuple):
            journeys = pd.DataFrame({"path": list(journeys)})
        if not isinstance(journeys, pd.DataFrame) or "path" not in journeys.columns:
            raise ValidationError("journeys: expected a DataFrame (or dict) with a 'path' column")
        if len(journeys) == 0:
            raise ValidationError("journeys: no rows")
        df = pd.DataFrame({"path": journeys["path"].to_numpy()})
        df["conversions"] = (
            journeys["conversions"].to_numpy(dtype=np.float64, na_value=np.nan)
            if "conversions" in journeys.columns
            else 1.0
        )
        return Paths.from_frame(df, sep=self.sep, channels=list(self.weights)), journeys.index

    def credit(self, journeys: Any, *, unknown: str = "split") -> pd.DataFrame:
        """Per-journey channel credits.

        Parameters
        ----------
        journeys : DataFrame, mapping or list
            A ``path`` column (string joined by ``sep``, or a list of channels) and
            optionally ``conversions`` (default 1 per journey). A list of paths works too.
        unknown : {"split", "raise"}
            Channels unseen in training: ``"split"`` gives them zero weight (a journey of
            only unknown channels is split equally); ``"raise"`` refuses the journeys.

        Returns
        -------
        DataFrame
            One row per journey, one column per channel (fitted channels first, then any
            new ones); each row sums to the journey's conversions.

        Raises
        ------
        ValidationError
            Malformed journeys, or (``unknown="raise"``) a channel unseen in training:
            the message names each one, the journeys (0-based) holding it and the known
            channels.
        """
        if unknown not in ("split", "raise"):
            raise ValidationError(f"unknown: expected 'split' or 'raise', got {unknown!r}")
        paths, index = self._paths(journeys)
        if unknown == "raise":
            bad = self._unknown(paths)
            if bad:
                where = "; ".join(
                    f"{ch!r} in journeys {pos[:10]}" + (" ..." if len(pos) > 10 else "")
                    for ch, pos in bad.items()
                )
                raise ValidationError(
                    f"unknown channel(s) {sorted(bad)} ({where}); the model knows {self.channels}"
                )
        return self._credit(paths, index)

    def _credit(self, paths: Paths, index: pd.Index) -> pd.DataFrame:
        k = paths.n_channels
        w = np.array([self.weights.get(c, 0.0) for c in paths.channels])
        # distinct channels per journey: a repeated touch does not add weight
        key = np.unique(paths.path_index * k + paths.touches)
        jid, ch = key // k, key % k
        wj = w[ch]
        tot = np.bincount(jid, weights=wj, minlength=paths.n_paths)
        cnt = np.bincount(jid, minlength=paths.n_paths)
        share = np.where(tot[jid] > 0, wj / np.where(tot[jid] > 0, tot[jid], 1.0), 1.0 / cnt[jid])
        out = np.zeros((paths.n_paths, k))
        out[jid, ch] = share * paths.conversions[jid]
        return pd.DataFrame(out, columns=list(paths.channels), index=index)

    def __call__(self, model_input: Any) -> Any:
        # MLflow's pyfunc entry point (what the service calls): a channel the model never
        # saw would silently get no credit, so the served model refuses it by name
        return self.credit(model_input, unknown="raise")


def log_attribution(
    result: AttributionResult,
    *,
    method: str = "markov",
    experiment: str = EXPERIMENT,
    run_name: str | None = None,
    truth: pd.Series | None = None,
    register: bool = False,
    model_name: str = MODEL_NAME,
    alias: str = "champion",
    figure: Any = None,
) -> dict[str, Any]:
    """Log an attribution run to MLflow and save the fitted model as a pyfunc.

    Logs parameters, per-channel credit tables, the Markov transitions and removal
    effects, the Shapley coalition table (largest 20k sets), comparison metrics against
    ``truth`` when given, and ``figure``. With ``register=True`` the model becomes a new
    version of ``model_name`` and ``alias`` points at it.

    Returns
    -------
    dict
        ``run_id``, ``model_uri`` and ``version`` (None unless registered).
    """
    from mktlab import tracking

    model = AttributionModel.from_result(result, method=method)
    paths = result.paths
    with tracking.start_run(
        experiment, run_name=run_name, params={**result.params, "served_method": method}
    ) as run:
        tracking.log_metrics(
            {
                "n_paths": paths.n_paths,
                "n_channels": paths.n_channels,
                "total_conversions": paths.total_conversions,
                "total_value": paths.total_value,
                "unattributed_conversions": paths.unattributed_conversions,
            }
        )
        tracking.log_table(result.conversions.reset_index(), "tables/conversions.json")
        tracking.log_table(result.value.reset_index(), "tables/value.json")
        if result.markov is not None:
            tracking.log_metrics(
                {"markov_conversion_probability": result.markov.conversion_probability_}
            )
            tracking.log_table(result.markov.attribution_.reset_index(), "tables/markov.json")
            tracking.log_table(result.markov.transitions_, "tables/markov_transitions.json")
        if result.shapley is not None:
            coal = result.shapley.coalitions_.nlargest(20_000, "journeys").copy()
            coal["channels"] = [" + ".join(c) for c in coal["channels"]]
            tracking.log_table(coal, "tables/shapley_coalitions.json")
        if truth is not None:
            cmp = result.compare_to(truth)
            tracking.log_table(cmp.reset_index(), "tables/vs_truth.json")
            tracking.log_metrics({f"spearman_{m}": v for m, v in cmp["spearman"].items()})
        if figure is not None:
            tracking.log_figure(figure, "comparison.png")
        # no input example on purpose: MLflow would infer a strict schema from it and
        # refuse integer conversions or a missing optional column at serving time
        info = tracking.log_pyfunc_model(model, name="model", metadata={"channels": model.channels})
        run_id = run.info.run_id
    version = None
    if register:
        version = tracking.register_model(info.model_uri, model_name, alias=alias or None)
    return {"run_id": run_id, "model_uri": info.model_uri, "version": version}
