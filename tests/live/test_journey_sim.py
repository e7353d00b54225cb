"""The in-memory journey simulation on a hand-made log, and the journey diagrams."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

from mktlab.errors import NotFoundError, SchemaError, ValidationError
from mktlab.live.diagram import draw, layout, to_mermaid
from mktlab.live.journey import Journey
from mktlab.live.journey_sim import SimpleContext, simulate

T0 = datetime(2026, 1, 5, tzinfo=UTC).timestamp()
DAY = 86400
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "journeys"

WELCOME = Journey.from_yaml("""
name: j
campaign_id: c1
nodes:
  - {id: start, type: entry, event: signup, next: pause}
  - {id: pause, type: delay, duration: 1d, next: hello}
  - {id: hello, type: message, template: welcome, next: wait}
  - id: wait
    type: wait
    event: order
    where: [{field: event.amount, op: ">", value: 0}]
    timeout: 3d
    on_event: thanks
    on_timeout: gift
  - {id: thanks, type: update, set: {lifecycle: active}, next: done}
  - {id: gift, type: coupon, value: 5, next: done}
  - {id: done, type: exit}
""")


def log() -> pd.DataFrame:
    rows = [
        ("s1", "u1", T0, "signup", None),
        ("s2", "u2", T0 + 3600, "signup", None),
        ("s3", "u3", T0 + 7200, "signup", None),
        ("x3", "u3", T0 + 10800, "order", 12.0),  # during the delay: not awaited yet
        ("v4", "u4", T0 + 20000, "page_view", None),  # never enters
        ("z3", "u3", T0 + 7200 + DAY + 60, "order", 0.0),  # fails the wait's condition
        ("o1", "u1", T0 + 2 * DAY, "order", 20.0),
        ("s1b", "u1", T0 + 10 * DAY, "signup", None),  # reentry: never
    ]
    df = pd.DataFrame(rows, columns=["event_id", "user_id", "ts", "event", "amount"])
    return df.sample(frac=1.0, random_state=3)  # order of rows must not matter, only ts


EXPECTED = [
    ("message", f"j:v1:hello:u1:timer@{int(T0) + DAY}", T0 + DAY),
    ("message", f"j:v1:hello:u2:timer@{int(T0) + 3600 + DAY}", T0 + 3600 + DAY),
    ("message", f"j:v1:hello:u3:timer@{int(T0) + 7200 + DAY}", T0 + 7200 + DAY),
    ("update", "j:v1:thanks:u1:o1", T0 + 2 * DAY),
    ("coupon", f"j:v1:gift:u2:timer@{int(T0) + 3600 + 4 * DAY}", T0 + 3600 + 4 * DAY),
    ("coupon", f"j:v1:gift:u3:timer@{int(T0) + 7200 + 4 * DAY}", T0 + 7200 + 4 * DAY),
]


def test_simulation_exact_effects_and_decisions():
    res = simulate([WELCOME], log(), SimpleContext())
    assert list(res.effects[["kind", "key", "ts"]].itertuples(index=False, name=None)) == EXPECTED
    assert res.effects["payload"].iloc[-1] == {"campaign": "c1", "value": 5.0}
    u1 = res.decisions[res.decisions["user_id"] == "u1"]
    assert list(zip(u1["node_id"], u1["action"], strict=True)) == [
        ("start", "enter"), ("pause", "delay"), ("hello", "message"), ("wait", "wait"),
        ("wait", "resume"), ("thanks", "update"), ("done", "exit"),
    ]  # fmt: skip
    assert res.decisions["ts"].is_monotonic_increasing
    assert not (res.decisions["user_id"] == "u4").any()
    assert all(s.done for s in res.states.values())
    assert len(res.states) == 3
    assert res.node_counts("j") == {"start": 3, "pause": 3, "hello": 3, "wait": 3, "thanks": 1,
                                    "done": 3, "gift": 2}  # fmt: skip


def test_simulation_until_stops_events_and_timers():
    res = simulate([WELCOME], log(), SimpleContext(), until=T0 + 3 * DAY)
    assert list(res.effects["key"]) == [k for _, k, _ in EXPECTED[:4]]
    waiting = {u for (_, u), s in res.states.items() if s.waiting}
    assert waiting == {"u2", "u3"}


def test_simulation_reads_timestamps_and_makes_event_ids():
    df = log().drop(columns="event_id")
    df["ts"] = pd.to_datetime(df["ts"], unit="s", utc=True)
    res = simulate(WELCOME, df, SimpleContext())
    assert [k.rsplit(":", 1)[0] for k in res.effects["key"]] == [
        k.rsplit(":", 1)[0] for _, k, _ in EXPECTED
    ]
    assert res.effects["key"].iloc[3].startswith("j:v1:thanks:u1:row")


def test_simulation_errors():
    with pytest.raises(SchemaError, match="'event'"):
        simulate([WELCOME], log().drop(columns="event"), SimpleContext())
    with pytest.raises(ValidationError, match="unique"):
        simulate([WELCOME, WELCOME], log(), SimpleContext())
    aud = Journey.from_dict(WELCOME.to_dict() | {"name": "a"})
    aud = Journey.from_dict(
        aud.to_dict()
        | {
            "nodes": [
                {"id": "start", "type": "entry", "audience": "vip", "next": "pause"},
                *aud.to_dict()["nodes"][1:],
            ]
        }
    )
    with pytest.raises(NotFoundError, match="audience 'vip'"):
        simulate([aud], log(), SimpleContext())


def test_simulation_of_the_examples_logs_propensities():
    journeys = [Journey.from_yaml(p) for p in sorted(EXAMPLES.glob("*.yaml"))]
    rows = []
    for u in range(60):
        t = T0 + 8 * 3600 + u * 30
        rows += [(f"u{u}", t + k * 60, "view", "shoes", None, None) for k in range(3)]
        rows += [(f"u{u}", t, "signup", None, None, "Asia/Tokyo" if u % 2 else None)]
        rows += [(f"u{u}", t + 5, "app_open", None, None, None)]
        if u % 5 == 0:
            rows += [(f"u{u}", t + 2 * DAY, "order", None, 30.0, None)]
    df = pd.DataFrame(rows, columns=["user_id", "ts", "event", "category", "amount", "tz"])
    ctx = SimpleContext(audiences={"churn_risk": {f"u{u}" for u in range(0, 60, 2)}},
                        uplift={f"u{u}": 0.01 * (u % 4) for u in range(60)})  # fmt: skip
    res = simulate(journeys, df, ctx)
    d = res.decisions
    assert set(d["journey"]) == {"welcome", "winback", "browse-abandon"}
    splits = d[d["action"] == "split"]
    props = splits.groupby(["node_id", "arm"])["propensity"].first().to_dict()
    assert props[("holdout", "holdout")] == pytest.approx(0.1)
    assert props[("holdout", "treated")] == pytest.approx(0.9)
    assert props[("offer_ab", "coupon")] == pytest.approx(0.5)
    assert props[("persuadable", "yes")] == 1.0
    coupons = d[(d["journey"] == "browse-abandon") & (d["action"] == "coupon")]
    assert len(coupons)
    assert np.allclose(coupons["propensity"], 0.45)
    assert not coupons["holdout"].any()
    assert set(res.effects["kind"]) == {"coupon", "message", "update"}
    assert res.effects["key"].is_unique
    # same log, same context state: same result (the simulation is deterministic)
    ctx.reset()
    again = simulate(journeys, df, ctx)
    pd.testing.assert_frame_equal(again.decisions, res.decisions)


# ---------------------------------------------------------------------------- diagram
@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.stem)
def test_draw_renders_every_node_and_mermaid_has_every_edge(path):
    matplotlib.use("Agg")
    j = Journey.from_yaml(path)
    counts = {n.id: 7 for n in j.nodes}
    fig = draw(j, counts=counts)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"
    texts = [t.get_text() for t in fig.axes[0].texts]
    for n in j.nodes:
        assert any(t.startswith(f"{n.type}: {n.id}") and "n = 7" in t for t in texts), n.id
    labels = {lab for _, lab, _ in j.edges() if lab != "next"}
    assert labels <= set(texts)
    text = to_mermaid(j)
    assert text.startswith("flowchart LR\n")
    ids = dict(re.findall(r"^    (\w+)[\[\(\{]+\"(?:\w+): ([\w.-]+)", text, re.M))
    inv = {v: k for k, v in ids.items()}
    assert set(inv) == {n.id for n in j.nodes}
    for src, label, dst in j.edges():
        arrow = "-->" if label == "next" else f"-->|{label}|"
        assert f"    {inv[src]} {arrow} {inv[dst]}\n" in text


def test_layout_columns_and_drawing_into_given_axes():
    from matplotlib.figure import Figure

    pos = layout(WELCOME)
    assert [pos[n][0] for n in ("start", "pause", "hello", "wait")] == [0, 1, 2, 3]
    assert pos["done"][0] > max(pos["thanks"][0], pos["gift"][0])
    fig = Figure()
    ax = fig.add_subplot()
    assert draw(WELCOME, ax) is fig
    loop = Journey.from_yaml("""
name: end
nodes:
  - {id: start, type: entry, event: a, next: end}
  - {id: end, type: wait, event: b, timeout: 1d, on_event: end, on_timeout: x}
  - {id: x, type: exit}
""")
    m = to_mermaid(loop)  # 'end' is a Mermaid keyword: renamed, loop edge kept
    assert "n_end -->|on_event| n_end" in m
    draw(loop).savefig(io.BytesIO(), format="png")
