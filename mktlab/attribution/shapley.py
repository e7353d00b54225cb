"""Shapley-value attribution: the simplified closed form, ordered, and sampled.

Simplified Shapley (Zhao et al. 2018). The value of a coalition ``S`` of channels is the
conversions of journeys whose *set* of touched channels ``T`` lies inside ``S``:

    v(S) = Σ_{T ⊆ S} conv(T)

That game is a sum of unanimity games, one per observed channel set ``T`` with weight
``conv(T)``, and the Shapley value of a unanimity game splits its weight equally among
its members. Hence the exact value, with no enumeration of the ``2^n`` coalitions:

    φ_c = Σ_{T ∋ c} conv(T) / |T|

i.e. each converting journey splits its conversions equally over its *distinct*
channels. It costs one pass over the touches, whatever the number of channels.

Ordered Shapley (same paper) keeps the position: within a journey the distinct channels
are ranked by their first touch, and ``φ_c^i`` is the credit ``c`` earns at rank ``i``;
summing over ranks gives ``φ_c``.

Sampled Shapley (:func:`sampled_shapley`) estimates Shapley values of any value function
(e.g. a model's predicted conversions for a set of channels) by averaging marginal
contributions over random permutations.

References
----------
Zhao, K., Mahboobi, S. H., Bagheri, S. R. (2018). Shapley value methods for attribution
modeling in online advertising. arXiv:1804.05327.
Castro, J., Gómez, D., Tejada, J. (2009). Polynomial calculation of the Shapley value
based on sampling. Computers & Operations Research 36(5).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mktlab.attribution.paths import Paths, as_paths
from mktlab.errors import ValidationError

_BITMASK_LIMIT = 62  # channels that fit one int64 bitmask per journey


def _distinct_pairs(paths: Paths) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(journey, channel, first touch index) for each distinct channel of each journey."""
    key = paths.path_index * paths.n_channels + paths.touches
    # a stable sort keeps the first touch of each (journey, channel) first
    order = np.argsort(key, kind="stable")
    sk = key[order]
    first = np.ones(len(sk), dtype=bool)
    first[1:] = sk[1:] != sk[:-1]
    keys = sk[first]
    return keys // paths.n_channels, keys % paths.n_channels, order[first]


def channel_sets(paths: Paths) -> tuple[np.ndarray, np.ndarray]:
    """Per journey, the bitmask of its channel set and the set's size (≤ 62 channels)."""
    if paths.n_channels > _BITMASK_LIMIT:
        raise ValidationError(
            f"channel_sets: bitmasks hold at most {_BITMASK_LIMIT} channels, got {paths.n_channels}"
        )
    bits = np.left_shift(np.int64(1), paths.touches.astype(np.int64))
    masks = np.bitwise_or.reduceat(bits, paths.offsets[:-1])
    # popcount of int64 without Python loops: count bits channel by channel
    size = np.zeros(paths.n_paths, dtype=np.int64)
    for c in range(paths.n_channels):
        size += (masks >> c) & 1
    return masks, size


