"""Compiling a rule set into its shared condition network.

:func:`compile_rules` turns a :class:`~mktlab.rules.model.RuleSet` into a
:class:`Network` (Rete-style): distinct alpha tests once, and a prefix tree of the
rules' conjunctions (see :mod:`mktlab.rules.engine` for the picture).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from mktlab.rules.batch import Batch
from mktlab.rules.caps import Budget
from mktlab.rules.governance import FieldSchema, validate
from mktlab.rules.model import Predicate, Rule, RuleSet, Trigger
from mktlab.rules.semantics import as_memberships


@dataclass
class Node:
    """One test of the prefix tree; ``rules`` end here, ``children`` extend the conjunction."""

    test: tuple  # ("trigger", i) or ("pred", j)
    children: dict = field(default_factory=dict)
    rules: list = field(default_factory=list)  # firing-order indices ending here


@dataclass
class Network:
    """A compiled rule set: distinct alpha tests and a prefix tree of conjunctions."""

    ruleset: RuleSet
    rules: tuple[Rule, ...]
    predicates: tuple[Predicate, ...]
    triggers: tuple[Trigger, ...]
    root: Node
    n_beta_nodes: int
    n_predicate_refs: int

    @property
    def n_predicates(self) -> int:
        """Distinct predicates (each evaluated once per event)."""
        return len(self.predicates)

    def describe(self) -> dict[str, int]:
        return {
            "rules": len(self.rules),
            "distinct_predicates": self.n_predicates,
            "predicate_references": self.n_predicate_refs,
            "distinct_triggers": len(self.triggers),
            "beta_nodes": self.n_beta_nodes,
        }

    def run_batch(
        self,
        events: pd.DataFrame,
        *,
        profiles: pd.DataFrame | None = None,
        audiences: Mapping[str, Any] | None = None,
        budget: Budget | None = None,
        user_col: str = "user_id",
        ts_col: str = "ts",
        event_col: str = "event",
    ) -> pd.DataFrame:
        """Run every rule over ``events`` in time order; return one row per candidate action.

        Parameters
        ----------
        events : DataFrame
            Needs ``user_col``, ``ts_col`` and ``event_col`` plus the fields rules read.
        profiles : DataFrame, optional
            Indexed by user (or with a ``user_col`` column): ``profile.*`` fields.
        audiences : mapping, optional
            Audience name -> members (set, array, BitMap, boolean Series).
        budget : Budget, optional
            Coupon count / face-value limit over the whole replay.

        Returns
        -------
        DataFrame
            Columns ``row`` (position in ``events``), ``user``, ``ts``, ``rule_id``,
            ``action``, ``channel``, ``coupon``, ``value``, ``detail``, ``status``
            (``ok``, ``capped``, ``budget``, ``stacked``) and ``reason``; ordered by
            time, rule priority and action position.
        """
        batch = Batch(
            self, events, profiles, as_memberships(audiences), user_col, ts_col, event_col
        )
        return batch.run(budget or Budget())


def compile_rules(
    ruleset: RuleSet, schema: FieldSchema | None = None, *, check: bool = True
) -> Network:
    """Validate ``ruleset`` (against ``schema`` if given) and build its :class:`Network`.

    ``check=False`` skips validation (unreachable rules then simply never fire).
    """
    if check:
        validate(ruleset, schema)
    rules = ruleset.active_rules
    pred_index: dict[tuple, int] = {}
    preds: list[Predicate] = []
    trig_index: dict[tuple, int] = {}
    trigs: list[Trigger] = []
    usage: dict[int, int] = {}
    for r in rules:
        if r.when.key not in trig_index:
            trig_index[r.when.key] = len(trigs)
            trigs.append(r.when)
        for p in dict.fromkeys(r.conditions):  # a repeated predicate in a rule counts once
            if p.key not in pred_index:
                pred_index[p.key] = len(preds)
                preds.append(p)
            usage[pred_index[p.key]] = usage.get(pred_index[p.key], 0) + 1
    root = Node(("root", 0))
    n_nodes = 0
    n_refs = 0
    for f, r in enumerate(rules):
        path = [("trigger", trig_index[r.when.key])]
        ids = sorted({pred_index[p.key] for p in r.conditions}, key=lambda j: (-usage[j], j))
        n_refs += len(ids)
        path += [("pred", j) for j in ids]
        node = root
        for test in path:
            if test not in node.children:
                node.children[test] = Node(test)
                n_nodes += 1
            node = node.children[test]
        node.rules.append(f)
    return Network(ruleset, rules, tuple(preds), tuple(trigs), root, n_nodes, n_refs)


def as_network(rules: RuleSet | Network) -> Network:
    """``rules`` itself if already compiled, else :func:`compile_rules` of it."""
    return rules if isinstance(rules, Network) else compile_rules(rules)


def run_batch(rules: RuleSet | Network, events: pd.DataFrame, **kwargs: Any) -> pd.DataFrame:
    """Compile ``rules`` if needed and run them over ``events``; see :meth:`Network.run_batch`."""
    return as_network(rules).run_batch(events, **kwargs)
