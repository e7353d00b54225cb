"""Defects found in review, each pinned on the real registry (SQLite and PostgreSQL) and Redis."""

from __future__ import annotations

import threading

import pytest
from prometheus_client import CollectorRegistry

from mktlab.campaigns.access import KeyStore
from mktlab.campaigns.roles import Principal
from mktlab.campaigns.rollout import read_state
from mktlab.campaigns.spec import require_inline
from mktlab.campaigns.watch import Watcher
from mktlab.errors import (
    ConflictError,
    MktlabError,
    NotFoundError,
    ServiceUnavailableError,
    ValidationError,
)
from tests.campaigns.conftest import ALICE, BOB, make_spec


def _launched(lc, **kw):
    cid = lc.create(make_spec(**kw), ALICE)["campaign_id"]
    lc.submit(cid, ALICE)
    lc.approve(cid, BOB)
    lc.record_simulation(cid, ALICE, {"spend": 10.0, "reach": 5, "roi": 0.1,
                                      "strategy_fingerprint": lc.strategy(cid).fingerprint()})  # fmt: skip
    lc.launch(cid, ALICE, rollout=1.0)
    return cid


def _paused_shards(lc, cid):
    return [sh.paused for sh in lc.issuer.read_shards(cid)]


def test_a_step_that_fails_after_acting_puts_redis_and_the_issuer_back(lifecycle, monkeypatch):
    lc = lifecycle
    cid = _launched(lc)
    real_move = lc.registry.move

    def refuse(*a, **k):  # the database refuses the update after the step touched Redis
        raise ServiceUnavailableError("campaign database: connection lost")

    monkeypatch.setattr(lc.registry, "move", refuse)
    with pytest.raises(ServiceUnavailableError):
        lc.pause(cid, ALICE, reason="check")
    monkeypatch.setattr(lc.registry, "move", real_move)
    assert lc.get(cid)["state"] == "full"
    assert read_state(lc.issuer.redis, lc.namespace, cid)["state"] == "full"  # not left "paused"
    assert not any(_paused_shards(lc, cid))
    log = lc.history(cid)
    assert not log.iloc[-1]["ok"]
    assert "connection lost" in log.iloc[-1]["reason"]


def test_the_watcher_re_publishes_a_state_that_drifted_from_the_registry(lifecycle):
    lc = lifecycle
    cid = _launched(lc)
    lc.pause(cid, ALICE, reason="creative review")
    lc.issuer.redis.hset(f"{lc.namespace}:campaign:{{{cid}}}:state", "state", "full")  # drift
    lc.issuer.resume(cid)
    Watcher(lc, registry=CollectorRegistry(), interval=1).tick()
    assert read_state(lc.issuer.redis, lc.namespace, cid)["state"] == "paused"
    assert all(_paused_shards(lc, cid))


def test_refusals_of_bad_arguments_are_audited(lifecycle):
    lc = lifecycle
    cid = _launched(lc)
    attempts = [
        lambda: lc.ramp(cid, ALICE, None),
        lambda: lc.ramp(cid, ALICE, 2),
        lambda: lc.pause(cid, ALICE, reason=""),
        lambda: lc.pause(cid, ALICE, reason="x\x00y"),
        lambda: lc.record_simulation(
            cid, ALICE, {"spend": "9999999", "reach": 1, "strategy_fingerprint": "x"}
        ),
    ]
    before = len(lc.history(cid))
    for call in attempts:
        with pytest.raises(ValidationError):
            call()
    log = lc.history(cid)
    assert len(log) == before + len(attempts)
    assert not log.iloc[before:]["ok"].any()
    assert lc.get(cid)["state"] == "full"


def test_an_id_too_long_for_the_registry_is_unknown_and_audited(lifecycle):
    with pytest.raises(NotFoundError, match="not a campaign id"):
        lifecycle.pause("x" * 70, ALICE, reason="check")
    log = lifecycle.db.audit_log(action="campaign.pause")
    assert len(log) == 1
    assert not log.iloc[0]["ok"]


def test_concurrent_creates_of_one_id_conflict_and_never_report_the_database_down(lifecycle):
    spec = make_spec()
    errors: list[BaseException] = []

    def create():
        try:
            lifecycle.create(spec, ALICE)
        except MktlabError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 5
    assert {type(e) for e in errors} == {ConflictError}


def test_a_launch_needs_a_numeric_predicted_spend(lifecycle):
    lc = lifecycle
    cid = lc.create(make_spec(), ALICE)["campaign_id"]
    lc.submit(cid, ALICE)
    lc.approve(cid, BOB)
    fp = lc.strategy(cid).fingerprint()
    for bad in ("9999999", float("nan"), None, True):
        with pytest.raises(ValidationError, match=r"simulation\.spend"):
            lc.record_simulation(cid, ALICE, {"spend": bad, "reach": 1, "strategy_fingerprint": fp})
    assert lc.get(cid)["simulation"] is None


def test_http_specs_are_inline_never_file_paths(tmp_path):
    secret = tmp_path / "secret.yaml"
    secret.write_text("password: hunter2\n")
    with pytest.raises(ValidationError, match="must be a JSON object"):
        require_inline(str(secret))
    with pytest.raises(ValidationError, match="strategy must be an inline object"):
        require_inline({**make_spec(), "strategy": str(secret)})
    s = make_spec()
    s["strategy"]["rules"] = str(secret)
    with pytest.raises(ValidationError, match="rules must be an inline object"):
        require_inline(s)
    assert require_inline(make_spec())["strategy"]["name"]


def test_history_keeps_the_newest_rows(lifecycle):
    cid = _launched(lifecycle)
    log = lifecycle.db.audit_log(cid, limit=2)
    assert list(log["action"]) == ["campaign.simulate", "campaign.launch"]


def test_keys_record_their_last_use_and_made_up_ids_share_one_refusal_budget(db):
    ks = KeyStore(db, ttl=0, refusals_per_window=3, refusal_window=60)
    _, key = ks.create("shop", "app", Principal("root", "admin"))
    ks.authenticate(key)
    first = ks.list()[0]["last_used_at"]
    assert first is not None
    ks.authenticate(key)  # a cache miss (ttl=0) within touch_every writes nothing
    assert ks.list()[0]["last_used_at"] == first
    ks.touch_every = 0
    ks.authenticate(key)
    assert ks.list()[0]["last_used_at"] > first
    for i in range(50):  # a new made-up key id every time
        with pytest.raises(MktlabError):
            ks.authenticate(f"mk_{i:012x}_" + "z" * 32)
    log = db.audit_log(action="auth")
    assert len(log) == 3
    assert set(log["actor"]) == {"key:unknown"}


def test_whoever_wrote_a_version_cannot_approve_it(lifecycle):
    """An admin who edits someone else's draft is its version's author: another must approve."""
    from mktlab.campaigns.checks import CampaignRefused

    root = Principal("root", "admin")
    lc = lifecycle
    spec = make_spec()
    cid = lc.create(spec, ALICE)["campaign_id"]
    spec["name"] = "edited by root"
    lc.update(cid, spec, root, why="typo")
    lc.submit(cid, root)
    with pytest.raises(CampaignRefused, match="wrote version 2 and cannot approve it"):
        lc.approve(cid, root)
    assert lc.approve(cid, BOB)["state"] == "approved"
