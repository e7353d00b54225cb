"""The shipped Prometheus alert rules and Grafana dashboard: valid, and about metrics the watcher exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from mktlab.campaigns.watch import METRIC_NAMES, campaign_metrics

promql = pytest.importorskip("promql_parser", reason="promql-parser (the dev extra) parses PromQL")
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
EXPORTED = set(METRIC_NAMES.values())
NAME = re.compile(r"\bmktlab_[a-z_]+\b")


def test_the_watcher_exports_every_metric_name_it_declares():
    reg = CollectorRegistry()
    campaign_metrics(reg)
    names = {m.name + ("_total" if m.type == "counter" else "") for m in reg.collect()}
    assert names == EXPORTED


def test_alert_rules_have_the_rule_file_shape_and_parse():
    doc = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    assert set(doc) == {"groups"}
    rules = [r for g in doc["groups"] for r in g["rules"]]
    assert len(rules) >= 6
    for g in doc["groups"]:
        assert set(g) <= {"name", "interval", "rules", "limit"}
        assert g["name"]
    for r in rules:
        assert set(r) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}, r
        assert r["alert"]
        assert r["annotations"]["summary"]
        if "for" in r:
            assert re.fullmatch(r"\d+[smhd]", r["for"])
        promql.parse(r["expr"])  # raises on bad PromQL
        used = set(NAME.findall(r["expr"]))
        assert used, r["alert"]
        assert used <= EXPORTED, (r["alert"], used - EXPORTED)


def test_bad_promql_is_refused_by_the_parser():
    with pytest.raises(ValueError):
        promql.parse("sum(rate(mktlab_campaign_spend[5m]) >")


def test_the_dashboard_is_grafana_json_over_exported_metrics():
    dash = json.loads((DEPLOY / "grafana" / "mktlab-campaigns.json").read_text())
    assert dash["uid"]
    assert dash["schemaVersion"] >= 36
    assert [v["name"] for v in dash["templating"]["list"]] == ["datasource", "campaign"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)) >= 6
    for p in dash["panels"]:
        assert p["targets"], p["title"]
        for t in p["targets"]:
            expr = t["expr"].replace("$campaign", ".*")
            promql.parse(expr)
            assert set(NAME.findall(expr)) <= EXPORTED, (p["title"], expr)


def test_selectors_only_use_labels_the_metrics_have():
    labels = {
        METRIC_NAMES[k]: set(m._labelnames)
        for k, m in campaign_metrics(CollectorRegistry()).items()
    }
    exprs = [r["expr"] for g in yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"]
             for r in g["rules"]]  # fmt: skip
    dash = json.loads((DEPLOY / "grafana" / "mktlab-campaigns.json").read_text())
    exprs += [t["expr"] for p in dash["panels"] for t in p["targets"]]
    for expr in exprs:
        for name, sel in re.findall(r"\b(mktlab_[a-z_]+)\{([^}]*)\}", expr):
            used = set(re.findall(r"([a-z_]+)\s*(?:=~|!=|!~|=)", sel))
            assert used <= labels[name], (name, used - labels[name])
        for by in re.findall(r"\bby \(([^)]*)\)", expr):
            assert {x.strip() for x in by.split(",")} <= {"campaign", "arm", "breaker", "state"}
