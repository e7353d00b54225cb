"""Gymnasium and stable-baselines3 faces of the marketing simulator.

* :class:`MarketingEnv` — one user per episode (``horizon`` weeks), the gymnasium API,
  registered as ``mktlab/Marketing-v0`` and checked by ``gymnasium.utils.env_checker``.
* :class:`MarketingVecEnv` — an SB3 ``VecEnv`` that steps ``n_users`` users in one numpy
  call, so PPO/DQN see many users per step. All users start and end their episode
  together; at the horizon every user is done and a new population is drawn.

Both wrap :class:`~mktlab.rl.dynamics.MarketingSimulator`, so their dynamics are the
same code.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from mktlab.errors import ValidationError
from mktlab.rl.dynamics import (
    ACTIONS,
    OBS_HIGH,
    OBS_LOW,
    SEGMENTS,
    EnvConfig,
    MarketingSimulator,
    UserPrior,
)


def observation_space() -> spaces.Box:
    """The observation space shared by the single-user and vectorised environments."""
    return spaces.Box(low=OBS_LOW, high=OBS_HIGH, dtype=np.float32)


def _check_action(action: Any) -> int:
    arr = np.asarray(action)
    if arr.size != 1 or arr.dtype.kind not in "iu":
        raise ValidationError(
            f"action must be one integer action id in 0..{len(ACTIONS) - 1} {ACTIONS}, got {action!r}"
        )
    a = int(arr.reshape(-1)[0])
    if not 0 <= a < len(ACTIONS):
        raise ValidationError(f"action must be in 0..{len(ACTIONS) - 1} {ACTIONS}, got {a}")
    return a


class MarketingEnv(gym.Env):
    """One user over ``horizon`` weeks; each step is a week and one action.

    Parameters
    ----------
    config : EnvConfig, optional
        Dynamics, costs, horizon and budget (default :class:`EnvConfig`).
    prior : UserPrior, optional
        Users to draw from (default: the parametric world-like prior).
    **overrides
        Fields of :class:`EnvConfig` to override (e.g. ``budget_per_user=50``), so
        ``gym.make("mktlab/Marketing-v0", horizon=12)`` works.

    Notes
    -----
    Observation: the 14 columns of :data:`~mktlab.rl.dynamics.OBS_COLUMNS`. Action:
    ``Discrete(5)`` over :data:`~mktlab.rl.dynamics.ACTIONS`. Reward: margin of this
    week's purchase minus coupon redeemed minus channel cost (yuan). ``terminated``
    at the horizon (time left is part of the state). ``info`` holds the action actually
    sent (``blocked`` when the budget could not cover it), ``spend``, ``bought``,
    ``budget_left`` and the hidden ``segment`` for evaluation.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(
        self,
        config: EnvConfig | None = None,
        prior: UserPrior | None = None,
        **overrides: Any,
    ):
        super().__init__()
        if config is None:
            config = EnvConfig(**overrides)
        elif overrides:
            config = EnvConfig(**(config.to_dict() | overrides))
        self.config = config
        self.sim = MarketingSimulator(config, 1, prior=prior)
        self.observation_space = observation_space()
        self.action_space = spaces.Discrete(len(ACTIONS))
        self._started = False

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        # the simulator's stream comes from the env's seeded generator: reproducible
        sub = int(self.np_random.integers(0, 2**63 - 1))
        obs = self.sim.reset(sub)
        self._started = True
        return obs[0], {"segment": SEGMENTS[int(self.sim.segment[0])]}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self._started:
            raise ValidationError("call reset() before step()")
        a = _check_action(action)
        obs, reward, info = self.sim.step(np.array([a], dtype=np.int64))
        terminated = self.sim.done
        if terminated:
            self._started = False
        out = {
            "action": ACTIONS[int(info["action"][0])],
            "blocked": bool(info["blocked"][0]),
            "bought": bool(info["bought"][0]),
            "spend": float(info["spend"][0]),
            "budget_left": float(self.sim.budget[0]),
            "segment": SEGMENTS[int(self.sim.segment[0])],
        }
        return obs[0], float(reward[0]), bool(terminated), False, out


class MarketingVecEnv(VecEnv):
    """``n_users`` users stepped together, as a stable-baselines3 ``VecEnv``.

    Parameters
    ----------
    n_users : int
        Users per population (the VecEnv's ``num_envs``).
    config : EnvConfig, optional
    prior : UserPrior, optional
    seed : int, optional
        Seed of the first population; each new population after the horizon takes the
        next seed, so a training run is reproducible.
    reward_scale : float
        Rewards are multiplied by this for the learner (yuan are large numbers);
        ``episode`` infos report unscaled returns.
    """

    def __init__(
        self,
        n_users: int = 1024,
        config: EnvConfig | None = None,
        prior: UserPrior | None = None,
        seed: int | None = 0,
        reward_scale: float = 0.05,
    ):
        self.sim = MarketingSimulator(config, n_users, prior=prior)
        self.config = self.sim.config
        self.render_mode = None  # read by VecEnv.__init__
        super().__init__(n_users, observation_space(), spaces.Discrete(len(ACTIONS)))
        self.reward_scale = float(reward_scale)
        self._next_seed = seed
        self._actions: np.ndarray | None = None
        self._returns = np.zeros(n_users)
        self.episode_returns: list[float] = []  # mean unscaled return per population

    def _new_population(self) -> np.ndarray:
        seed = self._next_seed
        if seed is not None:
            self._next_seed = seed + 1
        self._returns[:] = 0.0
        return self.sim.reset(seed)

    def reset(self) -> np.ndarray:
        if self._seeds and self._seeds[0] is not None:
            self._next_seed = int(self._seeds[0])
        self._reset_seeds()
        self._reset_options()
        return self._new_population()

    def step_async(self, actions: np.ndarray) -> None:
        a = np.asarray(actions).reshape(-1)
        if a.shape != (self.num_envs,):
            raise ValidationError(f"actions must have {self.num_envs} entries, got {a.shape}")
        self._actions = a.astype(np.int64)

    def step_wait(self):
        if self._actions is None:
            raise ValidationError("step_wait() without step_async()")
        obs, reward, _info = self.sim.step(self._actions)
        self._actions = None
        self._returns += reward
        n = self.num_envs
        if self.sim.done:
            ret = self._returns.copy()
            self.episode_returns.append(float(ret.mean()))
            h = self.config.horizon
            infos = [
                {"terminal_observation": obs[i], "episode": {"r": float(ret[i]), "l": h, "t": 0.0}}
                for i in range(n)
            ]
            obs = self._new_population()
            dones = np.ones(n, dtype=bool)
        else:
            infos = [{} for _ in range(n)]
            dones = np.zeros(n, dtype=bool)
        return obs, (reward * self.reward_scale).astype(np.float32), dones, infos

    def close(self) -> None:
        pass

    def _indices(self, indices) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        if isinstance(indices, int):
            return [indices]
        return list(indices)

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        value = getattr(self, attr_name)
        return [value for _ in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        setattr(self, attr_name, value)

    def env_method(
        self, method_name: str, *method_args, indices=None, **method_kwargs
    ) -> list[Any]:
        out = getattr(self, method_name)(*method_args, **method_kwargs)
        return [out for _ in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False for _ in self._indices(indices)]
