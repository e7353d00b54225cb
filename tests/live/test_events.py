"""Events: the value object, the parser's refusals (one per reason), partition stability."""

from __future__ import annotations

import json
import math
import pickle
import subprocess
import sys

import numpy as np
import pytest

from mktlab.errors import ValidationError
from mktlab.live.events import REASONS, BadEvent, Event, parse_event, partition_of

TS = 1_800_000_000.0


def ok(**kw) -> dict:
    return {"user_id": "u1", "event": "view", "ts": TS, **kw}


# --- refusals: each reason, naming the field ------------------------------------------
BAD = [
    (b"{not json", "not_json", None),
    (b"[1, 2]", "not_json", None),
    (b'{"user_id": "u1", "event": "v", "ts": NaN}', "not_json", None),
    (b"\xff\xfe", "not_json", None),
    (42, "not_json", None),
    ({"event": "view", "ts": TS}, "no_user_id", "user_id"),
    (ok(user_id=""), "no_user_id", "user_id"),
    (ok(user_id=None), "no_user_id", "user_id"),
    (ok(user_id="u1\n"), "bad_field", "user_id"),  # fullmatch: no trailing newline
    (ok(user_id="has space"), "bad_field", "user_id"),
    (ok(user_id=17), "bad_field", "user_id"),
    (ok(user_id="x" * 129), "bad_field", "user_id"),
    ({"user_id": "u1", "event": "view"}, "bad_timestamp", "ts"),
    (ok(ts="yesterday"), "bad_timestamp", "ts"),
    (ok(ts="2026-12-07T10:00:00"), "bad_timestamp", "ts"),  # no UTC offset
    (ok(ts=1_800_000_000_000), "bad_timestamp", "ts"),  # milliseconds
    (ok(ts=0), "bad_timestamp", "ts"),
    (ok(ts=math.inf), "bad_timestamp", "ts"),
    (ok(ts=math.nan), "bad_timestamp", "ts"),
    (ok(ts=True), "bad_timestamp", "ts"),
    ({"user_id": "u1", "ts": TS}, "bad_field", "event"),
    (ok(event=""), "bad_field", "event"),
    (ok(event=" view"), "bad_field", "event"),
    (ok(event=3), "bad_field", "event"),
    (ok(event_id="has space"), "bad_field", "event_id"),
    (ok(props=[1]), "bad_field", "props"),
    (ok(props={"a": 1}, a=2), "bad_field", "a"),
    (ok(props={1: "x"}), "bad_field", "props"),
    (ok(when=object()), "bad_field", "props"),
    (ok(x=math.nan), "bad_field", "props"),
    (ok(blob="x" * 9000), "oversized", None),
    (json.dumps(ok(blob="x" * 9000)).encode(), "oversized", None),
]


@pytest.mark.parametrize(("raw", "reason", "field"), BAD)
def test_parse_event_refuses_with_reason_and_field(raw, reason, field):
    with pytest.raises(BadEvent) as info:
        parse_event(raw)
    assert info.value.reason == reason
    assert info.value.field == field
    assert reason in REASONS
    if field is not None:
        assert field in str(info.value)
    assert isinstance(info.value, ValidationError)


def test_unknown_event_only_when_a_catalogue_is_given():
    assert parse_event(ok(event="zap")).event == "zap"
    with pytest.raises(BadEvent) as info:
        parse_event(ok(event="zap"), known_events={"view", "purchase"})
    assert (info.value.reason, info.value.field) == ("unknown_event", "event")


def test_every_reason_is_exercised():
    assert {r for _, r, _ in BAD} | {"unknown_event"} == set(REASONS)


def test_max_bytes_is_a_parameter():
    raw = json.dumps(ok(note="x" * 200)).encode()
    assert parse_event(raw).props["note"] == "x" * 200
    with pytest.raises(BadEvent, match="max_bytes=100"):
        parse_event(raw, max_bytes=100)


# --- accepted input ----------------------------------------------------------------------
def test_accepts_bytes_text_and_mappings_alike():
    as_dict = parse_event(ok(event_id="e1", sku="a"))
    assert parse_event(json.dumps(ok(event_id="e1", sku="a"))) == as_dict
    assert parse_event(json.dumps(ok(event_id="e1", sku="a")).encode()) == as_dict
    assert as_dict.props == {"sku": "a"}


