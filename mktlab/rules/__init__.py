"""ECA rules: events (atomic and windowed), shared conditions, actions, caps, governance.

>>> from mktlab.rules import RuleSet, compile_rules
>>> rs = RuleSet.from_yaml(text)                 # rules as data
>>> net = compile_rules(rs, FieldSchema.from_frames(events, profiles))
>>> firings = net.run_batch(events, profiles=profiles, audiences={"vip": vip_uids})
>>> engine = OnlineEngine(net, profiles=profiles)   # same decisions, one event at a time
"""

from mktlab.rules.batch import lifecycle_states
from mktlab.rules.caps import Budget, BudgetTracker, CapTracker, enforce
from mktlab.rules.compiler import Network, compile_rules, run_batch
from mktlab.rules.governance import (
    Conflict,
    FieldSchema,
    RuleRegistry,
    RuleValidationError,
    diff,
    find_conflicts,
    problems,
    satisfiable,
    validate,
)
from mktlab.rules.model import (
    AtomicEvent,
    FrequencyCap,
    IssueCoupon,
    Predicate,
    Rule,
    RuleSet,
    SendMessage,
    SetLifecycle,
    WindowPattern,
    parse_duration,
)
from mktlab.rules.online import Decision, OnlineEngine
from mktlab.rules.semantics import Membership, test_value

__all__ = [
    "AtomicEvent",
    "Budget",
    "BudgetTracker",
    "CapTracker",
    "Conflict",
    "Decision",
    "FieldSchema",
    "FrequencyCap",
    "IssueCoupon",
    "Membership",
    "Network",
    "OnlineEngine",
    "Predicate",
    "Rule",
    "RuleRegistry",
    "RuleSet",
    "RuleValidationError",
    "SendMessage",
    "SetLifecycle",
    "WindowPattern",
    "compile_rules",
    "diff",
    "enforce",
    "find_conflicts",
    "lifecycle_states",
    "parse_duration",
    "problems",
    "run_batch",
    "satisfiable",
    "test_value",
    "validate",
]
