"""Priority and fallback, frequency caps, dedupe, rate limits, bad batches."""

from __future__ import annotations

import time

import pytest

from mktlab.errors import NotFoundError, ServiceUnavailableError, ValidationError
from mktlab.messaging import (
    DeliveryLog,
    Gateway,
    LocalProvider,
    Message,
    Provider,
    ProviderResult,
    TemplateCatalog,
)
from mktlab.rules.model import FrequencyCap

T0 = 1_714_550_400.0  # 2024-05-01 08:00 UTC
HOUR, DAY = 3600.0, 86400.0


def m(key, user="u1", channels=("push", "sms"), ts=T0, template="reminder", **kw) -> Message:
    params = kw.pop("params", {"name": "Ada"})
    return Message(key, user, template, channels, ts, params=params, **kw)


def local(*channels, fail_users=()):
    return {c: LocalProvider(c, fail_users=fail_users) for c in channels}


class Exploding(Provider):
    """A provider with a bug: it raises instead of returning a result."""

    name = "exploding"

    def __init__(self):
        self.calls = 0

    def send(self, delivery):
        self.calls += 1
        raise RuntimeError("boom")


class Counting(Provider):
    """An external-style provider that counts calls and always succeeds."""

    name = "counting"

    def __init__(self):
        self.keys = []

    def send(self, delivery):
        self.keys.append(delivery.key)
        return ProviderResult(True, f"c-{len(self.keys)}")


def test_fallback_push_to_sms(log, templates):
    providers = {
        "push": LocalProvider("push", fail_users={"u-nopush"}),
        "sms": LocalProvider("sms"),
    }
    gw = Gateway(log, templates, providers=providers)
    ok = gw.send(m("k1"))
    assert (ok.status, ok.channel, ok.attempts) == ("sent", "push", (("push", "sent"),))
    fb = gw.send(m("k2", user="u-nopush"))
    assert (fb.status, fb.channel) == ("sent", "sms")
    assert fb.attempts == (("push", "failed"), ("sms", "sent"))
    assert "unreachable" in fb.reason
    att = log.attempts()
    k2 = att[att.key == "k2"]
    assert k2[["seq", "channel", "outcome"]].values.tolist() == [
        [0, "push", "failed"],
        [1, "sms", "sent"],
    ]
    assert k2.detail.iloc[0].startswith("local:push: user 'u-nopush'")
    box = log.inbox().set_index("key")
    assert box.loc["k2", "channel"] == "sms"
    assert box.loc["k1", "title"] == "Psst"
    assert box.loc["k1", "body"] == "Ada, your cart misses you"


def test_all_providers_fail_is_failed_with_reasons(log, templates):
    gw = Gateway(log, templates, providers=local("push", "sms", fail_users={"u1"}))
    r = gw.send(m("k1"))
    assert (r.status, r.channel) == ("failed", None)
    assert r.attempts == (("push", "failed"), ("sms", "failed"))
    assert "push: local:push" in r.reason
    assert "sms: local:sms" in r.reason
    assert log.inbox().empty
    assert log.counts()["by_status"] == {"failed": 1}


def test_template_channels_and_missing_provider(log, templates):
    gw = Gateway(log, templates, providers=local("push", "sms"))
    r = gw.send(m("otp1", template="otp", params={"code": 42}))  # otp allows sms only
    assert (r.status, r.channel) == ("sent", "sms")
    assert r.attempts == (("push", "not_allowed"), ("sms", "sent"))
    r = gw.send(m("otp2", template="otp", channels=("push",), params={"code": 1}))
    assert r.status == "suppressed"
    assert "does not allow push" in r.reason
    r = gw.send(m("w1", channels=("webhook",)))
    assert (r.status, r.attempts) == ("failed", (("webhook", "no_provider"),))
    assert "no provider for webhook" in r.reason


def test_cap_per_channel_falls_back_then_suppresses(log, templates):
    caps = [FrequencyCap("push", 1, "1d"), FrequencyCap("sms", 1, "1d")]
    gw = Gateway(log, templates, providers=local("push", "sms"), caps=caps)
    assert gw.send(m("k1", ts=T0)).channel == "push"
    second = gw.send(m("k2", ts=T0 + HOUR))
    assert (second.channel, second.attempts) == ("sms", (("push", "capped"), ("sms", "sent")))
    third = gw.send(m("k3", ts=T0 + 2 * HOUR))
    assert third.status == "suppressed"
    assert third.reason == "cap push 1/1d reached; cap sms 1/1d reached"
    # another user is not affected; the window is (ts - 1d, ts]
    assert gw.send(m("k4", user="u2", ts=T0 + 2 * HOUR)).channel == "push"
    assert gw.send(m("k5", ts=T0 + DAY - 1)).status == "suppressed"
    assert gw.send(m("k6", ts=T0 + DAY)).channel == "push"  # k1 left the window