def test_iso_timestamps_with_offset_are_epoch_seconds():
    a = parse_event(ok(ts="2026-12-07T10:00:00+08:00"))
    b = parse_event(ok(ts="2026-12-07T02:00:00Z"))
    assert a.ts == b.ts == 1796608800.0


def test_other_keys_and_a_props_object_merge_into_props():
    ev = parse_event(ok(props={"a": 1}, b=2))
    assert dict(ev.props) == {"a": 1, "b": 2}


def test_missing_event_id_is_deterministic_over_the_payload():
    a = parse_event(ok(sku="a"))
    assert a.event_id == parse_event(ok(sku="a")).event_id
    assert len(a.event_id) == 40
    # the same instant written three ways is the same event
    assert a.event_id == parse_event(ok(ts=int(TS), sku="a")).event_id
    assert a.event_id == parse_event(ok(ts="2027-01-15T08:00:00+00:00", sku="a")).event_id
    assert a.event_id != parse_event(ok(sku="b")).event_id
    assert a.event_id != parse_event(ok(user_id="u2", sku="a")).event_id
    assert parse_event(ok(event_id=7)).event_id == "7"


def test_json_round_trip_and_canonical_bytes():
    ev = Event("e1", "u1", TS, "purchase", {"amount": 12.5, "items": ["a", "b"], "ok": True})
    data = ev.to_json()
    assert Event.from_json(data) == ev
    assert Event.from_json(data).to_json() == data
    assert json.loads(data)["props"] == {"amount": 12.5, "items": ["a", "b"], "ok": True}


def test_event_is_a_frozen_validated_value_object():
    props = {"a": 1}
    ev = Event("e1", "u1", int(TS), "view", props)
    assert type(ev.ts) is float
    props["a"] = 2  # the event keeps its own copy
    assert ev.props["a"] == 1
    with pytest.raises(TypeError):
        ev.props["a"] = 3
    with pytest.raises(AttributeError):
        ev.user_id = "u2"
    with pytest.raises(BadEvent) as info:
        Event("e1", "u 1", TS, "view")
    assert info.value.field == "user_id"
    assert pickle.loads(pickle.dumps(ev)) == ev
    err = pickle.loads(pickle.dumps(BadEvent("x", reason="oversized", index=3)))
    assert (err.reason, err.index) == ("oversized", 3)


# --- partitions ----------------------------------------------------------------------
IDS = ["u1", "u42", "user-00017", "a@b.c", "x" * 128]


def test_partition_of_is_pinned():
    # pinned values: changing the hash would move users between partitions (and reorder them)
    assert [partition_of(i, 8) for i in IDS] == [5, 2, 1, 4, 2]
    assert [partition_of(i, 1024) for i in IDS] == [707, 269, 246, 584, 274]


def test_partition_of_scalar_equals_vectorised_and_murmur3():
    from mktlab.experiments._hash import murmur3_32

    ids = [f"user-{i}" for i in range(2000)] + ["", "é", "a" * 7]
    vec = partition_of(ids, 16)
    assert isinstance(vec, np.ndarray)
    assert vec.tolist() == [partition_of(i, 16) for i in ids]
    h = murmur3_32(ids, "bus").astype(np.uint64)
    assert vec.tolist() == ((h * np.uint64(16)) >> np.uint64(32)).tolist()
    assert vec.min() >= 0
    assert vec.max() < 16
    assert len(set(vec.tolist())) == 16  # every partition gets users


def test_partition_of_is_stable_across_processes():
    code = (
        f"from mktlab.live.events import partition_of;print([partition_of(i, 8) for i in {IDS!r}])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        env={"PYTHONHASHSEED": "123", "PATH": ""},
    ).stdout  # fmt: skip
    assert out.strip() == str([partition_of(i, 8) for i in IDS])


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "8"])
def test_partition_of_validates_the_count(bad):
    with pytest.raises(ValidationError, match="partitions"):
        partition_of("u1", bad)
