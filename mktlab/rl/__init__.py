"""Reinforcement-learning marketing policy: environment, agents, honest baselines.

``MarketingEnv`` (gymnasium, registered as ``mktlab/Marketing-v0``) simulates one user's
weeks; ``MarketingVecEnv`` steps a whole population for stable-baselines3.
``train_agent`` trains PPO/DQN, ``standard_baselines`` builds the policies a team would
otherwise use, ``evaluate_policies`` scores them all on the same held-out seeds, and
``log_policy`` registers the agent as ``rl_policy@champion`` (a pyfunc from a DataFrame
of user states to actions).
"""

from __future__ import annotations

import importlib
from typing import Any

import gymnasium as gym

# Heavy modules (torch, stable-baselines3, scipy, sklearn) load on first use, so
# `import mktlab.rl` (and `mktlab --help`) stays fast.
_LAZY = {
    "AlwaysAction": "mktlab.rl.baselines",
    "BaselinePolicy": "mktlab.rl.baselines",
    "MyopicUpliftGreedy": "mktlab.rl.baselines",
    "NeverTreat": "mktlab.rl.baselines",
    "RandomPolicy": "mktlab.rl.baselines",
    "RFMRule": "mktlab.rl.baselines",
    "standard_baselines": "mktlab.rl.baselines",
    "ACTIONS": "mktlab.rl.dynamics",
    "OBS_COLUMNS": "mktlab.rl.dynamics",
    "SEGMENTS": "mktlab.rl.dynamics",
    "EnvConfig": "mktlab.rl.dynamics",
    "MarketingSimulator": "mktlab.rl.dynamics",
    "UserPrior": "mktlab.rl.dynamics",
    "MarketingEnv": "mktlab.rl.env",
    "MarketingVecEnv": "mktlab.rl.env",
    "Evaluation": "mktlab.rl.evaluate",
    "evaluate_policies": "mktlab.rl.evaluate",
    "held_out_seeds": "mktlab.rl.evaluate",
    "rollout": "mktlab.rl.evaluate",
    "RLPolicy": "mktlab.rl.policy",
    "MODEL_NAME": "mktlab.rl.train",
    "TrainConfig": "mktlab.rl.train",
    "TrainResult": "mktlab.rl.train",
    "load_policy": "mktlab.rl.train",
    "log_policy": "mktlab.rl.train",
    "plot_curve": "mktlab.rl.train",
    "ope_on_world": "mktlab.rl.ope",
    "train_agent": "mktlab.rl.train",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


ENV_ID = "mktlab/Marketing-v0"

if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point="mktlab.rl.env:MarketingEnv")

__all__ = [
    "ACTIONS",
    "ENV_ID",
    "MODEL_NAME",
    "OBS_COLUMNS",
    "SEGMENTS",
    "AlwaysAction",
    "BaselinePolicy",
    "EnvConfig",
    "Evaluation",
    "MarketingEnv",
    "MarketingSimulator",
    "MarketingVecEnv",
    "MyopicUpliftGreedy",
    "NeverTreat",
    "RFMRule",
    "RLPolicy",
    "RandomPolicy",
    "TrainConfig",
    "TrainResult",
    "UserPrior",
    "evaluate_policies",
    "held_out_seeds",
    "load_policy",
    "log_policy",
    "ope_on_world",
    "plot_curve",
    "rollout",
    "standard_baselines",
    "train_agent",
]
