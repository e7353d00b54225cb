"""The delivery log on SQLite and PostgreSQL: what a notebook reads, receipts, counts."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from mktlab.errors import NotFoundError, ServiceUnavailableError, ValidationError
from mktlab.messaging import DeliveryLog, Gateway, LocalProvider, Message, QuietHours
from mktlab.messaging.log import DELIVERY_COLUMNS
from mktlab.rules.model import FrequencyCap

T0 = 1_714_550_400.0  # 2024-05-01 08:00 UTC


def scenario(log, templates) -> Gateway:
    gw = Gateway(log, templates,
                 providers={"push": LocalProvider("push", fail_users={"u3"}), "sms": LocalProvider("sms")},
                 caps=[FrequencyCap("push", 1, "1d")], quiet_hours=QuietHours("21:00", "08:00"))  # fmt: skip
    msgs = [
        Message("a", "u1", "news", ("push", "sms"), T0, campaign_id="spring"),
        Message("b", "u1", "news", ("push", "sms"), T0 + 60, campaign_id="spring"),
        Message("c", "u2", "news", ("push",), T0 + 14 * 3600, campaign_id="summer"),  # 22:00
        Message("d", "u3", "news", ("push",), T0, campaign_id="spring"),
    ]
    res = gw.send_many(msgs)
    assert [r.status for r in res] == ["sent", "sent", "deferred", "failed"]
    return gw


def test_deliveries_attempts_inbox_frames(any_log, templates):
    scenario(any_log, templates)
    df = any_log.deliveries()
    assert list(df.columns) == list(DELIVERY_COLUMNS)
    assert sorted(df.key) == ["a", "b", "c", "d"]
    spring = any_log.deliveries(campaign_id="spring")
    assert sorted(spring.key) == ["a", "b", "d"]
    u1 = any_log.deliveries(user_id="u1").set_index("key")
    assert u1.loc["a", "channel"] == "push"
    assert u1.loc["b", "channel"] == "sms"
    assert u1.loc["b", "reason"] == "cap push 1/1d reached"
    assert any_log.deliveries(campaign_id="none").empty
    att = any_log.attempts()
    assert att[att.key == "b"].outcome.tolist() == ["capped", "sent"]
    assert any_log.inbox(user_id="u1").channel.tolist() == ["push", "sms"]


def test_flush_due_on_each_engine(any_log, templates):
    gw = scenario(any_log, templates)
    morning = T0 + 24 * 3600  # 08:00 next day
    assert gw.flush_due(morning - 1) == []
    [r] = gw.flush_due(morning)
    assert (r.key, r.status, r.channel) == ("c", "sent", "push")
    row = any_log.deliveries(user_id="u2").iloc[0]
    assert (row.status, row.sent_ts) == ("sent", morning)
    assert pd.isna(row.not_before)


def test_receipts(any_log, templates):
    scenario(any_log, templates)
    any_log.record_receipt("a", "delivered", T0 + 1)
    any_log.record_receipt("a", "opened", T0 + 30)
    any_log.record_receipt("b", "clicked", T0 + 90)
    rec = any_log.receipts()
    assert rec[["key", "status", "ts"]].values.tolist() == [
        ["a", "delivered", T0 + 1], ["a", "opened", T0 + 30], ["b", "clicked", T0 + 90],
    ]  # fmt: skip
    with pytest.raises(NotFoundError, match="no delivery with key 'zzz'"):
        any_log.record_receipt("zzz", "opened", T0)
    with pytest.raises(ValidationError, match=r"receipt\.status"):
        any_log.record_receipt("a", "liked", T0)
    with pytest.raises(ValidationError, match=r"receipt\.ts"):
        any_log.record_receipt("a", "opened", math.nan)
    assert len(any_log.receipts()) == 3
    assert any_log.counts()["receipts"] == {"delivered": 1, "opened": 1, "clicked": 1}


def test_counts_by_status_and_channel(any_log, templates):
    scenario(any_log, templates)
    c = any_log.counts()
    assert c["total"] == 4
    assert c["by_status"] == {"sent": 2, "deferred": 1, "failed": 1}
    assert c["by_channel"] == {"push": 1, "sms": 1}
    assert c["by_status_channel"]["sent"] == {"push": 1, "sms": 1}
    assert c["by_status_channel"]["failed"] == {"none": 1}


def test_empty_log_reads(any_log):
    assert any_log.deliveries().empty
    assert any_log.counts() == {"total": 0, "by_status": {}, "by_channel": {},
                                "by_status_channel": {}, "receipts": {}}  # fmt: skip
    assert any_log.ping()


def test_default_url_comes_from_settings(workspace):
    log = DeliveryLog()
    assert log.url.endswith("data/processed/deliveries.db")
    assert str(workspace) in log.url
    log.dispose()


def test_unreachable_database_is_service_unavailable(templates):
    log = DeliveryLog("postgresql://nobody@127.0.0.1:1/none")
    assert not log.ping()
    with pytest.raises(ServiceUnavailableError, match="unreachable"):
        log.deliveries()
    gw = Gateway(log, templates)
    with pytest.raises(ServiceUnavailableError, match="unreachable"):
        gw.send(Message("k", "u", "news", ("push",), T0))
