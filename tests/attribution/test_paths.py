from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mktlab.attribution import Paths, as_paths
from mktlab.errors import DataError, SchemaError, ValidationError


def test_from_frame_parses_paths_and_weights():
    df = pd.DataFrame(
        {"path": ["A", "M", "A > M", "A"], "conversions": [2, 1, 1, 0], "nulls": [0, 0, 0, 1]}
    )
    p = Paths.from_frame(df)
    assert p.channels == ("A", "M")
    assert p.lengths.tolist() == [1, 1, 2, 1]
    assert p.touches.tolist() == [0, 1, 0, 1, 0]
    assert p.total_conversions == 4
    assert p.value.tolist() == [2, 1, 1, 0]  # no value column: value = conversions
    assert p.nulls.tolist() == [0, 0, 0, 1]


@pytest.mark.parametrize("sep", [">", "|", " -> ", ","])
def test_custom_separator_and_whitespace(sep):
    df = pd.DataFrame({"path": [f"x{sep}y {sep} z", "y"], "conversions": [1, 2]})
    p = Paths.from_frame(df, sep=sep)
    assert sorted(p.channels) == ["x", "y", "z"]
    assert p.lengths.tolist() == [3, 1]


def test_list_paths_and_fixed_channels():
    df = pd.DataFrame({"path": [["a", "b"], ["b"]], "conversions": [1.0, 0.0], "nulls": [0, 3]})
    p = Paths.from_frame(df, channels=["z", "a", "b"])
    assert p.channels == ("z", "a", "b")
    assert p.touches.tolist() == [1, 2, 2]


def test_to_frame_round_trip_aggregates():
    p = Paths.from_lists([["a", "b"], ["a", "b"], ["c"]], [1, 0, 2], [5, 0, 7], [0, 1, 0])
    df = p.to_frame()
    assert df.set_index("path").to_dict("index") == {
        "a > b": {"conversions": 1.0, "value": 5.0, "nulls": 1.0},
        "c": {"conversions": 2.0, "value": 7.0, "nulls": 0.0},
    }
    again = Paths.from_frame(df)
    assert again.total_conversions == 3
    assert again.total_value == 12


BAD_FRAMES = [
    (pd.DataFrame({"path": [], "conversions": []}), DataError, "no rows"),
    (pd.DataFrame({"path": ["a", ""], "conversions": [1, 1]}), DataError, "empty"),
    (pd.DataFrame({"path": ["a >  > b"], "conversions": [1]}), DataError, "empty channel"),
    (pd.DataFrame({"path": ["a", None], "conversions": [1, 1]}), DataError, "missing path"),
    (pd.DataFrame({"path": ["a", "b"], "conversions": [1, -2]}), ValidationError, "negative"),
    (
        pd.DataFrame({"path": ["a", "b"], "conversions": [1, 1], "nulls": [0, -1]}),
        ValidationError,
        "nulls",
    ),
    (pd.DataFrame({"path": ["a", "b"], "conversions": [1, np.nan]}), ValidationError, "non-finite"),
    (pd.DataFrame({"path": ["a > start"], "conversions": [1]}), ValidationError, "reserved"),
    (pd.DataFrame({"path": ["Conversion"], "conversions": [1]}), ValidationError, "reserved"),
    (pd.DataFrame({"path": ["a > null"], "conversions": [1]}), ValidationError, "reserved"),
    (pd.DataFrame({"path": ["a|b"], "conversions": [1]}), ValidationError, "separator"),
    (pd.DataFrame({"p": ["a"], "conversions": [1]}), SchemaError, "path"),
]


@pytest.mark.parametrize(("df", "exc", "match"), BAD_FRAMES)
def test_bad_frames_raise_clear_errors(df, exc, match):
    with pytest.raises(exc, match=match):
        Paths.from_frame(df)


@pytest.mark.parametrize("sep", ["", None])
def test_bad_separator_argument(sep):
    with pytest.raises(ValidationError, match="sep"):
        Paths.from_frame(pd.DataFrame({"path": ["a"], "conversions": [1]}), sep=sep)


def test_as_paths_rejects_other_types():
    with pytest.raises(ValidationError, match="expected Paths"):
        as_paths(42)


def _touches():
    day = pd.Timestamp("2026-01-01")
    t = pd.DataFrame(
        {
            "journey_id": [1, 1, 1, 1, 2, 2, 3],
            "ts": [
                day,
                day + pd.Timedelta(days=20),
                day + pd.Timedelta(days=28),
                day + pd.Timedelta(days=40),
                day,
                day + pd.Timedelta(days=1),
                day,
            ],
            "channel": ["email", "search", "social", "push", "display", "search", "sms"],
        }
    ).sample(frac=1.0, random_state=3)  # order of rows must not matter
    c = pd.DataFrame(
        {
            "journey_id": [1, 2, 4],
            "converted": [True, False, True],
            "value": [30.0, 0.0, 9.0],
            "ts": [day + pd.Timedelta(days=30), day + pd.Timedelta(days=2), day],
        }
    )
    return t, c


