"""One strategy, every runtime: the versioned definition and its eligibility.

>>> from mktlab.strategy import Strategy, simulate
>>> s = Strategy.from_yaml("examples/strategies/cart-rescue.yaml")   # doctest: +SKIP
>>> simulate(s, events, context).decisions_frame()                   # doctest: +SKIP

- :mod:`~mktlab.strategy.spec`: :class:`Strategy` (audience, holdout, policy, rules,
  caps, coupon terms, budget, channels, templates), YAML / JSON with a schema.
- :mod:`~mktlab.strategy.eligibility`: who gets what, how often (holdout → audience →
  policy → caps), shared by the simulation, the live workers and ``/issue``.
- :mod:`~mktlab.strategy.runtime`: rules → eligibility → effects, one event at a time.
- :mod:`~mktlab.strategy.catalog`: saved strategies by name and campaign.
"""

from mktlab.strategy.catalog import StrategyCatalog
from mktlab.strategy.eligibility import (
    Eligibility,
    EligibilityContext,
    MemoryCapLedger,
    RedisCapLedger,
    Verdict,
    in_holdout,
    random_draw,
)
from mktlab.strategy.runtime import DECISION_COLUMNS, Effect, RunResult, StrategyRuntime, simulate
from mktlab.strategy.schema import STRATEGY_SCHEMA, check_schema
from mktlab.strategy.spec import CHANNEL_NAMES, CouponTerms, Strategy, TemplateSpec, TreatmentPolicy

__all__ = [
    "CHANNEL_NAMES",
    "DECISION_COLUMNS",
    "STRATEGY_SCHEMA",
    "CouponTerms",
    "Effect",
    "Eligibility",
    "EligibilityContext",
    "MemoryCapLedger",
    "RedisCapLedger",
    "RunResult",
    "Strategy",
    "StrategyCatalog",
    "StrategyRuntime",
    "TemplateSpec",
    "TreatmentPolicy",
    "Verdict",
    "check_schema",
    "in_holdout",
    "random_draw",
    "simulate",
]