class ShapleyAttribution:
    """Simplified Shapley attribution (Zhao et al. 2018), exact in closed form.

    Parameters
    ----------
    ordered : bool
        Also compute the ordered Shapley table (credit by rank of first touch).

    Attributes
    ----------
    channels_ : list of str
    shapley_values_ : Series
        ``φ_c`` in conversions.
    attribution_ : DataFrame
        Per channel ``conversions`` and ``value`` (value: the same split of the journeys'
        value); each column sums to the total.
    coalitions_ : DataFrame
        The observed channel sets: ``channels`` (tuple), ``size``, ``journeys``,
        ``conversions``, ``value``, ``nulls`` — the table the values come from.
    ordered_ : DataFrame or None
        Channels × rank (1 = first distinct channel touched): ordered Shapley credits.
    """

    def __init__(self, ordered: bool = False):
        self.ordered = ordered

    def fit(self, paths: Any, **kwargs: Any) -> ShapleyAttribution:
        """Compute the exact simplified Shapley values of ``paths``."""
        paths = as_paths(paths, **kwargs)
        paths.require_conversions("shapley")
        k = paths.n_channels
        index = pd.Index(paths.channels, name="channel")
        if k <= _BITMASK_LIMIT and not self.ordered:
            conv, val, coal = self._by_bitmask(paths)
        else:
            conv, val, coal = self._by_pairs(paths)
        self.channels_ = list(paths.channels)
        self.shapley_values_ = pd.Series(conv, index=index, name="shapley")
        self.attribution_ = pd.DataFrame({"conversions": conv, "value": val}, index=index)
        self.coalitions_ = coal
        return self

    def _by_bitmask(self, paths: Paths):
        masks, size = channel_sets(paths)
        # collapse journeys to their distinct channel sets first: far fewer rows
        umask, inv = np.unique(masks, return_inverse=True)
        m = len(umask)
        conv_s = np.bincount(inv, weights=paths.conversions, minlength=m)
        val_s = np.bincount(inv, weights=paths.value, minlength=m)
        null_s = np.bincount(inv, weights=paths.nulls, minlength=m)
        jrn_s = np.bincount(inv, minlength=m)
        size_s = np.zeros(m, dtype=np.int64)
        size_s[inv] = size
        k = paths.n_channels
        member = ((umask[:, None] >> np.arange(k, dtype=np.int64)) & 1).astype(bool)
        conv = (member * (conv_s / size_s)[:, None]).sum(axis=0)
        val = (member * (val_s / size_s)[:, None]).sum(axis=0)
        names = np.asarray(paths.channels, dtype=object)
        coal = pd.DataFrame(
            {
                "channels": [tuple(names[row]) for row in member],
                "size": size_s,
                "journeys": jrn_s,
                "conversions": conv_s,
                "value": val_s,
                "nulls": null_s,
            }
        )
        return conv, val, coal

    def _by_pairs(self, paths: Paths):
        # general route (any number of channels): distinct (journey, channel) pairs
        jid, ch, first_idx = _distinct_pairs(paths)
        size = np.bincount(jid, minlength=paths.n_paths)
        k = paths.n_channels
        share = 1.0 / size[jid]
        conv = np.bincount(ch, weights=share * paths.conversions[jid], minlength=k)
        val = np.bincount(ch, weights=share * paths.value[jid], minlength=k)
        # the coalition table: journeys keyed by their sorted distinct channels
        names = np.asarray(paths.channels, dtype=object)
        starts = np.zeros(paths.n_paths + 1, dtype=np.int64)
        np.cumsum(size, out=starts[1:])
        import pyarrow as pa
        import pyarrow.compute as pc

        # key each journey by its sorted distinct channel names, joined in Arrow
        tokens = (
            pa.array(names[ch].tolist(), type=pa.string()) if len(ch) else pa.array([], pa.string())
        )
        lists = pa.ListArray.from_arrays(pa.array(starts.astype(np.int32)), tokens)
        set_keys = pc.binary_join(lists, "\x1f").to_numpy(zero_copy_only=False)
        coal = (
            pd.DataFrame(
                {
                    "key": set_keys,
                    "size": size.astype(np.int64),
                    "journeys": np.ones(paths.n_paths, dtype=np.int64),
                    "conversions": paths.conversions,
                    "value": paths.value,
                    "nulls": paths.nulls,
                }
            )
            .groupby("key", sort=False)
            .agg(
                size=("size", "first"),
                journeys=("journeys", "sum"),
                conversions=("conversions", "sum"),
                value=("value", "sum"),
                nulls=("nulls", "sum"),
            )
        )
        coal.insert(0, "channels", [tuple(key.split("\x1f")) for key in coal.index])
        coal = coal.reset_index(drop=True)
        if self.ordered:
            # rank of each distinct channel by its first touch inside the journey
            order = np.lexsort((first_idx, jid))
            rank = np.empty(len(jid), dtype=np.int64)
            rank[order] = np.arange(len(jid)) - starts[jid[order]]
            n_rank = int(rank.max()) + 1
            table = np.zeros((k, n_rank))
            np.add.at(table, (ch, rank), share * paths.conversions[jid])
            self.ordered_ = pd.DataFrame(
                table,
                index=pd.Index(paths.channels, name="channel"),
                columns=pd.Index(np.arange(1, n_rank + 1), name="rank"),
            )
        else:
            self.ordered_ = None  # type: ignore[assignment]
        return conv, val, coal


def shapley_attribution(paths: Any, **kwargs: Any) -> pd.DataFrame:
    """Shortcut: ``ShapleyAttribution().fit(paths).attribution_``."""
    return ShapleyAttribution().fit(as_paths(paths, **kwargs)).attribution_


def ordered_shapley(paths: Any, **kwargs: Any) -> pd.DataFrame:
    """Ordered Shapley credits: channels × rank of first touch (rows sum to φ_c)."""
    return ShapleyAttribution(ordered=True).fit(as_paths(paths, **kwargs)).ordered_


