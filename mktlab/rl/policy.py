"""A trained policy as a small numpy object: acts on arrays, predicts on DataFrames.

:class:`RLPolicy` holds the weights of the agent's network (copied out of torch), the
observation columns it was trained on and the action names. It needs neither torch nor
stable-baselines3 at serving time, pickles small, and is what gets registered in MLflow
as ``rl_policy@champion`` (through :func:`mktlab.tracking.log_python_predictor`):
``predict(DataFrame of user states) -> DataFrame(action, action_id)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mktlab.errors import SchemaError, ValidationError
from mktlab.rl.baselines import BaselinePolicy
from mktlab.rl.dynamics import ACTIONS, OBS_COLUMNS, OBS_VERSION

_ACT = {
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0.0),
    "identity": lambda x: x,
}


@dataclass
class RLPolicy(BaselinePolicy):
    """A feed-forward policy: ``argmax(layers(obs))`` over :data:`ACTIONS`.

    Parameters
    ----------
    weights : list of (W, b, activation)
        Dense layers applied in order; ``W`` is ``(in, out)``; the last layer's outputs
        are action logits (PPO) or Q-values (DQN).
    input_columns : tuple of str
        Observation columns, in order (must equal the environment's).
    action_names : tuple of str
    obs_version : str
        Version tag of the observation layout it was trained on.
    name : str
    meta : dict
        Training facts shipped with the policy (algorithm, timesteps, env config).
    """

    weights: list[tuple[np.ndarray, np.ndarray, str]] = field(repr=False)
    input_columns: tuple[str, ...] = OBS_COLUMNS
    action_names: tuple[str, ...] = ACTIONS
    obs_version: str = OBS_VERSION
    name: str = "ppo"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.weights:
            raise ValidationError("weights: a policy needs at least one layer")
        self.input_columns = tuple(self.input_columns)
        self.action_names = tuple(self.action_names)
        w0 = np.asarray(self.weights[0][0])
        if w0.shape[0] != len(self.input_columns):
            raise ValidationError(
                f"weights: first layer takes {w0.shape[0]} inputs but input_columns has "
                f"{len(self.input_columns)}"
            )
        if np.asarray(self.weights[-1][0]).shape[1] != len(self.action_names):
            raise ValidationError("weights: last layer must output one value per action")
        for _, _, act in self.weights:
            if act not in _ACT:
                raise ValidationError(f"weights: unknown activation {act!r}; use {list(_ACT)}")

    # ------------------------------------------------------------------ compatibility
    def check_compatible(
        self,
        columns: Sequence[str] = OBS_COLUMNS,
        actions: Sequence[str] = ACTIONS,
        obs_version: str = OBS_VERSION,
    ) -> None:
        """Raise :class:`ValidationError` if this policy was trained on another space."""
        if tuple(columns) != self.input_columns or obs_version != self.obs_version:
            raise ValidationError(
                "policy was trained on a different observation space: "
                f"{self.obs_version} {list(self.input_columns)}; this environment has "
                f"{obs_version} {list(columns)}"
            )
        if tuple(actions) != self.action_names:
            raise ValidationError(
                f"policy was trained on actions {list(self.action_names)}, environment has "
                f"{list(actions)}"
            )

    # ------------------------------------------------------------------ acting
    def scores(self, obs: np.ndarray) -> np.ndarray:
        """Logits / Q-values ``(n, n_actions)``."""
        x = np.asarray(obs, dtype=np.float64)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != len(self.input_columns):
            raise ValidationError(
                f"obs must have shape (n, {len(self.input_columns)}) with columns "
                f"{list(self.input_columns)}, got {np.asarray(obs).shape}"
            )
        if not np.isfinite(x).all():
            raise ValidationError("obs has non-finite values")
        for W, b, act in self.weights:
            x = _ACT[act](x @ W + b)
        return x

    def act(self, obs: np.ndarray) -> np.ndarray:
        return np.argmax(self.scores(obs), axis=1).astype(np.int64)

    def predict(self, states: pd.DataFrame) -> pd.DataFrame:
        """Actions for a batch of user states (one row per user).

        Parameters
        ----------
        states : DataFrame
            Must hold every column of ``input_columns`` (extra columns are ignored),
            numeric and finite.

        Returns
        -------
        DataFrame
            ``action`` (name) and ``action_id``, one row per input row.
        """
        if not isinstance(states, pd.DataFrame):
            states = pd.DataFrame(states)
        missing = [c for c in self.input_columns if c not in states.columns]
        if missing:
            extra = [c for c in states.columns if c not in self.input_columns]
            raise SchemaError(
                f"user states: missing column(s) {missing}"
                + (f" (unexpected: {extra[:10]})" if extra else "")
                + f"; this policy was trained on {list(self.input_columns)}"
            )
        X = states[list(self.input_columns)]
        bad = [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]
        if bad:
            raise SchemaError(f"user states: column(s) {bad} must be numeric")
        arr = X.to_numpy(dtype=np.float64)
        if not np.isfinite(arr).all():
            rows = np.flatnonzero(~np.isfinite(arr).all(axis=1))[:5].tolist()
            raise ValidationError(f"user states: non-finite values in rows {rows}")
        ids = self.act(arr)
        return pd.DataFrame(
            {"action": np.asarray(self.action_names, dtype=object)[ids], "action_id": ids},
            index=states.index,
        )

    # ------------------------------------------------------------------ from SB3
    @classmethod
    def from_sb3(cls, model: Any, name: str | None = None, meta: dict | None = None) -> RLPolicy:
        """Copy the greedy network of a stable-baselines3 PPO or DQN model into numpy.

        PPO: ``mlp_extractor.policy_net`` then ``action_net`` (argmax of logits =
        the deterministic action). DQN: ``q_net.q_net`` (argmax of Q-values).
        """
        import torch.nn as nn

        pol = model.policy
        if hasattr(pol, "mlp_extractor") and hasattr(pol, "action_net"):
            modules = [*pol.mlp_extractor.policy_net, pol.action_net]
            algo = "ppo"
        elif hasattr(pol, "q_net"):
            modules = list(pol.q_net.q_net)
            algo = "dqn"
        else:
            raise ValidationError(f"unsupported SB3 policy {type(pol).__name__}")
        owner = pol if algo == "ppo" else pol.q_net
        extractor = type(getattr(owner, "features_extractor", None)).__name__
        if extractor != "FlattenExtractor":
            raise ValidationError(
                f"only flat observation policies (FlattenExtractor) are supported, got {extractor}"
            )
        layers: list[tuple[np.ndarray, np.ndarray, str]] = []
        for m in modules:
            if isinstance(m, nn.Linear):
                W = m.weight.detach().cpu().numpy().T.astype(np.float64)
                b = m.bias.detach().cpu().numpy().astype(np.float64)
                layers.append((W, b, "identity"))
            elif isinstance(m, nn.Tanh | nn.ReLU):
                if not layers:
                    raise ValidationError("activation before the first linear layer")
                W, b, _ = layers[-1]
                layers[-1] = (W, b, "tanh" if isinstance(m, nn.Tanh) else "relu")
            else:
                raise ValidationError(f"unsupported layer {type(m).__name__} in the SB3 network")
        return cls(layers, name=name or algo, meta={"algorithm": algo, **(meta or {})})