def test_from_touches_orders_cuts_and_windows():
    t, c = _touches()
    p = Paths.from_touches(t, c)
    df = p.to_frame(aggregate=False)
    # journey 1 is cut at its conversion (push after it is dropped); 2 did not convert
    assert df["path"].tolist() == ["email > search > social", "display > search", "sms"]
    assert df["conversions"].tolist() == [1, 0, 0]
    assert df["nulls"].tolist() == [0, 1, 1]
    assert df["value"].tolist() == [30, 0, 0]
    assert p.age_unit == "days"
    np.testing.assert_allclose(p.age[:3], [30, 10, 2])
    # journey 4 converted without any touch: reported, not silently lost
    assert p.unattributed_conversions == 1

    w = Paths.from_touches(t, c, lookback_days=15)
    assert w.to_frame(aggregate=False)["path"].tolist()[0] == "search > social"
    nocut = Paths.from_touches(t, c, cut_at_conversion=False)
    assert nocut.to_frame(aggregate=False)["path"].tolist()[0] == "email > search > social > push"


def test_from_touches_lookback_can_empty_a_converting_journey():
    t, c = _touches()
    p = Paths.from_touches(t, c, lookback_days=0.5)
    # journey 1's last touch before conversion is 2 days earlier: unattributable
    assert p.unattributed_conversions == 2
    assert p.total_conversions == 0


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"lookback_days": 0}, ValidationError, "lookback_days"),
        ({"id_col": "nope"}, SchemaError, "nope"),
    ],
)
def test_from_touches_bad_arguments(kwargs, exc, match):
    t, c = _touches()
    with pytest.raises(exc, match=match):
        Paths.from_touches(t, c, **kwargs)


def test_from_touches_without_id_column():
    with pytest.raises(DataError, match="id column"):
        Paths.from_touches(pd.DataFrame({"ts": [pd.Timestamp(0)], "channel": ["a"]}))


def test_empty_journey_and_paths_dataclass_validation():
    with pytest.raises(DataError, match="empty journey"):
        Paths(("a",), np.array([0, 1, 1]), np.array([0]), [1, 1], [1, 1], [0, 0])
    with pytest.raises(ValidationError, match="duplicate"):
        Paths(("a", "a"), np.array([0, 1]), np.array([0]), [1], [1], [0])


def test_channelattribution_column_names_and_auto_separator():
    df = pd.DataFrame(
        {
            "path": ["eta>iota>alpha", "iota > eta", "alpha"],
            "total_conversions": [2, 1, 0],
            "total_conversion_value": [20.0, 5.0, 0.0],
            "total_null": [1, 0, 4],
        }
    )
    p = Paths.from_frame(df)
    assert p.lengths.tolist() == [3, 2, 1]
    assert p.total_value == 25.0
    assert p.nulls.tolist() == [1, 0, 4]
    q = Paths.from_frame(df.assign(path=["eta|iota|alpha", "iota|eta", "alpha"]), sep="auto")
    assert q.channels == p.channels
    np.testing.assert_array_equal(q.touches, p.touches)


def test_one_table_log_with_conversion_flags():
    day = pd.Timestamp("2026-05-01")
    log = pd.DataFrame(
        {
            "cookie": ["k1", "k1", "k1", "k2", "k2", "k3"],
            "time": [day + pd.Timedelta(hours=h) for h in (0, 5, 9, 1, 2, 3)],
            "channel": [
                "Facebook",
                "Instagram",
                "Online Display",
                "Paid Search",
                "Facebook",
                "Online Video",
            ],
            "conversion": [0, 1, 0, 0, 0, 1],
            "conversion_value": [0.0, 12.0, 0.0, 0.0, 0.0, 7.5],
        }
    )
    p = Paths.from_touches(
        log, ts_col="time", converted_col="conversion", value_col="conversion_value"
    )
    df = p.to_frame(aggregate=False)
    # k1 converts at its second touch (the later display touch is cut); k2 never converts
    assert df["path"].tolist() == ["Facebook > Instagram", "Paid Search > Facebook", "Online Video"]
    assert df["conversions"].tolist() == [1, 0, 1]
    assert df["value"].tolist() == [12.0, 0.0, 7.5]
