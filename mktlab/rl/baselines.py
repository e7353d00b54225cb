"""The policies a team would use without RL, evaluated on the same seeds as the agent.

Every policy maps an observation matrix ``(n, obs_dim)`` (columns
:data:`~mktlab.rl.dynamics.OBS_COLUMNS`) to one action id per row through ``act``:

* :class:`NeverTreat` and :class:`AlwaysAction` (one per action),
* :class:`RandomPolicy`,
* :class:`RFMRule`, a marketer's hand-written recency/frequency rule,
* :class:`MyopicUpliftGreedy`, which fits a purchase model with the action as a feature
  on logged random-policy weeks (an S-learner) and sends the action with the largest positive
  predicted one-step profit ``P(buy | a) x margin - expected coupon cost - channel cost``
  over doing nothing (i.e. treat when predicted uplift x margin > cost). It sees the same
  observation as the agent; what it ignores is the future (fatigue, churn, habituation,
  budget).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from mktlab.errors import ValidationError
from mktlab.rl.dynamics import ACTIONS, OBS_COLUMNS, EnvConfig, MarketingSimulator, UserPrior

_COL = {c: i for i, c in enumerate(OBS_COLUMNS)}


def check_obs(obs: np.ndarray, name: str = "obs") -> np.ndarray:
    """Validate an observation matrix: 2-D, ``len(OBS_COLUMNS)`` columns, finite."""
    arr = np.asarray(obs, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != len(OBS_COLUMNS):
        raise ValidationError(
            f"{name} must have shape (n, {len(OBS_COLUMNS)}) with columns {list(OBS_COLUMNS)}, "
            f"got {np.asarray(obs).shape}"
        )
    if not np.isfinite(arr).all():
        raise ValidationError(f"{name} has non-finite values")
    return arr


class BaselinePolicy:
    """Base of every RL-side policy (baselines and :class:`~mktlab.rl.policy.RLPolicy`).

    ``act(obs) -> int actions``; ``name`` labels it in tables.
    """

    name = "policy"

    def act(self, obs: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass
class NeverTreat(BaselinePolicy):
    """Do nothing, ever (the no-campaign counterfactual)."""

    name: str = "never_treat"

    def act(self, obs: np.ndarray) -> np.ndarray:
        return np.zeros(len(check_obs(obs)), dtype=np.int64)


@dataclass
class AlwaysAction(BaselinePolicy):
    """Send the same action to everyone every week (while the budget lasts)."""

    action: int = 1
    name: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.action, str):
            if self.action not in ACTIONS:
                raise ValidationError(f"action: {self.action!r} is not one of {ACTIONS}")
            self.action = ACTIONS.index(self.action)
        if not 0 <= int(self.action) < len(ACTIONS):
            raise ValidationError(f"action must be in 0..{len(ACTIONS) - 1}, got {self.action!r}")
        self.name = self.name or f"always_{ACTIONS[int(self.action)]}"

    def act(self, obs: np.ndarray) -> np.ndarray:
        return np.full(len(check_obs(obs)), int(self.action), dtype=np.int64)


@dataclass
class RandomPolicy(BaselinePolicy):
    """Uniformly random actions (the reference a trained agent must beat first)."""

    seed: int | None = None
    name: str = "random"

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self._rng.integers(0, len(ACTIONS), size=len(check_obs(obs)))


@dataclass
class RFMRule(BaselinePolicy):
    """A marketer's rule of thumb on recency, frequency and the visible signals.

    Users who muted notifications or complained (``optout_signal`` above
    ``optout_max``) are left alone. Lapsed buyers (no purchase for ``lapsed_weeks``)
    get a small win-back coupon at most every ``coupon_gap`` weeks; frequent recent
    buyers get a push at most every other week (while fatigue is low); everyone else
    gets nothing.
    """

    lapsed_weeks: float = 6.0
    coupon_gap: float = 4.0
    optout_max: float = 0.4
    name: str = "rfm_rule"

    def act(self, obs: np.ndarray) -> np.ndarray:
        o = check_obs(obs)
        recency_w = o[:, _COL["recency"]] * 26
        since_coupon = o[:, _COL["weeks_since_coupon"]] * 26
        out = np.zeros(len(o), dtype=np.int64)
        quiet = o[:, _COL["optout_signal"]] > self.optout_max
        lapsed = (recency_w >= self.lapsed_weeks) & (o[:, _COL["frequency"]] > 0.05)
        winback = lapsed & (since_coupon >= self.coupon_gap)
        recent = (recency_w < 4) & (o[:, _COL["fatigue"]] < 0.2)
        out[recent] = ACTIONS.index("push")
        out[winback] = ACTIONS.index("coupon_small")
        out[quiet] = 0
        return out


class MyopicUpliftGreedy(BaselinePolicy):
    """One-step uplift-greedy: the best action by predicted immediate profit, if positive.

    Parameters
    ----------
    config : EnvConfig
        Costs, coupon values and margin used to turn purchase probabilities into profit.
    n_users, n_weeks : int
        Size of the logged random-policy data it learns from.
    seed : int
        Seed of the logging run (keep it apart from the evaluation seeds).
    prior : UserPrior, optional
    max_iter : int
        Boosting iterations of each per-action purchase model.

    Attributes
    ----------
    model_ : HistGradientBoostingClassifier
        P(buy | observation, action), the action a categorical feature.
    """

    name = "myopic_uplift"

    def __init__(
        self,
        config: EnvConfig | None = None,
        n_users: int = 8_000,
        n_weeks: int | None = None,
        seed: int = 123_456,
        prior: UserPrior | None = None,
        max_iter: int = 100,
    ):
        self.config = config
        self.n_users = n_users
        self.n_weeks = n_weeks
        self.seed = seed
        self.prior = prior
        self.max_iter = max_iter

    def fit(self) -> MyopicUpliftGreedy:
        """Log random-policy weeks in the simulator and fit P(buy | obs, action) per action."""
        from sklearn.ensemble import HistGradientBoostingClassifier

        config = self.config or EnvConfig()
        sim = MarketingSimulator(config, self.n_users, prior=self.prior)
        rng = np.random.default_rng([self.seed, 1])
        obs = sim.reset(self.seed)
        weeks = self.n_weeks or config.horizon
        X, A, Y = [], [], []
        for _ in range(min(weeks, config.horizon)):
            a = rng.integers(0, len(ACTIONS), size=sim.n)
            nxt, _, info = sim.step(a)
            X.append(obs)
            A.append(info["action"])  # what was actually sent (blocked -> none)
            Y.append(info["bought"])
            obs = nxt
        X, A, Y = np.concatenate(X), np.concatenate(A), np.concatenate(Y)
        # an S-learner (the action is a categorical feature of one model): uplift is
        # exactly zero where the trees never split on the action, so noise in two
        # separately fitted models does not turn into spurious treatments
        clf = HistGradientBoostingClassifier(
            max_iter=self.max_iter,
            learning_rate=0.1,
            categorical_features=[X.shape[1]],
            random_state=self.seed,
        )
        with threadpool_limits(1):  # OpenMP spinning on a shared machine costs 100x
            clf.fit(np.column_stack([X, A]), Y)
        self.model_ = clf
        self.config_ = config
        return self

    def predict_profit(self, obs: np.ndarray) -> np.ndarray:
        """Predicted one-step profit ``(n, n_actions)`` of each action."""
        if not hasattr(self, "model_"):
            raise ValidationError("MyopicUpliftGreedy is not fitted; call fit() first")
        o = check_obs(obs)
        c = self.config_
        aov = np.exp(o[:, _COL["monetary"]] * 0.7 + 4.6)
        margin = c.margin_rate * aov
        face, cost = c.face_by_action(), c.cost_by_action()
        prof = np.empty((len(o), len(ACTIONS)))
        for k in range(len(ACTIONS)):
            xa = np.column_stack([o, np.full(len(o), k, dtype=np.float32)])
            with threadpool_limits(1):
                p = self.model_.predict_proba(xa)[:, 1]
            prof[:, k] = p * (margin - face[k]) - cost[k]
        return prof

    def act(self, obs: np.ndarray) -> np.ndarray:
        o = check_obs(obs)
        prof = self.predict_profit(o)
        # only affordable actions are candidates (the budget is in the observation)
        budget = o[:, _COL["budget_left"]] * self.config_.budget_per_user
        worst = self.config_.face_by_action() + self.config_.cost_by_action()
        prof[worst[None, :] > budget[:, None] + 1e-9] = -np.inf
        uplift = prof - prof[:, [0]]
        best = np.argmax(uplift, axis=1)
        return np.where(uplift[np.arange(len(o)), best] > 0, best, 0).astype(np.int64)


def standard_baselines(
    config: EnvConfig | None = None, prior: UserPrior | None = None, *, myopic_users: int = 8_000
) -> list[BaselinePolicy]:
    """Never treat, always each action, the RFM rule and the fitted myopic uplift-greedy."""
    out: list[BaselinePolicy] = [NeverTreat()]
    out += [AlwaysAction(k) for k in range(1, len(ACTIONS))]
    out.append(RFMRule())
    out.append(MyopicUpliftGreedy(config, n_users=myopic_users, prior=prior).fit())
    return out
