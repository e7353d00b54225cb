"""The shared condition network and its two executions: batch and online.

:func:`compile_rules` turns a :class:`~mktlab.rules.model.RuleSet` into a
:class:`Network` (Rete-style):

* **alpha nodes** — every *distinct* predicate (``field op value``) and every distinct
  trigger once, however many rules use it. Window patterns share their counting state:
  patterns over the same ``(event, within, same)`` share one rolling count, and every
  pattern with the same ``absent`` event shares one "no such event" count.
* **beta nodes** — each rule is the conjunction trigger ∧ p1 ∧ p2 …, with its
  predicates ordered by how many rules use them; the conjunctions form a prefix tree, so
  rules that start with the same tests share those joins.

:meth:`Network.run_batch` evaluates each alpha node once over a whole DataFrame (numpy,
plus numba for windows, caps and budget); :class:`OnlineEngine` does the same for one
event at a time, memoising alpha results per event. Both produce the same decisions for
the same time-ordered events — a property test checks it.

The work is split by job: :mod:`~mktlab.rules.semantics` (what a test means),
:mod:`~mktlab.rules.compiler` (the network), :mod:`~mktlab.rules.batch` and
:mod:`~mktlab.rules.online` (the two executions). This module gathers them under the
name callers already import.
"""

from mktlab.rules.batch import FIRING_COLUMNS, lifecycle_states
from mktlab.rules.compiler import Network, compile_rules, run_batch
from mktlab.rules.online import Decision, OnlineEngine
from mktlab.rules.semantics import Membership, as_memberships, context_value, is_null, test_value

__all__ = [
    "FIRING_COLUMNS",
    "Decision",
    "Membership",
    "Network",
    "OnlineEngine",
    "as_memberships",
    "compile_rules",
    "context_value",
    "is_null",
    "lifecycle_states",
    "run_batch",
    "test_value",
]
