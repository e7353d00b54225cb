"""Weekly dynamics of a population of users, vectorised in numpy.

:class:`MarketingSimulator` steps ``n`` users at once; the gymnasium environment
(:class:`mktlab.rl.env.MarketingEnv`) is the same simulator with one user, so both share
one set of dynamics. Users are drawn from a :class:`UserPrior`: either the synthetic
world's users (:meth:`UserPrior.from_world`, the joint distribution of RFM, tier, age,
uplift quadrant and potential-outcome probabilities ``p0``/``p1``), or a parametric
default that mirrors how :mod:`mktlab.datasets.world` generates them.

One user-week, action ``a`` in ``(none, push, sms, coupon_small, coupon_large)``::

    activity = floor + (1 - floor) exp(-recency_weeks / 6)  # RFM: recent buyers buy again
    base     = p0_week * activity * exp(-habit_erosion * habit)      # full-price buying
    response = lift_week * strength[a] * exp(-habit_response * habit - fatigue_response * fatigue)
    P(buy)   = clip(base + response, 0, 0.95)  if the user has not churned, else 0
    reward   = margin_rate * order_value * buy - face[a] * buy - channel_cost[a]

``p0_week = week_scale * p0`` and ``lift_week = p1 - p0`` come from the world's campaign
truth of the user. ``lift_week`` is positive for persuadables, negative for
sleeping dogs (a touch puts them off) and about zero for sure things and lost causes.
Every coupon adds to ``habit`` (decays by ``habit_decay`` a week), which erodes both the
response to the next coupon and full-price purchases; every touch adds to ``fatigue``,
which raises the weekly churn hazard (``churn_fatigue`` per unit above 1, plus
``churn_sleeping_dog`` when a sleeping dog is touched, plus ``churn_lapse`` growing with
the weeks since the last purchase, so a purchase also retains). The budget is the campaign's
allocation per user: an action whose worst-case cost (face value + channel cost) exceeds
what is left is not sent (recorded as ``blocked``), so spend can never exceed it.

Random numbers are drawn in fixed-shape blocks every week whatever the actions, so two
policies run on the same seed see the same users and the same luck (common random
numbers): the paired difference of their returns has a small variance.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from mktlab.errors import DataError, ValidationError

ACTIONS: tuple[str, ...] = ("none", "push", "sms", "coupon_small", "coupon_large")
SEGMENTS: tuple[str, ...] = ("persuadable", "sure_thing", "lost_cause", "sleeping_dog")
OBS_COLUMNS: tuple[str, ...] = (
    "recency",  # weeks since the last purchase / 26, capped at 2
    "frequency",  # decayed count of recent purchases / 4
    "monetary",  # standardised log average order value
    "tier",  # loyalty tier 1..5 / 5
    "age",  # standardised age
    "fatigue",  # decayed count of recent touches / 3
    "coupons_recent",  # coupon habituation proxy: decayed count of coupons / 3
    "weeks_since_coupon",  # / 26, capped at 1
    "redeem_rate",  # smoothed share of past coupons that were redeemed
    "visited",  # opened the app last week (0/1)
    "cart_signal",  # noisy browse-without-buying score (persuadables score high)
    "optout_signal",  # noisy muted-notifications / complaint score (sleeping dogs)
    "weeks_left",  # share of the horizon still to go
    "budget_left",  # share of the per-user budget still unspent
)
OBS_LOW = np.array([0, 0, -5, 0, -5, 0, 0, 0, 0, 0, -5, -5, 0, 0], dtype=np.float32)
OBS_HIGH = np.array([2, 10, 5, 1, 5, 10, 10, 1, 1, 1, 5, 5, 1, 1], dtype=np.float32)
OBS_VERSION = "marketing-obs-v1"


def _check(name: str, value: float, lo: float, hi: float = np.inf) -> None:
    if not isinstance(value, int | float | np.floating | np.integer) or isinstance(value, bool):
        raise ValidationError(f"{name} must be a number, got {value!r}")
    if not (lo <= float(value) <= hi) or not np.isfinite(float(value)):
        raise ValidationError(f"{name} must be in [{lo}, {hi}], got {value!r}")


@dataclass
class EnvConfig:
    """Parameters of the marketing dynamics (money in yuan, time in weeks).

    Parameters
    ----------
    horizon : int
        Weeks per episode.
    budget_per_user : float
        Campaign budget allocated to each user for the episode (coupon face values
        redeemed + channel costs). Must be > 0.
    margin_rate : float
        Gross margin on an order's value.
    week_scale : float
        Weekly purchase probability = ``week_scale * p0`` of the world (whose ``p0`` is
        a campaign-window conversion probability).
    coupon_face : tuple of float
        Face value of (small, large) coupons, paid when redeemed.
    channel_cost : tuple of float
        Cost per send of (push, sms, coupon_small, coupon_large); coupons go by app.
    strength : tuple of float
        Share of the world's coupon lift that (push, sms, coupon_small, coupon_large)
        produce in the week they are sent.
    habit_decay, habit_erosion, habit_response : float
        Coupon habituation: weekly decay, erosion of full-price buying and of the
        response to promotions per unit of habit.
    fatigue_decay, fatigue_response : float
        Touch fatigue: weekly decay and loss of response per unit of fatigue.
    touch_fatigue : tuple of float
        Fatigue added by (push, sms, coupon_small, coupon_large).
    churn_base, churn_fatigue, churn_sleeping_dog, churn_lapse : float
        Weekly churn hazard: base, per unit of fatigue above 1, when a sleeping dog is
        touched, and for lapsing (``churn_lapse * min(recency_weeks, 26) / 26``: users
        who stop buying drift away, so a purchase a coupon brings about also retains).
    lapse_floor : float
        Purchase propensity of a long-lapsed user relative to a just-bought one.
    signal_noise : float
        Standard deviation of the noise on the segment signals (``cart_signal``,
        ``optout_signal``); larger hides the segments more.
    """

    horizon: int = 26
    budget_per_user: float = 30.0
    margin_rate: float = 0.35
    week_scale: float = 0.2
    coupon_face: tuple[float, float] = (5.0, 15.0)
    channel_cost: tuple[float, float, float, float] = (0.02, 0.25, 0.05, 0.05)
    strength: tuple[float, float, float, float] = (0.12, 0.3, 0.45, 0.8)
    habit_decay: float = 0.8
    habit_erosion: float = 0.25
    habit_response: float = 0.45
    fatigue_decay: float = 0.6
    fatigue_response: float = 0.3
    touch_fatigue: tuple[float, float, float, float] = (0.7, 1.0, 0.7, 0.7)
    churn_base: float = 0.004
    churn_fatigue: float = 0.03
    churn_sleeping_dog: float = 0.03
    churn_lapse: float = 0.015
    lapse_floor: float = 0.5
    signal_noise: float = 0.35

    def __post_init__(self) -> None:
        if isinstance(self.horizon, bool) or not isinstance(self.horizon, int | np.integer):
            raise ValidationError(
                f"horizon must be an integer number of weeks, got {self.horizon!r}"
            )
        if not 1 <= int(self.horizon) <= 520:
            raise ValidationError(f"horizon must be 1..520 weeks, got {self.horizon}")
        _check("budget_per_user", self.budget_per_user, 0.0)
        if float(self.budget_per_user) <= 0:
            raise ValidationError(
                f"budget_per_user must be > 0 (a campaign with no budget can only do nothing), "
                f"got {self.budget_per_user!r}"
            )
        for name in ("margin_rate", "week_scale", "habit_decay", "fatigue_decay", "lapse_floor"):
            _check(name, getattr(self, name), 0.0, 1.0)
        for name in (
            "habit_erosion",
            "habit_response",
            "fatigue_response",
            "churn_base",
            "churn_fatigue",
            "churn_sleeping_dog",
            "churn_lapse",
            "signal_noise",
        ):
            _check(name, getattr(self, name), 0.0)
        for name, n in (
            ("coupon_face", 2),
            ("channel_cost", 4),
            ("strength", 4),
            ("touch_fatigue", 4),
        ):
            val = tuple(getattr(self, name))
            if len(val) != n:
                raise ValidationError(f"{name} must have {n} values, got {len(val)}")
            for i, v in enumerate(val):
                _check(f"{name}[{i}]", v, 0.0)
            setattr(self, name, tuple(float(v) for v in val))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the parameters (for MLflow params and the policy's metadata)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    # per-action lookup tables (index = action id)
    def face_by_action(self) -> np.ndarray:
        return np.array([0.0, 0.0, 0.0, *self.coupon_face])

    def cost_by_action(self) -> np.ndarray:
        return np.array([0.0, *self.channel_cost])

    def strength_by_action(self) -> np.ndarray:
        return np.array([0.0, *self.strength])

    def fatigue_by_action(self) -> np.ndarray:
        return np.array([0.0, *self.touch_fatigue])


# ----------------------------------------------------------------------------- users
PRIOR_COLUMNS = (
    "segment",
    "p0",
    "lift",
    "recency_days",
    "frequency_90d",
    "monetary_90d",
    "tier_level",
    "age",
)


@dataclass
class UserPrior:
    """The users an episode draws from: one row per prototype user.

    ``segment`` is an index into :data:`SEGMENTS`; ``p0`` and ``lift`` (= ``p1 - p0``)
    are the world's campaign-window probabilities; the rest are the profile's RFM, tier
    and age. Build with :meth:`default` or :meth:`from_world`.
    """

    table: dict[str, np.ndarray] = field(repr=False)
    source: str = "default"

    def __post_init__(self) -> None:
        missing = [c for c in PRIOR_COLUMNS if c not in self.table]
        if missing:
            raise DataError(f"user prior: missing column(s) {missing}")
        n = {len(np.asarray(self.table[c])) for c in PRIOR_COLUMNS}
        if len(n) != 1 or n == {0}:
            raise DataError(f"user prior: columns must be non-empty and of one length, got {n}")
        self.table = {c: np.asarray(self.table[c], dtype=float) for c in PRIOR_COLUMNS}
        seg = self.table["segment"]
        if not np.isin(seg, np.arange(len(SEGMENTS))).all():
            raise DataError("user prior: segment must be an index into SEGMENTS (0..3)")

    def __len__(self) -> int:
        return len(self.table["segment"])

    def segment_shares(self) -> dict[str, float]:
        counts = np.bincount(self.table["segment"].astype(int), minlength=len(SEGMENTS))
        return {s: float(c / counts.sum()) for s, c in zip(SEGMENTS, counts, strict=True)}

    @classmethod
    def default(cls, n: int = 20_000, seed: int = 0) -> UserPrior:
        """Parametric users generated like :mod:`mktlab.datasets.world` generates them.

        RFM from the world's order process (gamma activity, Poisson orders), quadrants
        from the world's logits on frequency, recency, age and tier, and ``p0`` / lift
        ranges per quadrant as in the world's campaign truth.
        """
        rng = np.random.default_rng([seed, 90_210])
        activity = rng.gamma(0.8, 1.0, size=n)
        n_cart = rng.binomial(rng.poisson(activity * 6), 0.25)
        freq = rng.binomial(n_cart, 0.35) + (rng.random(n) < 0.15)
        aov = rng.lognormal(4.6, 0.7, size=n)
        monetary = np.round(freq * aov, 2)
        recency = np.where(freq > 0, rng.integers(0, 90, size=n) // np.maximum(freq, 1), 365)
        age = np.clip(rng.normal(34, 10, size=n), 18, 75).astype(np.int64)
        spend_rank = np.log1p(monetary) + rng.normal(0, 0.8, size=n)
        tier = np.clip(np.digitize(spend_rank, [1.0, 4.0, 5.2, 6.2]) + 1, 1, 5)
        seg, p0, lift = _quadrants(rng, freq, recency, age, tier)
        return cls(
            {
                "segment": seg,
                "p0": p0,
                "lift": lift,
                "recency_days": recency,
                "frequency_90d": freq,
                "monetary_90d": monetary,
                "tier_level": tier,
                "age": age,
            },
            source="default",
        )

    @classmethod
    def from_world(cls, world: Any, campaign_id: str = "C001") -> UserPrior:
        """Users of the synthetic world: profiles joined with ``campaign_truth``.

        Parameters
        ----------
        world : mktlab.datasets.World
            A generated world (``make_world`` / ``load_world``).
        campaign_id : str
            Whose potential outcomes (``p0``, ``p1``, quadrant) calibrate the response.
        """
        truth = world.table("campaign_truth", ["campaign_id", "user_id", "p0", "p1", "quadrant"])
        truth = truth[truth["campaign_id"] == campaign_id]
        if truth.empty:
            raise DataError(f"campaign_truth has no rows for campaign_id={campaign_id!r}")
        prof = world.table(
            "profiles",
            ["user_id", "recency_days", "frequency_90d", "monetary_90d", "tier_level", "age"],
        )
        df = truth.merge(prof, on="user_id", how="inner")
        if df.empty:
            raise DataError("campaign_truth and profiles share no user_id")
        seg = df["quadrant"].astype(str).map({s: i for i, s in enumerate(SEGMENTS)})
        if seg.isna().any():
            bad = sorted(set(df.loc[seg.isna(), "quadrant"].astype(str)))[:5]
            raise DataError(f"campaign_truth.quadrant has unknown values {bad}")
        return cls(
            {
                "segment": seg.to_numpy(dtype=float),
                "p0": df["p0"].to_numpy(dtype=float),
                "lift": (df["p1"] - df["p0"]).to_numpy(dtype=float),
                "recency_days": df["recency_days"].to_numpy(dtype=float),
                "frequency_90d": df["frequency_90d"].to_numpy(dtype=float),
                "monetary_90d": df["monetary_90d"].to_numpy(dtype=float),
                "tier_level": df["tier_level"].to_numpy(dtype=float),
                "age": df["age"].to_numpy(dtype=float),
            },
            source=f"world:{getattr(world, 'path', '?')}:{campaign_id}",
        )


def _quadrants(rng, freq, recency, age, tier):
    # the world's quadrant model (mktlab.datasets.world._Chunk.campaigns)
    fz = (np.log1p(freq) - 0.8) / 0.7
    rz = (np.minimum(recency, 120) - 45) / 35
    az = (age - 34) / 10
    tz = (tier - 2.5) / 1.2
    logits = np.stack(
        [
            1.3 - 0.8 * np.abs(fz - 0.3) - 0.5 * az,
            1.0 + 1.6 * fz - 0.6 * rz,
            -1.0 - 1.1 * fz + 0.5 * rz,
            0.0 + 1.0 * tz + 0.6 * az,
        ],
        axis=1,
    )
    q = np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)
    u, v = rng.random(len(q)), rng.random(len(q))
    p0 = np.select(
        [q == 0, q == 1, q == 2, q == 3],
        [0.02 + 0.08 * u, 0.45 + 0.25 * u, 0.05 * u, 0.20 + 0.20 * u],
    )
    lift = np.select(
        [q == 0, q == 1, q == 2, q == 3],
        [0.15 + 0.2 * v, -0.02 + 0.05 * v, 0.02 * v, -(0.10 + 0.10 * v)],
    )
    return q, p0, lift


# ----------------------------------------------------------------------------- simulator
class MarketingSimulator:
    """``n_users`` users stepped one week at a time with numpy.

    Parameters
    ----------
    config : EnvConfig
    n_users : int
    prior : UserPrior, optional
        Users to draw from (default :meth:`UserPrior.default`).

    Notes
    -----
    :meth:`reset` draws a fresh population from ``seed``; :meth:`step` takes one action
    id per user and returns ``(obs, reward, info)`` where ``info`` holds per-user arrays
    (``bought``, ``spend``, ``blocked``, ``action`` actually taken, ``churned``).
    Hidden truth (``segment``) is an attribute for evaluation only; it is never in the
    observation.
    """

    n_actions = len(ACTIONS)
    obs_dim = len(OBS_COLUMNS)

    def __init__(
        self, config: EnvConfig | None = None, n_users: int = 1, prior: UserPrior | None = None
    ):
        if isinstance(n_users, bool) or not isinstance(n_users, int | np.integer) or n_users < 1:
            raise ValidationError(f"n_users must be a positive integer, got {n_users!r}")
        self.config = config if config is not None else EnvConfig()
        if not isinstance(self.config, EnvConfig):
            raise ValidationError(f"config must be an EnvConfig, got {type(self.config).__name__}")
        self.n = int(n_users)
        self.prior = prior if prior is not None else _default_prior()
        c = self.config
        self._face = c.face_by_action()
        self._cost = c.cost_by_action()
        self._strength = c.strength_by_action()
        self._fatigue_add = c.fatigue_by_action()
        self._coupon = np.array([0, 0, 0, 1, 1], dtype=bool)
        self._worst = self._face + self._cost
        self.rng = np.random.default_rng()
        self.t = 0

    # ------------------------------------------------------------------ population
    def reset(self, seed: int | None = None) -> np.ndarray:
        """Draw a new population; returns the first observation ``(n, obs_dim)``."""
        self.rng = np.random.default_rng(seed)
        rng, n, c, tab = self.rng, self.n, self.config, self.prior.table
        idx = rng.integers(0, len(self.prior), size=n)
        self.segment = tab["segment"][idx].astype(np.int64)
        self.p0w = np.clip(tab["p0"][idx], 0, 1) * c.week_scale
        self.lift = tab["lift"][idx]
        freq = tab["frequency_90d"][idx]
        monetary = tab["monetary_90d"][idx]
        # order value: the user's own average when known, else the world's order model
        own = np.where(freq > 0, monetary / np.maximum(freq, 1), 0.0)
        drawn = rng.lognormal(4.6, 0.7, size=n)
        self.aov = np.clip(np.where(own > 0, own, drawn), 10.0, 2000.0)
        self.log_aov_z = (np.log(self.aov) - 4.6) / 0.7
        self.tier = tab["tier_level"][idx]
        self.age_z = (tab["age"][idx] - 34.0) / 10.0
        noise = c.signal_noise
        self.cart_signal = (self.segment == 0) * 1.0 + rng.normal(0, noise, n) - 0.3
        self.optout_signal = (self.segment == 3) * 1.0 + rng.normal(0, noise, n) - 0.3
        self.recency_w = np.minimum(tab["recency_days"][idx] / 7.0, 52.0)
        self.freq = freq.astype(float)
        self.fatigue = np.zeros(n)
        self.habit = np.zeros(n)
        self.weeks_since_coupon = np.full(n, float(c.horizon))
        self.n_coupons = np.zeros(n)
        self.n_redeems = np.zeros(n)
        self.visited = (rng.random(n) < 0.15 + 2 * self.p0w).astype(float)
        self.active = np.ones(n, dtype=bool)
        self.budget = np.full(n, float(c.budget_per_user))
        self.spent = np.zeros(n)
        self.t = 0
        return self.observe()

    def observe(self) -> np.ndarray:
        """The observation matrix ``(n, obs_dim)`` (float32, within the bounds)."""
        c = self.config
        obs = np.empty((self.n, self.obs_dim), dtype=np.float32)
        obs[:, 0] = self.recency_w / 26.0
        obs[:, 1] = self.freq / 4.0
        obs[:, 2] = self.log_aov_z
        obs[:, 3] = self.tier / 5.0
        obs[:, 4] = self.age_z
        obs[:, 5] = self.fatigue / 3.0
        obs[:, 6] = self.habit / 3.0
        obs[:, 7] = self.weeks_since_coupon / 26.0
        obs[:, 8] = (self.n_redeems + 0.3) / (self.n_coupons + 1.0)
        obs[:, 9] = self.visited
        obs[:, 10] = self.cart_signal
        obs[:, 11] = self.optout_signal
        obs[:, 12] = (c.horizon - self.t) / c.horizon
        obs[:, 13] = self.budget / c.budget_per_user
        np.clip(obs, OBS_LOW, OBS_HIGH, out=obs)
        return obs

    # ------------------------------------------------------------------ one week
    def purchase_probability(self, actions: np.ndarray) -> np.ndarray:
        """P(buy this week | action) for every user, given the current state."""
        c = self.config
        activity = c.lapse_floor + (1.0 - c.lapse_floor) * np.exp(-self.recency_w / 6.0)
        base = self.p0w * activity * np.exp(-c.habit_erosion * self.habit)
        damp = np.exp(-c.habit_response * self.habit - c.fatigue_response * self.fatigue)
        response = self.lift * self._strength[actions] * damp
        return np.clip(base + response, 0.0, 0.95) * self.active

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Advance every user one week. ``actions``: int array ``(n,)`` of action ids."""
        a = np.asarray(actions)
        if a.shape != (self.n,):
            raise ValidationError(f"actions must have shape ({self.n},), got {a.shape}")
        if a.dtype.kind not in "iu":
            if a.dtype.kind == "f" and np.all(np.isfinite(a)) and np.all(a == np.round(a)):
                a = a.astype(np.int64)
            else:
                raise ValidationError(f"actions must be integer action ids, got dtype {a.dtype}")
        bad = (a < 0) | (a >= self.n_actions)
        if bad.any():
            raise ValidationError(
                f"actions must be in 0..{self.n_actions - 1} {ACTIONS}; got {np.unique(a[bad])[:5].tolist()}"
            )
        if self.t >= self.config.horizon:
            raise ValidationError("the episode is over (horizon reached); call reset()")
        c = self.config
        # fixed-shape draws every week: common random numbers across policies
        u = self.rng.random((self.n, 3))
        z = self.rng.normal(0.0, 0.3, self.n)
        # the budget is a hard constraint: an unaffordable action is not sent
        blocked = self._worst[a] > self.budget + 1e-9
        a = np.where(blocked, 0, a)
        p = self.purchase_probability(a)
        bought = u[:, 0] < p
        value = self.aov * np.exp(z - 0.045)
        coupon = self._coupon[a]
        redeemed = bought & coupon
        spend = self._cost[a] + self._face[a] * redeemed
        reward = c.margin_rate * value * bought - spend
        touched = a > 0
        # state transitions
        self.budget = np.maximum(self.budget - spend, 0.0)
        self.spent += spend
        self.recency_w = np.where(bought, 0.0, np.minimum(self.recency_w + 1.0, 52.0))
        self.freq = self.freq * (12.0 / 13.0) + bought
        self.habit = self.habit * c.habit_decay + coupon
        self.fatigue = self.fatigue * c.fatigue_decay + self._fatigue_add[a]
        self.weeks_since_coupon = np.where(coupon, 0.0, self.weeks_since_coupon + 1.0)
        self.n_coupons += coupon
        self.n_redeems += redeemed
        hazard = (
            c.churn_base
            + c.churn_fatigue * np.maximum(self.fatigue - 1.0, 0.0)
            + c.churn_sleeping_dog * (touched & (self.segment == 3))
            + c.churn_lapse * np.minimum(self.recency_w, 26.0) / 26.0
        )
        churned = self.active & (u[:, 1] < hazard)
        self.active &= ~churned
        self.visited = (self.active & (u[:, 2] < 0.15 + 2 * p)).astype(float)
        self.t += 1
        info = {
            "action": a,
            "bought": bought,
            "spend": spend,
            "blocked": blocked,
            "churned": churned,
            "coupon": coupon,
        }
        return self.observe(), reward, info

    @property
    def done(self) -> bool:
        return self.t >= self.config.horizon


_DEFAULT_PRIOR: UserPrior | None = None


def _default_prior() -> UserPrior:
    global _DEFAULT_PRIOR
    if _DEFAULT_PRIOR is None:
        _DEFAULT_PRIOR = UserPrior.default()
    return _DEFAULT_PRIOR