def test_cap_across_channels(log, templates):
    caps = [FrequencyCap("*", 2, "7d")]
    gw = Gateway(log, templates, providers=local("push", "sms", "email"), caps=caps)
    assert gw.send(m("a", channels=("push",), ts=T0)).status == "sent"
    assert gw.send(m("b", channels=("email",), ts=T0 + DAY)).status == "sent"
    r = gw.send(m("c", channels=("sms", "email"), ts=T0 + 2 * DAY))
    assert r.status == "suppressed"
    assert r.reason == "cap * 2/1w reached; cap * 2/1w reached"
    assert gw.send(m("d", channels=("sms",), ts=T0 + 7 * DAY)).status == "sent"


def test_caps_count_only_sent_and_survive_restart(sqlite_log_url, templates):
    caps = [FrequencyCap("push", 1, "1d")]
    gw = Gateway(DeliveryLog(sqlite_log_url), templates,
                 providers=local("push", "sms", fail_users={"u1"}), caps=caps)  # fmt: skip
    assert gw.send(m("f1")).status == "failed"  # a failure does not count
    gw2 = Gateway(DeliveryLog(sqlite_log_url), templates, providers=local("push"), caps=caps)
    assert gw2.send(m("s1", channels=("push",))).status == "sent"
    # a new process (new log object) sees the cap the first one used up
    gw3 = Gateway(DeliveryLog(sqlite_log_url), templates, providers=local("push"), caps=caps)
    assert gw3.send(m("s2", channels=("push",), ts=T0 + 1)).reason == "cap push 1/1d reached"


def test_cap_zero_blocks(log, templates):
    gw = Gateway(
        log, templates, providers=local("push", "sms"), caps=[FrequencyCap("push", 0, "1d")]
    )
    assert gw.send(m("k")).channel == "sms"


def test_caps_within_one_batch(log, templates):
    gw = Gateway(log, templates, providers=local("push"), caps=[FrequencyCap("push", 2, "1d")])
    res = gw.send_many([m(f"k{i}", channels=("push",), ts=T0 + i) for i in range(5)])
    assert [r.status for r in res] == ["sent", "sent", "suppressed", "suppressed", "suppressed"]


def test_dedupe_returns_first_result_and_calls_nothing(log, templates):
    counting = Counting()
    gw = Gateway(log, templates, providers={"push": counting},
                 caps=[FrequencyCap("push", 1, "1d")])  # fmt: skip
    first = gw.send(m("k1", channels=("push",)))
    assert first.status == "sent"
    dup = gw.send(m("k1", channels=("push",)))
    assert dup.status == "duplicate"
    assert (dup.channel, dup.attempts) == (first.channel, first.attempts)
    assert dup.reason == "duplicate of a sent delivery"
    assert counting.keys == ["k1"]
    # inside one batch too; and a duplicate counts nothing against the cap
    res = gw.send_many(
        [m("k2", user="u2", channels=("push",)), m("k2", user="u2", channels=("push",))]
    )
    assert [r.status for r in res] == ["sent", "duplicate"]
    assert counting.keys == ["k1", "k2"]
    assert len(log.deliveries()) == 2
    # a suppressed result is remembered as such
    sup = gw.send(m("k3", channels=("push",), ts=T0 + 1))
    assert sup.status == "suppressed"
    again = gw.send(m("k3", channels=("push",), ts=T0 + 1))
    assert again.status == "duplicate"
    assert again.reason == "duplicate of a suppressed delivery: cap push 1/1d reached"


def test_provider_exception_is_a_failure_and_fallback_continues(log, templates):
    boom = Exploding()
    gw = Gateway(log, templates, providers={"push": boom, "sms": LocalProvider("sms")})
    r = gw.send(m("k1"))
    assert (r.status, r.channel, boom.calls) == ("sent", "sms", 1)
    assert "exploding raised RuntimeError: boom" in r.reason


