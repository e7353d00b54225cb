"""Deterministic assignment of units to experiments and arms.

Three hashes, each salted so that they are independent of one another (see
:mod:`mktlab.experiments._hash` for the hash itself):

* **holdout**: ``bucket(f"{holdout_salt}:{unit}")`` below ``holdout * n_buckets`` keeps
  a unit out of every experiment (a long-term, global holdout).
* **layer**: ``bucket(f"{layer.salt}:{unit}")`` places a unit in one slot of the layer.
  Experiments of one layer own disjoint bucket ranges, so the layer is an *exclusive
  namespace* (a unit is in at most one of its experiments). Different layers use
  different salts, so they are *orthogonal*: being in an experiment of one layer says
  nothing about the experiments of another.
* **arm**: ``bucket(f"{experiment.salt}:{unit}")`` picks the arm by cumulative weights.

An experiment exposes the first ``traffic`` share of its bucket range. Ramping traffic
up only adds buckets at the end of the range, and the arm comes from a separate hash
that does not depend on traffic, so a unit never switches arm when traffic grows.
Plain ``uid % 100`` gives every experiment the same split of users and correlates them;
the tests show it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mktlab.errors import ValidationError
from mktlab.experiments._hash import N_BUCKETS, hash_buckets, prepare_ids


def _check_share(value: float, name: str, *, allow_zero: bool = True) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{name}: must be a number in [0, 1], got {value!r}") from exc
    lo_ok = v >= 0 if allow_zero else v > 0
    if not (lo_ok and v <= 1) or math.isnan(v):
        rng = "[0, 1]" if allow_zero else "(0, 1]"
        raise ValidationError(f"{name}: must be in {rng}, got {value!r}")
    return v


@dataclass(frozen=True)
class Experiment:
    """One experiment: arms with weights, a traffic share and its own salt.

    Parameters
    ----------
    name : str
        Experiment name (also the default salt).
    arms : mapping of str to float, or sequence of str
        Arm names and their relative weights; a sequence means equal weights. The first
        arm is the control by convention.
    traffic : float, default 1.0
        Share in (0, 1] of the experiment's bucket range that is exposed.
    salt : str, optional
        Salt of the arm hash; defaults to ``name``. Change it to re-randomise.
    buckets : (int, int), optional
        ``[start, stop)`` bucket range owned inside its layer; default the whole layer.
    """

    name: str
    arms: Mapping[str, float] | Sequence[str] = ("control", "treatment")
    traffic: float = 1.0
    salt: str | None = None
    buckets: tuple[int, int] | None = None
    weights: tuple[float, ...] = field(init=False, repr=False)
    arm_names: tuple[str, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValidationError(
                f"name: experiment name must be a non-empty string, got {self.name!r}"
            )
        if isinstance(self.arms, Mapping):
            names = tuple(str(a) for a in self.arms)
            raw = list(self.arms.values())
        elif isinstance(self.arms, str) or not isinstance(self.arms, Sequence):
            raise ValidationError(
                f"arms: expected a mapping arm -> weight or a list of arms, got {self.arms!r}"
            )
        else:
            names = tuple(str(a) for a in self.arms)
            raw = [1.0] * len(names)
        if len(names) < 2:
            raise ValidationError(
                f"arms: experiment {self.name!r} needs at least two arms, got {list(names)}"
            )
        if len(set(names)) != len(names):
            raise ValidationError(f"arms: duplicate arm names in {list(names)}")
        try:
            w = np.asarray(raw, dtype=float)
        except (TypeError, ValueError) as exc:
            raise ValidationError(f"arms: weights must be numbers, got {raw!r}") from exc
        if not np.all(np.isfinite(w)) or np.any(w <= 0):
            raise ValidationError(f"arms: weights must be positive, got {dict(zip(names, raw))}")
        object.__setattr__(self, "arm_names", names)
        object.__setattr__(self, "weights", tuple(float(x) for x in w / w.sum()))
        _check_share(self.traffic, "traffic", allow_zero=False)
        if self.salt is not None and (not isinstance(self.salt, str) or not self.salt):
            raise ValidationError(f"salt: must be a non-empty string, got {self.salt!r}")
        if self.buckets is not None:
            try:
                start, stop = (int(x) for x in self.buckets)
            except (TypeError, ValueError) as exc:
                raise ValidationError(
                    f"buckets: expected (start, stop), got {self.buckets!r}"
                ) from exc
            if not 0 <= start < stop:
                raise ValidationError(f"buckets: need 0 <= start < stop, got {self.buckets!r}")
            object.__setattr__(self, "buckets", (start, stop))

    @property
    def arm_salt(self) -> str:
        """Salt of the arm hash."""
        return self.salt or self.name

    @property
    def control(self) -> str:
        """The first arm."""
        return self.arm_names[0]

    def with_traffic(self, traffic: float) -> Experiment:
        """The same experiment at another traffic share (a ramp-up step)."""
        return Experiment(
            self.name, dict(zip(self.arm_names, self.weights)), traffic, self.salt, self.buckets
        )

    def arm_of_buckets(self, arm_buckets: np.ndarray, n_buckets: int = N_BUCKETS) -> np.ndarray:
        """Arm index of each arm bucket (cumulative weights over ``n_buckets``)."""
        edges = np.round(np.cumsum(self.weights) * n_buckets).astype(np.int64)
        return np.searchsorted(edges, arm_buckets, side="right")

    def assign(self, ids: Any, *, n_buckets: int = N_BUCKETS) -> pd.Series:
        """Arm of every unit (``<NA>`` when not exposed), for a stand-alone experiment.

        Exposure uses the hash salted ``f"{salt}:exposure"``; use a :class:`Layer` to
        run several experiments side by side.
        """
        return Layer(f"{self.arm_salt}:exposure", [self], n_buckets=n_buckets).assign(ids)[
            self.name
        ]


@dataclass(frozen=True)
class Layer:
    """An exclusive namespace: experiments on disjoint bucket ranges of one salted hash.

    Parameters
    ----------
    name : str
        Layer name (also the default salt of the layer hash).
    experiments : sequence of Experiment
        Experiments of the layer. Without ``buckets``, experiments split the layer evenly
        in order; with ``buckets``, their ranges must not overlap.
    salt : str, optional
        Salt of the layer hash; defaults to ``name``.
    n_buckets : int, default 10_000
    """

    name: str
    experiments: Sequence[Experiment] = ()
    salt: str | None = None
    n_buckets: int = N_BUCKETS
    ranges: dict[str, tuple[int, int]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValidationError(f"name: layer name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.n_buckets, int) or self.n_buckets < 2:
            raise ValidationError(f"n_buckets: must be an integer >= 2, got {self.n_buckets!r}")
        exps = tuple(self.experiments)
        for e in exps:
            if not isinstance(e, Experiment):
                raise ValidationError(
                    f"experiments: layer {self.name!r} got {type(e).__name__}, expected Experiment"
                )
        names = [e.name for e in exps]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValidationError(
                f"experiments: duplicate experiment names {dup} in layer {self.name!r}"
            )
        object.__setattr__(self, "experiments", exps)
        ranges: dict[str, tuple[int, int]] = {}
        explicit = [e for e in exps if e.buckets is not None]
        if explicit and len(explicit) != len(exps):
            raise ValidationError(
                f"buckets: layer {self.name!r} mixes experiments with and without bucket ranges; "
                "give every experiment its range or none"
            )
        if explicit:
            for e in exps:
                assert e.buckets is not None
                if e.buckets[1] > self.n_buckets:
                    raise ValidationError(
                        f"buckets: experiment {e.name!r} range {e.buckets} exceeds the layer's "
                        f"{self.n_buckets} buckets"
                    )
                ranges[e.name] = e.buckets
            ordered = sorted(ranges.items(), key=lambda kv: kv[1])
            for (a, ra), (b, rb) in itertools.pairwise(ordered):
                if rb[0] < ra[1]:
                    raise ValidationError(
                        f"buckets: overlapping allocations in namespace {self.name!r}: "
                        f"{a!r} {list(ra)} and {b!r} {list(rb)}"
                    )
        elif exps:
            edges = np.linspace(0, self.n_buckets, len(exps) + 1).round().astype(int)
            ranges = {e.name: (int(edges[i]), int(edges[i + 1])) for i, e in enumerate(exps)}
        object.__setattr__(self, "ranges", ranges)

    @property
    def layer_salt(self) -> str:
        """Salt of the layer hash."""
        return self.salt or self.name

    def exposed_range(self, experiment: Experiment) -> tuple[int, int]:
        """``[start, stop)`` of layer buckets exposed to ``experiment`` at its traffic."""
        start, stop = self.ranges[experiment.name]
        return start, start + math.floor(experiment.traffic * (stop - start) + 1e-9)

    def assign(self, ids: Any, *, eligible: np.ndarray | None = None) -> pd.DataFrame:
        """One column per experiment holding the unit's arm, or ``<NA>`` if not exposed."""
        arr = prepare_ids(ids)
        n = len(arr)
        out = pd.DataFrame(index=pd.RangeIndex(n))
        if not self.experiments:
            return out
        layer_b: np.ndarray | None = None
        for e in self.experiments:
            lo, hi = self.exposed_range(e)
            if (lo, hi) == (0, self.n_buckets):
                # the whole layer: skip the layer hash (same result, one hash less)
                exposed = np.ones(n, dtype=bool)
            else:
                if layer_b is None:
                    layer_b = hash_buckets(arr, self.layer_salt, self.n_buckets)
                exposed = (layer_b >= lo) & (layer_b < hi)
            if eligible is not None:
                exposed &= eligible
            codes = np.full(n, -1, dtype=np.int64)
            if exposed.all():
                codes = e.arm_of_buckets(
                    hash_buckets(arr, e.arm_salt, self.n_buckets), self.n_buckets
                )
            elif exposed.any():
                idx = np.flatnonzero(exposed)
                arm_b = hash_buckets(arr, e.arm_salt, self.n_buckets)[idx]
                codes[idx] = e.arm_of_buckets(arm_b, self.n_buckets)
            out[e.name] = pd.Categorical.from_codes(codes, categories=pd.Index(list(e.arm_names)))
        return out


