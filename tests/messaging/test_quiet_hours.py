"""Quiet hours in the user's zone: same-day and midnight-crossing windows, DST, deferral."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from mktlab.errors import ValidationError
from mktlab.messaging import Gateway, LocalProvider, Message, QuietHours

NY = ZoneInfo("America/New_York")
SH = ZoneInfo("Asia/Shanghai")
UTC = ZoneInfo("UTC")


def at(tz, *args, fold=0) -> float:
    return datetime(*args, tzinfo=tz, fold=fold).timestamp()


def test_same_day_window():
    q = QuietHours("12:00", "14:00")
    assert not q.crosses_midnight
    assert q.window_end(at(UTC, 2024, 5, 1, 13, 0), UTC) == at(UTC, 2024, 5, 1, 14, 0)
    assert q.window_end(at(UTC, 2024, 5, 1, 12, 0), UTC) == at(UTC, 2024, 5, 1, 14, 0)
    assert q.window_end(at(UTC, 2024, 5, 1, 14, 0), UTC) is None  # end is exclusive
    assert q.window_end(at(UTC, 2024, 5, 1, 11, 59), UTC) is None


def test_window_crossing_midnight_in_users_zone():
    q = QuietHours("21:00", "08:00")
    assert q.crosses_midnight
    # evening part: ends tomorrow 08:00 local
    assert q.window_end(at(SH, 2024, 5, 1, 22, 30), SH) == at(SH, 2024, 5, 2, 8, 0)
    assert q.window_end(at(SH, 2024, 5, 1, 21, 0), SH) == at(SH, 2024, 5, 2, 8, 0)
    # morning part: ends today 08:00 local
    assert q.window_end(at(SH, 2024, 5, 2, 3, 0), SH) == at(SH, 2024, 5, 2, 8, 0)
    assert q.window_end(at(SH, 2024, 5, 2, 8, 0), SH) is None
    assert q.window_end(at(SH, 2024, 5, 2, 20, 59), SH) is None
    # the same instant is daytime in New York (08:30 EDT on 1 May)
    assert q.window_end(at(SH, 2024, 5, 1, 20, 30), NY) is None


def test_dst_nights_are_shorter_and_longer():
    q = QuietHours("21:00", "08:00")
    # spring forward (10 March 2024, 02:00 -> 03:00): the night lasts 10 hours
    start = at(NY, 2024, 3, 9, 21, 0)
    end = q.window_end(start, NY)
    assert end == at(NY, 2024, 3, 10, 8, 0)
    assert end - start == 10 * 3600
    assert end == datetime(2024, 3, 10, 12, 0, tzinfo=UTC).timestamp()  # 08:00 EDT
    # fall back (3 November 2024, 02:00 -> 01:00): 12 hours
    start = at(NY, 2024, 11, 2, 21, 0)
    end = q.window_end(start, NY)
    assert end - start == 12 * 3600
    assert end == datetime(2024, 11, 3, 13, 0, tzinfo=UTC).timestamp()  # 08:00 EST
    # a message in the small hours of the DST night ends at the same 08:00
    assert q.window_end(at(NY, 2024, 3, 10, 3, 30), NY) == at(NY, 2024, 3, 10, 8, 0)


def test_end_in_dst_gap_and_in_repeated_hour():
    # 02:30 does not exist on 10 March 2024 in New York: the window ends when clocks jump
    q = QuietHours("00:00", "02:30")
    end = q.window_end(at(NY, 2024, 3, 10, 1, 0), NY)
    assert end == datetime(2024, 3, 10, 7, 0, tzinfo=UTC).timestamp()  # 03:00 EDT
    # 01:30 happens twice on 3 November 2024: the first one still ahead ends the window
    q = QuietHours("00:00", "01:30")
    first = at(NY, 2024, 11, 3, 1, 10, fold=0)
    second = at(NY, 2024, 11, 3, 1, 10, fold=1)
    assert second - first == 3600
    assert q.window_end(first, NY) == at(NY, 2024, 11, 3, 1, 30, fold=0)
    assert q.window_end(second, NY) == at(NY, 2024, 11, 3, 1, 30, fold=1)


@pytest.mark.parametrize(
    ("start", "end", "match"),
    [("25:00", "08:00", "quiet_hours.start"), ("21:00", "8", "quiet_hours.end"),
     ("21:00", "21:00", "both '21:00'"), (2100, "08:00", "quiet_hours.start")],
)  # fmt: skip
def test_bad_quiet_hours(start, end, match):
    with pytest.raises(ValidationError, match=match):
        QuietHours(start, end)


def test_gateway_defers_then_flush_due_sends_same_key(log, templates):
    gw = Gateway(log, templates, providers={"push": LocalProvider("push")},
                 quiet_hours=QuietHours("21:00", "08:00"), default_tz="Asia/Shanghai")  # fmt: skip
    night = at(SH, 2024, 5, 1, 23, 15)
    morning = at(SH, 2024, 5, 2, 8, 0)
    m = Message("q1", "u1", "reminder", ("push",), night, params={"name": "Li"})
    r = gw.send(m)
    assert r.status == "deferred"
    assert r.not_before == morning
    assert "quiet hours 21:00-08:00 Asia/Shanghai" in r.reason
    assert log.inbox().empty
    again = gw.send(m)
    assert again.status == "duplicate"
    assert again.not_before == morning
    assert gw.flush_due(morning - 1) == []
    [done] = gw.flush_due(morning)
    assert (done.key, done.status, done.channel) == ("q1", "sent", "push")
    box = log.inbox()
    assert box["key"].tolist() == ["q1"]
    assert box["body"].tolist() == ["Li, your cart misses you"]
    assert box["ts"].tolist() == [morning]
    row = log.deliveries().iloc[0]
    assert (row.status, row.sent_ts, row.ts) == ("sent", morning, night)
    assert gw.flush_due(morning + 3600) == []
    assert gw.send(m).status == "duplicate"
    assert len(log.inbox()) == 1


def test_message_tz_overrides_default(log, templates):
    gw = Gateway(log, templates, quiet_hours=QuietHours("21:00", "08:00"), default_tz="UTC")
    ts = at(UTC, 2024, 5, 1, 12, 0)  # noon UTC: 20:00 in Shanghai, 21:00 (quiet) in Tokyo
    assert gw.send(Message("a", "u", "news", ("push",), ts)).status == "sent"
    assert gw.send(Message("b", "u", "news", ("push",), ts, tz="Asia/Shanghai")).status == "sent"
    r = gw.send(Message("c", "u", "news", ("push",), ts, tz="Asia/Tokyo"))
    assert r.status == "deferred"
    assert r.not_before == at(ZoneInfo("Asia/Tokyo"), 2024, 5, 2, 8, 0)


def test_unknown_default_tz(log, templates):
    with pytest.raises(ValidationError, match="unknown time zone 'Nowhere/City'"):
        Gateway(log, templates, default_tz="Nowhere/City")