def test_bad_batch_writes_nothing(log, templates):
    gw = Gateway(log, templates, providers=local("push"))
    good = m("ok", channels=("push",))
    with pytest.raises(
        ValidationError, match=r"template 'reminder': missing parameter\(s\) 'name'"
    ):
        gw.send_many([good, m("bad", channels=("push",), params={})])
    with pytest.raises(NotFoundError, match="template 'ghost' not found"):
        gw.send_many([good, m("bad", channels=("push",), template="ghost")])
    with pytest.raises(ValidationError, match="item 1 is not a Message"):
        gw.send_many([good, {"key": "x"}])
    assert log.deliveries().empty
    assert log.inbox().empty
    assert gw.send_many([]) == []


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"providers": {"fax": LocalProvider("push")}}, "unknown channel 'fax'"),
        ({"providers": {"sms": LocalProvider("push")}}, "serves channel 'push'"),
        ({"providers": {"sms": object()}}, r"providers\['sms'\]: expected a Provider"),
        ({"caps": [{"channel": "push"}]}, "caps: expected FrequencyCap"),
        ({"rate_limits": {"push": 0}}, r"rate_limits\['push'\]"),
        ({"rate_limits": {"telex": 1}}, "unknown channel 'telex'"),
        ({"quiet_hours": ("21:00", "08:00")}, "quiet_hours: expected QuietHours"),
    ],
)
def test_bad_gateway_config(log, templates, kw, match):
    with pytest.raises(ValidationError, match=match):
        Gateway(log, templates, **kw)


def test_local_rate_limit_moves_on_then_defers(log, templates):
    gw = Gateway(log, templates, providers=local("push", "sms"), rate_limits={"push": 3})
    res = gw.send_many([m(f"a{i}", user=f"u{i}") for i in range(5)])
    assert [r.channel for r in res] == ["push"] * 3 + ["sms"] * 2
    assert res[3].attempts == (("push", "rate_limited"), ("sms", "sent"))
    assert res[3].reason == "rate limit push 3/s"
    only_push = gw.send_many([m(f"b{i}", user=f"v{i}", channels=("push",)) for i in range(3)])
    deferred = [r for r in only_push if r.status == "deferred"]
    assert deferred, "push bucket was spent, so some messages wait"
    assert all(r.not_before == T0 + 1.0 for r in deferred)
    # flush at +1 s: the deferred ones go out (same keys) once the bucket has refilled
    time.sleep(1.1)
    flushed = gw.flush_due(T0 + 1.0)
    assert {r.key for r in flushed} == {r.key for r in deferred}
    assert all(r.status == "sent" for r in flushed)
    assert flushed[0].attempts[0] == ("push", "rate_limited")
    assert log.inbox()["key"].is_unique


def test_redis_rate_limit_is_shared_between_gateways(tmp_path, templates, redis_client, ns):
    def gateway(i):
        return Gateway(DeliveryLog(f"sqlite:///{tmp_path / f'd{i}.db'}"), templates,
                       providers=local("push", "sms"), rate_limits={"push": 5},
                       redis=redis_client, namespace=ns)  # fmt: skip

    g1, g2 = gateway(1), gateway(2)  # two workers, separate logs, one Redis
    r1 = g1.send_many([m(f"a{i}", user=f"u{i}") for i in range(3)])
    r2 = g2.send_many([m(f"b{i}", user=f"v{i}") for i in range(6)])
    pushes = sum(r.channel == "push" for r in r1 + r2)
    assert all(r.status == "sent" for r in r1 + r2)
    # 5 tokens plus whatever refilled (5/s) in the few milliseconds between the batches
    assert 5 <= pushes <= 6
    assert [r.channel for r in r1] == ["push"] * 3
    assert redis_client.exists(f"{ns}:rate:push")


def test_redis_down_means_nothing_sent(log, templates):
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    dead = redis.Redis(
        host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )
    gw = Gateway(log, templates, providers=local("push"), rate_limits={"push": 5}, redis=dead)
    with pytest.raises(ServiceUnavailableError, match="Redis is unreachable"):
        gw.send(m("k1", channels=("push",)))
    assert log.inbox().empty
    assert log.deliveries().empty


def test_default_gateway(workspace, templates):
    gw = Gateway.default({"hi": "Hello {name}"})
    try:
        assert sorted(gw.providers) == ["email", "inapp", "push", "sms", "wechat"]
        assert str(workspace) in gw.log.url
        r = gw.send(Message("d1", "u1", "hi", ("webhook", "wechat"), T0, params={"name": "Mo"}))
        assert (r.status, r.channel) == ("sent", "wechat")
        assert r.attempts[0] == ("webhook", "no_provider")
    finally:
        gw.close()
    text = "greet: 'Hey {name}'\n"
    gw = Gateway.default(text, url=f"sqlite:///{workspace / 'other.db'}")
    assert gw.templates.names() == ["greet"]
    gw.close()


def test_local_provider_outside_gateway_refuses():
    from mktlab.messaging import Delivery

    with pytest.raises(ValidationError, match="needs the gateway's open transaction"):
        LocalProvider("push").send(Delivery("k", "u", "push", "t", "body"))
    with pytest.raises(ValidationError, match="unknown channel 'fax'"):
        LocalProvider("fax")


def test_catalog_mapping_accepted(log):
    gw = Gateway(log, {"hi": "Hello"})
    assert isinstance(gw.templates, TemplateCatalog)