@dataclass(frozen=True)
class Assigner:
    """Layers of experiments plus a global holdout.

    Parameters
    ----------
    layers : sequence of Layer
        Orthogonal layers; their names and salts must differ.
    holdout : float, default 0.0
        Share of units kept out of every experiment.
    holdout_salt : str, default "global-holdout"

    Examples
    --------
    >>> a = Assigner([Layer("checkout", [Experiment("button", {"control": .5, "green": .5})])])
    >>> a.assign(["u1", "u2"]).columns.tolist()
    ['holdout', 'button']
    """

    layers: Sequence[Layer] = ()
    holdout: float = 0.0
    holdout_salt: str = "global-holdout"

    def __post_init__(self) -> None:
        layers = tuple(self.layers)
        for la in layers:
            if not isinstance(la, Layer):
                raise ValidationError(f"layers: got {type(la).__name__}, expected Layer")
        for attr, values in (
            ("name", [la.name for la in layers]),
            ("salt", [la.layer_salt for la in layers]),
        ):
            dup = sorted({v for v in values if values.count(v) > 1})
            if dup:
                raise ValidationError(
                    f"layers: duplicate layer {attr}(s) {dup}; layers must be independent"
                )
        exps = [e.name for la in layers for e in la.experiments]
        dup = sorted({v for v in exps if exps.count(v) > 1})
        if dup:
            raise ValidationError(f"experiments: {dup} appear in more than one layer")
        object.__setattr__(self, "layers", layers)
        _check_share(self.holdout, "holdout")
        if not isinstance(self.holdout_salt, str) or not self.holdout_salt:
            raise ValidationError(
                f"holdout_salt: must be a non-empty string, got {self.holdout_salt!r}"
            )

    def assign(self, ids: Any) -> pd.DataFrame:
        """Assign units: a ``holdout`` column and one arm column per experiment.

        Parameters
        ----------
        ids : array-like of str or int

        Returns
        -------
        pandas.DataFrame
            Index aligned with ``ids`` (positions); ``holdout`` bool, then a categorical
            column per experiment with the arm or ``<NA>``.
        """
        arr = prepare_ids(ids)
        n = len(arr)
        if self.holdout > 0:
            hb = hash_buckets(arr, self.holdout_salt, N_BUCKETS)
            held = hb < round(self.holdout * N_BUCKETS)
        else:
            held = np.zeros(n, dtype=bool)
        frames = [pd.DataFrame({"holdout": held})]
        for la in self.layers:
            frames.append(la.assign(arr, eligible=~held))
        out = pd.concat(frames, axis=1)
        if isinstance(ids, pd.Series | pd.Index) and len(ids) == n:
            out.index = ids.index if isinstance(ids, pd.Series) else ids
        return out


def assign(
    ids: Any,
    experiment: str,
    arms: Mapping[str, float] | Sequence[str] = ("control", "treatment"),
    *,
    traffic: float = 1.0,
) -> pd.Series:
    """Arm of every unit in one stand-alone experiment (``<NA>`` when not exposed).

    Shortcut for ``Experiment(experiment, arms, traffic).assign(ids)``.
    """
    return Experiment(experiment, arms, traffic).assign(ids)
