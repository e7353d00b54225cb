"""The audience language: tokenizer, parser, canonical text and error messages."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mktlab.audience.lang import (
    And,
    AudienceSyntaxError,
    Between,
    Compare,
    CountCmp,
    Did,
    In,
    Not,
    Or,
    SavedRef,
    Tag,
    Xor,
    caret_message,
    parse,
    suggest,
    to_text,
)
from mktlab.errors import MktlabError, ValidationError


def test_issue_example_parses_to_expected_tree():
    node = parse('active_7d & ~purchased_30d & (tier >= 5 | city in ("SH", "BJ"))')
    assert node == And(
        (
            Tag("active_7d"),
            Not(Tag("purchased_30d")),
            Or((Compare("tier", ">=", 5), In("city", ("SH", "BJ")))),
        )
    )


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("a", Tag("a")),
        ("(a)", Tag("a")),
        ("a | b & c", Or((Tag("a"), And((Tag("b"), Tag("c")))))),
        ("(a | b) & c", And((Or((Tag("a"), Tag("b"))), Tag("c")))),
        ("a ^ b | c", Or((Xor((Tag("a"), Tag("b"))), Tag("c")))),
        ("a & b ^ c", Xor((And((Tag("a"), Tag("b"))), Tag("c")))),
        ("~~a", Not(Not(Tag("a")))),
        ("not a and b or c", Or((And((Not(Tag("a")), Tag("b"))), Tag("c")))),
        ("!a && b || c", Or((And((Not(Tag("a")), Tag("b"))), Tag("c")))),
        ("age >= 30", Compare("age", ">=", 30)),
        ("age > -2.5", Compare("age", ">", -2.5)),
        ("age = 3", Compare("age", "==", 3)),
        ("age <> 3", Compare("age", "!=", 3)),
        ("x <= 1e3", Compare("x", "<=", 1000.0)),
        ("x < 1_000", Compare("x", "<", 1000)),
        ('city == "SH"', Compare("city", "==", "SH")),
        ("city == 'S\"H'", Compare("city", "==", 'S"H')),
        ("flag == true", Compare("flag", "==", True)),
        ("flag != FALSE", Compare("flag", "!=", False)),
        ("age between 25 and 34", Between("age", 25, 34)),
        ("age BETWEEN 25 AND 34", Between("age", 25, 34)),
        ('city in ("SH")', In("city", ("SH",))),
        ('city not in ("SH", "BJ")', In("city", ("SH", "BJ"), negate=True)),
        ("did(order, 30d)", Did("order", 30)),
        ('did("coupon_redeem", 7d)', Did("coupon_redeem", 7)),
        ("did(*, 7d)", Did("any", 7)),
        ("count(order, 30d) >= 2", CountCmp("order", 30, ">=", 2)),
        ("count(view, 7d) between 1 and 3", CountCmp("view", 7, "between", 1, 3)),
        ("@high_value", SavedRef("high_value")),
        ("@high-value.v2 & a", And((SavedRef("high-value.v2"), Tag("a")))),
    ],
)
def test_parse(text, tree):
    assert parse(text) == tree


def _error(text: str) -> AudienceSyntaxError:
    with pytest.raises(AudienceSyntaxError) as info:
        parse(text)
    return info.value


@pytest.mark.parametrize(
    ("text", "reason", "caret_col", "width"),
    [
        ("a & ", "expected an audience term, got end of expression", 4, 1),
        ("(a | b", "missing ')'", 0, 1),
        ("a b", "expected an operator", 2, 1),
        ("a & )", "expected an audience term, got ')'", 4, 1),
        ("a)", "unmatched ')'", 1, 1),
        ("city == SH", 'write strings in quotes, e.g. "SH"', 8, 2),
        ("count(order, 30) >= 2", "expected a window such as 30d", 13, 2),
        ("count(order, 30d)", "count(...) must be compared", 17, 1),
        ("did(order, 0d)", "at least 1d", 11, 2),
        ("a $ b", "unexpected character '$'", 2, 1),
        ("", "empty expression", 0, 1),
        ("a in ()", "at least one value", 6, 1),
        ("3x", "bad number '3x'", 0, 2),
        ("age between 1 or 2", "expected 'and'", 14, 2),
        ("5 > age", "needs a tag to compare with", 0, 1),
        ("city == 'SH", "unterminated string", 8, 3),
        ("()", "empty parentheses", 1, 1),
        ("@", "saved audience name after '@'", 0, 1),
        ("age >= ", "expected a value, got end of expression", 7, 1),
    ],
)
def test_syntax_errors_point_at_the_token(text, reason, caret_col, width):
    err = _error(text)
    assert reason in str(err)
    lines = str(err).splitlines()
    assert lines[1] == f"  {text}"
    assert lines[2] == "  " + " " * caret_col + "^" * width
    assert isinstance(err, ValidationError)
    assert isinstance(err, MktlabError)


def test_caret_message_multiline_shows_the_offending_line():
    msg = caret_message("bad", "a &\n  b c", 8, 9)
    assert msg.splitlines() == ["bad", "    b c", "      ^"]


def test_suggest_closest_name():
    assert suggest("cty", ["city", "tier", "age"]) == "; did you mean 'city'?"
    assert suggest("CITY", ["city"]) == "; did you mean 'city'?"
    assert suggest("zzz", ["city"]) == ""


def test_non_string_expression_is_refused():
    with pytest.raises(ValidationError, match="must be a string"):
        parse(42)  # type: ignore[arg-type]


# ----------------------------------------------------------------------- round trip
_names = st.sampled_from(["a", "b_2", "city", "age", "x.y"])
_values = st.one_of(
    st.integers(-1000, 1000),
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=5),
    st.booleans(),
)
_leaves = st.one_of(
    _names.map(Tag),
    st.builds(Compare, _names, st.sampled_from(["==", "!=", ">=", ">", "<=", "<"]), _values),
    st.builds(Between, _names, _values, _values),
    st.builds(In, _names, st.lists(_values, min_size=1, max_size=3).map(tuple), st.booleans()),
    st.builds(Did, st.sampled_from(["order", "view", "any"]), st.integers(1, 90)),
    st.builds(
        CountCmp,
        st.sampled_from(["order", "view"]),
        st.integers(1, 90),
        st.just(">="),
        st.integers(0, 5),
    ),
    st.sampled_from(["seg", "high-value"]).map(SavedRef),
)
_trees = st.recursive(
    _leaves,
    lambda kids: st.one_of(
        kids.map(Not),
        st.lists(kids, min_size=2, max_size=3).map(lambda xs: And(tuple(xs))),
        st.lists(kids, min_size=2, max_size=3).map(lambda xs: Or(tuple(xs))),
        st.lists(kids, min_size=2, max_size=3).map(lambda xs: Xor(tuple(xs))),
    ),
    max_leaves=8,
)


def _flatten(node):
    """Canonical form: nested And/Or/Xor of the same kind are one n-ary node."""
    if isinstance(node, Not):
        return Not(_flatten(node.operand))
    if isinstance(node, And | Or | Xor):
        ops = []
        for o in node.operands:
            o = _flatten(o)
            ops.extend(o.operands if type(o) is type(node) else [o])
        return type(node)(tuple(ops))
    return node


@settings(max_examples=200, deadline=None)
@given(_trees)
def test_to_text_round_trips(tree):
    assert _flatten(parse(to_text(tree))) == _flatten(tree)
