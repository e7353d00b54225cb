"""Markov-chain attribution: removal effects of an absorbing chain, solved exactly.

Journeys become walks ``start → c1 → … → ck → conversion | null``. Counting the walks
gives an absorbing Markov chain; the probability of reaching ``conversion`` from
``start`` solves the linear system ``(I − Q) x = r`` (``Q`` transient-to-transient
transitions, ``r`` transient-to-conversion). Removing channel ``c`` sends every walk that
reaches a state containing ``c`` to ``null``, which is the same system with those states
deleted. Then

    RE_c = 1 − P(conversion | c removed) / P(conversion)
    credit_c = RE_c / Σ_d RE_d × total conversions   (and × total value)

Higher order (``order=k``): a state is the last ``k`` channels seen (shorter at the start
of a journey); removing ``c`` deletes every state that contains it.

References
----------
Anderl, E., Becker, I., von Wangenheim, F., Schumann, J. H. (2016). Mapping the customer
journey: Lessons learned from graph-based online attribution modeling. IJRM 33(3).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.linalg import spsolve

from mktlab.attribution.paths import as_paths
from mktlab.errors import ValidationError

START, CONVERSION, NULL = "start", "conversion", "null"
_DENSE_LIMIT = 400  # states; beyond this a sparse LU beats a dense solve


class MarkovAttribution:
    """Markov-chain (removal effect) attribution of order ``order``.

    Parameters
    ----------
    order : int
        Memory of the chain: 1 = the next touch depends on the current channel only.
    sep : str
        Separator used to name higher-order states (``"a > b"``).

    Attributes
    ----------
    channels_ : list of str
    states_ : list of str
        Transient states, ``start`` first, then the observed channel states.
    transitions_ : DataFrame
        Long table ``from, to, count, probability`` of observed transitions.
    conversion_probability_ : float
        ``P(conversion | start)``.
    removal_effects_ : Series
        ``RE_c`` per channel (0 for a channel never touched).
    attribution_ : DataFrame
        Per channel: ``removal_effect``, ``conversions``, ``value``.
    """

    def __init__(self, order: int = 1, sep: str = " > "):
        self.order = order
        self.sep = sep

    def fit(self, paths: Any, **kwargs: Any) -> MarkovAttribution:
        """Count transitions of ``paths`` and solve for the removal effects.

        ``paths`` is a :class:`Paths` or anything :func:`as_paths` takes (``kwargs`` go
        there). Raises :class:`~mktlab.errors.DataError` when nothing converts.
        """
        if not isinstance(self.order, int | np.integer) or self.order < 1:
            raise ValidationError(f"order: must be an integer >= 1, got {self.order!r}")
        paths = as_paths(paths, **kwargs)
        paths.require_conversions("markov")
        k = int(self.order)
        n = paths.n_channels
        if (n + 1) ** k >= 2**62:
            raise ValidationError(
                f"order: {k} is too high for {n} channels (state codes overflow int64)"
            )
        # -- encode each touch's state (last k channels, 0 = before the journey started)
        pos = paths.position
        digits = paths.touches.astype(np.int64) + 1
        code = digits.copy()
        base = np.int64(n + 1)
        for m in range(1, k):
            prev = np.zeros_like(digits)
            ok = pos >= m
            prev[ok] = digits[np.flatnonzero(ok) - m]
            code += prev * base**m
        ucodes, sid = np.unique(code, return_inverse=True)
        n_states = len(ucodes) + 1  # + start (id 0)
        sid = sid.astype(np.int64) + 1
        conv_id, null_id = n_states, n_states + 1
        # -- transition counts, weighted by how many walks the path stands for
        w_path = paths.conversions + paths.nulls
        w_touch = w_path[paths.path_index]
        starts = paths.offsets[:-1]
        lasts = paths.offsets[1:] - 1
        not_last = np.ones(len(sid), dtype=bool)
        not_last[lasts] = False
        src = np.concatenate(
            [np.zeros(paths.n_paths, np.int64), sid[not_last], sid[lasts], sid[lasts]]
        )
        dst = np.concatenate(
            [
                sid[starts],
                sid[np.flatnonzero(not_last) + 1],
                np.full(paths.n_paths, conv_id, np.int64),
                np.full(paths.n_paths, null_id, np.int64),
            ]
        )
        wts = np.concatenate([w_path, w_touch[not_last], paths.conversions, paths.nulls])
        nz = wts > 0
        counts = sp.coo_matrix(
            (wts[nz], (src[nz], dst[nz])), shape=(n_states, n_states + 2)
        ).tocsr()
        counts.sum_duplicates()
        out = np.asarray(counts.sum(axis=1)).ravel()
        # a state only reached by zero-weight paths has no outflow: treat it as a dead end
        inv = np.divide(1.0, out, out=np.zeros_like(out), where=out > 0)
        probs = sp.diags(inv) @ counts
        Q = probs[:, :n_states].tocsc()
        r = np.asarray(probs[:, conv_id].todense()).ravel()
        A = (sp.identity(n_states, format="csc") - Q).tocsc()
        # -- which channels each state contains
        contains = np.zeros((n_states, n), dtype=bool)
        rem = ucodes.copy()
        for _ in range(k):
            d = rem % base
            has = d > 0
            contains[np.flatnonzero(has) + 1, d[has] - 1] = True
            rem //= base
        p_conv = self._solve(A, r, np.ones(n_states, dtype=bool))
        touched = contains.any(axis=0)
        re = np.zeros(n)
        for c in np.flatnonzero(touched):
            keep = ~contains[:, c]
            p_c = self._solve(A, r, keep)
            re[c] = 1.0 - p_c / p_conv
        # tiny negative values are round-off: removing a state can only lose walks
        re = np.clip(re, 0.0, None)
        share = re / re.sum()
        # -- names and tables
        names = [START]
        ibase = int(base)
        for uc in ucodes:
            parts = []
            v = int(uc)
            for _ in range(k):
                digit = v % ibase
                v //= ibase
                if digit > 0:
                    parts.append(paths.channels[digit - 1])
            names.append(self.sep.join(reversed(parts)))
        all_names = [*names, CONVERSION, NULL]
        coo = counts.tocoo()
        self.channels_ = list(paths.channels)
        self.states_ = names
        self.transitions_ = pd.DataFrame(
            {
                "from": np.asarray(all_names, dtype=object)[coo.row],
                "to": np.asarray(all_names, dtype=object)[coo.col],
                "count": coo.data,
                "probability": coo.data * inv[coo.row],
            }
        ).sort_values(["from", "to"], ignore_index=True)
        self._probs = probs
        self.conversion_probability_ = float(p_conv)
        self.removal_effects_ = pd.Series(
            re, index=pd.Index(self.channels_, name="channel"), name="removal_effect"
        )
        self.attribution_ = pd.DataFrame(
            {
                "removal_effect": re,
                "conversions": share * paths.total_conversions,
                "value": share * paths.total_value,
            },
            index=pd.Index(self.channels_, name="channel"),
        )
        return self

    @staticmethod
    def _solve(A: sp.csc_matrix, r: np.ndarray, keep: np.ndarray) -> float:
        idx = np.flatnonzero(keep)
        sub = A[idx][:, idx]
        if len(idx) <= _DENSE_LIMIT:
            x = np.linalg.solve(sub.toarray(), r[idx])
        else:
            x = spsolve(sub.tocsc(), r[idx])
        return float(x[0])  # start is state 0 and is always kept

    @property
    def transition_matrix_(self) -> pd.DataFrame:
        """Square transition-probability matrix (rows: from; absorbing rows included)."""
        if not hasattr(self, "_probs"):
            raise ValidationError("MarkovAttribution: call fit() first")
        n_states = len(self.states_)
        if n_states > 5_000:
            raise ValidationError(
                f"transition_matrix_: {n_states} states is too many for a dense matrix; "
                "use transitions_ (long format)"
            )
        dense = np.zeros((n_states + 2, n_states + 2))
        dense[:n_states] = self._probs.toarray()
        dense[n_states, n_states] = 1.0
        dense[n_states + 1, n_states + 1] = 1.0
        names = [*self.states_, CONVERSION, NULL]
        return pd.DataFrame(
            dense, index=pd.Index(names, name="from"), columns=pd.Index(names, name="to")
        )


def markov_attribution(paths: Any, order: int = 1, **kwargs: Any) -> pd.DataFrame:
    """Shortcut: ``MarkovAttribution(order).fit(paths).attribution_``."""
    return MarkovAttribution(order=order).fit(as_paths(paths, **kwargs)).attribution_
