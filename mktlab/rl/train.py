"""Train PPO / DQN on the vectorised marketing environment; log and register the policy.

Training runs on CPU with one torch thread (the machine is shared); the agent sees
``n_users`` users per environment step through :class:`~mktlab.rl.env.MarketingVecEnv`.
Training seeds are small integers; evaluation seeds start at
:data:`~mktlab.rl.evaluate.HELD_OUT_SEED0`, so the agent is scored on users it never saw.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mktlab.errors import ValidationError
from mktlab.rl.dynamics import ACTIONS, OBS_COLUMNS, OBS_VERSION, EnvConfig, UserPrior
from mktlab.rl.env import MarketingVecEnv
from mktlab.rl.policy import RLPolicy

MODEL_NAME = "rl_policy"
EXPERIMENT = "rl"
ALGORITHMS = ("ppo", "dqn")


@dataclass
class TrainConfig:
    """How to train.

    Parameters
    ----------
    algorithm : {"ppo", "dqn"}
    total_timesteps : int
        User-weeks of experience.
    n_users : int
        Users stepped together (the VecEnv's width).
    time_budget_s : float, optional
        Stop early once training has run this long (checked every step).
    seed : int
    net_arch : tuple of int
    learning_rate, gamma, ent_coef : float
    lr_decay : bool
        Decay the learning rate linearly to 10% of ``learning_rate`` over
        ``total_timesteps`` (a high rate learns fast early; the decay keeps it stable).
    n_epochs, batch_size : int
    torch_threads : int
    """

    algorithm: str = "ppo"
    total_timesteps: int = 2_000_000
    n_users: int = 512
    time_budget_s: float | None = None
    seed: int = 0
    net_arch: tuple[int, ...] = (64, 64)
    learning_rate: float = 1e-3
    lr_decay: bool = True
    gamma: float = 0.99
    ent_coef: float = 0.01
    n_epochs: int = 5
    batch_size: int = 3328
    torch_threads: int = 1

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValidationError(f"algorithm must be one of {ALGORITHMS}, got {self.algorithm!r}")
        if int(self.total_timesteps) < 1:
            raise ValidationError(f"total_timesteps must be >= 1, got {self.total_timesteps}")
        if int(self.n_users) < 1:
            raise ValidationError(f"n_users must be >= 1, got {self.n_users}")
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise ValidationError(f"time_budget_s must be > 0, got {self.time_budget_s}")
        if not self.net_arch or any(int(h) < 1 for h in self.net_arch):
            raise ValidationError(f"net_arch must be positive layer widths, got {self.net_arch}")
        self.net_arch = tuple(int(h) for h in self.net_arch)


@dataclass
class TrainResult:
    """A trained agent: the numpy ``policy``, the reward ``curve`` and the wall time."""

    policy: RLPolicy
    curve: pd.DataFrame
    wall_s: float
    timesteps: int
    train_config: TrainConfig
    env_config: EnvConfig
    model: Any = field(default=None, repr=False)


def _callback(env: MarketingVecEnv, budget: float | None, t0: float, progress: bool):
    from stable_baselines3.common.callbacks import BaseCallback

    class _Curve(BaseCallback):
        # records the mean return of every finished population; stops at the time budget
        def __init__(self) -> None:
            super().__init__()
            self.rows: list[dict[str, float]] = []
            self._seen = 0
            self._bar = None

        def _on_training_start(self) -> None:
            if progress:
                from tqdm.auto import tqdm

                self._bar = tqdm(total=self.locals["total_timesteps"], desc="train", unit="step")

        def _on_step(self) -> bool:
            new = env.episode_returns[self._seen :]
            for r in new:
                self.rows.append(
                    {
                        "timesteps": self.num_timesteps,
                        "return_per_user": r,
                        "wall_s": time.perf_counter() - t0,
                    }
                )
            self._seen += len(new)
            if self._bar is not None and self.num_timesteps - self._bar.n >= self._bar.total / 100:
                self._bar.update(self.num_timesteps - self._bar.n)
            return budget is None or time.perf_counter() - t0 < budget

        def _on_training_end(self) -> None:
            if self._bar is not None:
                self._bar.close()

    return _Curve()


def train_agent(
    train_config: TrainConfig | None = None,
    env_config: EnvConfig | None = None,
    prior: UserPrior | None = None,
    *,
    progress: bool = False,
) -> TrainResult:
    """Train PPO (or DQN) on :class:`~mktlab.rl.env.MarketingVecEnv`.

    Returns
    -------
    TrainResult
        The greedy policy as an :class:`~mktlab.rl.policy.RLPolicy`, the learning curve
        (mean return per user of each population seen in training), wall time.
    """
    import torch
    from stable_baselines3 import DQN, PPO

    tc = train_config or TrainConfig()
    ec = env_config or EnvConfig()
    torch.set_num_threads(tc.torch_threads)
    env = MarketingVecEnv(tc.n_users, ec, prior=prior, seed=tc.seed * 100_003)
    policy_kwargs = {"net_arch": list(tc.net_arch)}
    lr0 = float(tc.learning_rate)
    lr = (lambda progress: lr0 * (0.1 + 0.9 * progress)) if tc.lr_decay else lr0
    if tc.algorithm == "ppo":
        policy_kwargs["activation_fn"] = torch.nn.Tanh
        n_steps = 2 * ec.horizon  # two whole episodes of every user per rollout
        model = PPO(
            "MlpPolicy",
            env,
            n_steps=n_steps,
            batch_size=min(tc.batch_size, n_steps * tc.n_users),
            n_epochs=tc.n_epochs,
            learning_rate=lr,
            gamma=tc.gamma,
            gae_lambda=0.95,
            ent_coef=tc.ent_coef,
            clip_range=0.2,
            policy_kwargs=policy_kwargs,
            seed=tc.seed,
            device="cpu",
            verbose=0,
        )
    else:
        model = DQN(
            "MlpPolicy",
            env,
            learning_rate=tc.learning_rate,
            buffer_size=min(500_000, max(10_000, tc.total_timesteps)),
            learning_starts=min(20 * tc.n_users, tc.total_timesteps // 10),
            batch_size=min(tc.batch_size, 1024),
            gamma=tc.gamma,
            train_freq=1,
            gradient_steps=max(1, tc.n_users // 256),
            target_update_interval=20 * tc.n_users,  # transitions: every 20 env steps
            exploration_fraction=0.3,
            exploration_final_eps=0.02,
            policy_kwargs=policy_kwargs,
            seed=tc.seed,
            device="cpu",
            verbose=0,
        )
    t0 = time.perf_counter()
    cb = _callback(env, tc.time_budget_s, t0, progress)
    model.learn(total_timesteps=int(tc.total_timesteps), callback=cb, progress_bar=False)
    wall = time.perf_counter() - t0
    policy = RLPolicy.from_sb3(
        model,
        meta={
            "timesteps": int(model.num_timesteps),
            "wall_s": wall,
            "env_config": ec.to_dict(),
            "prior": getattr(prior, "source", "default"),
        },
    )
    curve = pd.DataFrame(cb.rows, columns=["timesteps", "return_per_user", "wall_s"])
    return TrainResult(policy, curve, wall, int(model.num_timesteps), tc, ec, model)


def plot_curve(curve: pd.DataFrame, baselines: dict[str, float] | None = None, ax=None):
    """Learning curve (return per user vs timesteps), with baseline levels as lines."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    if not curve.empty:
        smooth = curve["return_per_user"].rolling(5, min_periods=1).mean()
        ax.plot(curve["timesteps"], curve["return_per_user"], alpha=0.3, color="C0")
        ax.plot(curve["timesteps"], smooth, color="C0", label="agent (training populations)")
    for i, (name, level) in enumerate((baselines or {}).items()):
        ax.axhline(level, ls="--", color=f"C{i + 1}", label=name)
    ax.set_xlabel("user-weeks of experience")
    ax.set_ylabel("return per user (yuan)")
    ax.legend(fontsize=8)
    return ax


def log_policy(
    result: TrainResult,
    *,
    evaluation: Any = None,
    register: bool = True,
    alias: str | None = "champion",
    model_name: str = MODEL_NAME,
    experiment: str = EXPERIMENT,
    run_name: str | None = None,
) -> dict[str, Any]:
    """Log the run (params, reward curve, evaluation) and the policy to MLflow.

    The policy is logged as a pyfunc mapping a DataFrame of user states to actions and,
    with ``register``, registered as ``model_name`` with ``alias`` pointing at it.
    Returns ``{"run_id", "model_uri", "version"}``.
    """
    import matplotlib.pyplot as plt

    from mktlab import tracking

    tc, ec = result.train_config, result.env_config
    params = {f"train.{k}": v for k, v in tc.__dict__.items()}
    params |= {f"env.{k}": v for k, v in ec.to_dict().items()}
    with tracking.start_run(
        experiment, run_name or f"{tc.algorithm}-{result.timesteps}", params=params
    ) as run:
        for row in result.curve.itertuples():
            tracking.log_metrics(
                {"train_return_per_user": row.return_per_user}, step=int(row.timesteps)
            )
        tracking.log_metrics({"train_wall_s": result.wall_s, "train_timesteps": result.timesteps})
        fig, ax = plt.subplots(figsize=(7, 4))
        plot_curve(result.curve, ax=ax)
        tracking.log_figure(fig, "reward_curve.png")
        plt.close(fig)
        tracking.log_table(result.curve, "tables/reward_curve.json")
        if evaluation is not None:
            summ = evaluation.summary()
            tracking.log_table(summ, "tables/evaluation.json")
            tracking.log_table(evaluation.action_share, "tables/action_share.json")
            mine = summ[summ["policy"] == result.policy.name]
            if not mine.empty:
                tracking.log_metrics(
                    {"eval_return_per_user": float(mine["return_per_user"].iloc[0])}
                )
        info = tracking.log_python_predictor(
            result.policy,
            name="policy",
            metadata={
                "input_columns": list(OBS_COLUMNS),
                "action_names": list(ACTIONS),
                "obs_version": OBS_VERSION,
                "algorithm": tc.algorithm,
            },
        )
        run_id = run.info.run_id
    version = None
    if register:
        version = tracking.register_model(info.model_uri, model_name, alias=alias or None)
    return {"run_id": run_id, "model_uri": info.model_uri, "version": version}


def load_policy(name: str = MODEL_NAME, alias: str = "champion", *, check: bool = True) -> Any:
    """Load ``name@alias`` from the registry as a pyfunc, checking its observation space.

    Raises :class:`ValidationError` if the registered policy was trained on another
    observation space than this version's environment.
    """
    from mktlab import tracking

    model = tracking.load_pyfunc(name, alias)
    if check:
        check_pyfunc_compatible(model)
    return model


def check_pyfunc_compatible(model: Any) -> None:
    """Raise :class:`ValidationError` unless a loaded pyfunc policy matches this env."""
    meta = getattr(getattr(model, "metadata", None), "metadata", None) or {}
    cols = meta.get("input_columns")
    if cols is None:
        raise ValidationError("the loaded model carries no input_columns: not an rl_policy")
    if list(cols) != list(OBS_COLUMNS) or meta.get("obs_version") != OBS_VERSION:
        raise ValidationError(
            "the registered policy was trained on a different observation space: "
            f"{meta.get('obs_version')} {list(cols)}; this environment has {OBS_VERSION} "
            f"{list(OBS_COLUMNS)}"
        )
    if list(meta.get("action_names", ACTIONS)) != list(ACTIONS):
        raise ValidationError(
            f"the registered policy acts over {meta.get('action_names')}, not {list(ACTIONS)}"
        )


def random_policy_return(
    env_config: EnvConfig | None = None, seed: int = 0, n_users: int = 2000
) -> float:
    """Mean return per user of the uniformly random policy (a training sanity floor)."""
    from mktlab.rl.baselines import RandomPolicy
    from mktlab.rl.evaluate import rollout

    return float(np.mean(rollout(RandomPolicy(seed), env_config, seed, n_users)["return"]))


class PyfuncPolicy:
    """Adapter: a loaded ``rl_policy`` pyfunc acting on observation matrices.

    Lets the evaluation roll out exactly the artifact the registry serves.
    """

    def __init__(self, model: Any, name: str = "rl_policy@champion"):
        check_pyfunc_compatible(model)
        self.model = model
        self.name = name

    def act(self, obs: np.ndarray) -> np.ndarray:
        from mktlab.rl.baselines import check_obs

        df = pd.DataFrame(check_obs(obs), columns=list(OBS_COLUMNS))
        out = self.model.predict(df)
        return np.asarray(out["action_id"], dtype=np.int64)