def coalition_value(paths: Any, **kwargs: Any) -> Callable[[np.ndarray], np.ndarray]:
    """The simplified Shapley game of ``paths`` as a vectorised value function.

    Returns ``v(masks)``: ``masks`` is a boolean array (n_coalitions × n_channels); the
    result is, per coalition, the conversions of journeys whose channel set lies inside
    it. Useful as a reference game for :func:`sampled_shapley` and for brute force.
    """
    paths = as_paths(paths, **kwargs)
    coal = ShapleyAttribution().fit(paths).coalitions_
    index = {c: i for i, c in enumerate(paths.channels)}
    member = np.zeros((len(coal), paths.n_channels), dtype=bool)
    for row, chans in enumerate(coal["channels"]):
        member[row, [index[c] for c in chans]] = True
    conv = coal["conversions"].to_numpy(dtype=np.float64)

    def value(masks: np.ndarray) -> np.ndarray:
        masks = np.atleast_2d(np.asarray(masks, dtype=bool))
        # set T ⊆ S  <=>  no member of T is outside S
        outside = member.astype(np.int32) @ (~masks).T.astype(np.int32)
        return conv @ (outside == 0)

    value.channels = list(paths.channels)  # type: ignore[attr-defined]
    return value


def sampled_shapley(
    value_fn: Callable[..., Any],
    players: Sequence[str] | int,
    *,
    n_permutations: int = 200,
    vectorized: bool = True,
    antithetic: bool = True,
    random_state: int | np.random.Generator | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Monte Carlo permutation estimate of Shapley values for any value function.

    Parameters
    ----------
    value_fn : callable
        ``vectorized=True``: takes a boolean array (n_coalitions × n_players) and returns
        one value per row. ``vectorized=False``: takes a ``frozenset`` of player names and
        returns a float.
    players : sequence of str or int
        Player (channel) names, or their number.
    n_permutations : int
        Random orderings to average; the error shrinks like ``1/sqrt(n_permutations)``.
    antithetic : bool
        Pair every permutation with its reverse (lower variance, same cost per sample).
    random_state : int or Generator, optional

    Returns
    -------
    DataFrame
        Indexed by player: ``shapley`` (estimate) and ``std_error``. The estimates sum
        to ``v(all) − v(∅)`` exactly (every permutation's contributions telescope).
    """
    names = (
        [str(i) for i in range(players)] if isinstance(players, int) else list(map(str, players))
    )
    n = len(names)
    if n == 0:
        raise ValidationError("players: need at least one player")
    if not isinstance(n_permutations, int | np.integer) or n_permutations < 1:
        raise ValidationError(f"n_permutations: must be a positive integer, got {n_permutations!r}")
    rng = np.random.default_rng(random_state)
    perms = np.array([rng.permutation(n) for _ in range(n_permutations)])
    if antithetic:
        perms = np.concatenate([perms, perms[:, ::-1]])
    n_perm = len(perms)

    def evaluate(masks: np.ndarray) -> np.ndarray:
        if vectorized:
            out = np.asarray(value_fn(masks), dtype=np.float64).ravel()
        else:
            out = np.array([float(value_fn(frozenset(np.asarray(names)[row]))) for row in masks])
        if out.shape != (len(masks),):
            raise ValidationError(
                f"value_fn: returned {out.shape[0]} values for {len(masks)} coalitions"
            )
        if not np.isfinite(out).all():
            raise ValidationError("value_fn: returned a non-finite value")
        return out

    contrib = np.zeros((n_perm, n))
    chunk = max(1, 20_000 // (n + 1))
    it = range(0, n_perm, chunk)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="sampled shapley", unit="chunk")
    for a in it:
        block = perms[a : a + chunk]
        b = len(block)
        # masks along each permutation: prefix coalitions of size 0..n
        ranks = np.empty_like(block)
        ranks[np.arange(b)[:, None], block] = np.arange(n)
        masks = ranks[:, None, :] < np.arange(n + 1)[None, :, None]
        vals = evaluate(masks.reshape(-1, n)).reshape(b, n + 1)
        marg = np.diff(vals, axis=1)  # marginal of the player added at each step
        contrib[a : a + b][np.arange(b)[:, None], block] = marg
    if antithetic:
        # a permutation and its reverse are dependent: average them into one sample
        half = n_perm // 2
        samples = (contrib[:half] + contrib[half:]) / 2
    else:
        samples = contrib
    est = samples.mean(axis=0)
    se = (
        samples.std(axis=0, ddof=1) / np.sqrt(len(samples))
        if len(samples) > 1
        else np.full(n, np.nan)
    )
    return pd.DataFrame({"shapley": est, "std_error": se}, index=pd.Index(names, name="channel"))


def exact_shapley(
    value_fn: Callable[[np.ndarray], Any], players: Sequence[str] | int, *, max_players: int = 20
) -> pd.Series:
    """Exact Shapley values of any (vectorised) game by enumerating all ``2^n`` coalitions.

    ``φ_i = Σ_{S ∌ i} |S|! (n − |S| − 1)! / n! · (v(S ∪ {i}) − v(S))``. Cost grows as
    ``n · 2^n``, hence ``max_players``; use :func:`sampled_shapley` beyond it.
    """
    from math import factorial

    names = (
        [str(i) for i in range(players)] if isinstance(players, int) else list(map(str, players))
    )
    n = len(names)
    if n == 0:
        raise ValidationError("players: need at least one player")
    if n > max_players:
        raise ValidationError(
            f"players: {n} players means 2^{n} coalitions; exact enumeration stops at "
            f"{max_players} (use sampled_shapley)"
        )
    ids = np.arange(2**n, dtype=np.int64)
    masks = ((ids[:, None] >> np.arange(n)) & 1).astype(bool)
    v = np.asarray(value_fn(masks), dtype=np.float64).ravel()
    if v.shape != (2**n,) or not np.isfinite(v).all():
        raise ValidationError("value_fn: must return one finite value per coalition")
    size = masks.sum(axis=1)
    weight = np.array([factorial(s) * factorial(n - s - 1) / factorial(n) for s in range(n)])
    phi = np.zeros(n)
    for i in range(n):
        without = ~masks[:, i]
        s_ids = ids[without]
        phi[i] = (weight[size[without]] * (v[s_ids | (1 << i)] - v[s_ids])).sum()
    return pd.Series(phi, index=pd.Index(names, name="channel"), name="shapley")


def channel_indicators(paths: Any, **kwargs: Any) -> np.ndarray:
    """Journeys × channels 0/1 matrix: which channels each journey touched."""
    paths = as_paths(paths, **kwargs)
    k = paths.n_channels
    key = np.unique(paths.path_index * k + paths.touches)
    X = np.zeros((paths.n_paths, k))
    X[key // k, key % k] = 1.0
    return X


def model_coalition_value(
    paths: Any, *, C: float = 10.0, random_state: int | None = 0, **kwargs: Any
) -> Callable[[np.ndarray], np.ndarray]:
    """A model-based game for :func:`sampled_shapley`: expected conversions per coalition.

    Fits a logistic regression of "converted" on the channels each journey touched, then
    values a coalition ``S`` as the expected conversions if every journey kept only its
    channels in ``S``: ``v(S) = Σ_j P̂(convert | x_j ∧ S)``. Its Shapley values estimate
    *incremental* conversions per channel. Journeys are grouped by channel set, so one
    evaluation costs (distinct sets × coalitions), not journeys.

    The returned function has ``.channels`` and ``.model`` attributes.
    """
    from sklearn.linear_model import LogisticRegression

    paths = as_paths(paths, **kwargs)
    X = channel_indicators(paths)
    # each path stands for conversions + nulls journeys: weight the two outcomes
    conv, nulls = paths.conversions, paths.nulls
    Xw = np.concatenate([X[conv > 0], X[nulls > 0]])
    yw = np.concatenate([np.ones(int((conv > 0).sum())), np.zeros(int((nulls > 0).sum()))])
    sw = np.concatenate([conv[conv > 0], nulls[nulls > 0]])
    if len(np.unique(yw)) < 2:
        raise ValidationError(
            "model_coalition_value: needs both converting and non-converting journeys"
        )
    clf = LogisticRegression(C=C, max_iter=1000, random_state=random_state).fit(
        Xw, yw, sample_weight=sw
    )
    sets, inv = np.unique(X, axis=0, return_inverse=True)
    weight = np.bincount(inv.ravel(), weights=conv + nulls, minlength=len(sets))
    w, b = clf.coef_[0], float(clf.intercept_[0])

    def value(masks: np.ndarray) -> np.ndarray:
        masks = np.atleast_2d(np.asarray(masks, dtype=np.float64))
        logits = b + (sets * w) @ masks.T
        return weight @ (1.0 / (1.0 + np.exp(-logits)))

    value.channels = list(paths.channels)  # type: ignore[attr-defined]
    value.model = clf  # type: ignore[attr-defined]
    return value
