"""The audience expression language: tokenizer, AST and a recursive-descent parser.

Grammar (lowest precedence first; ``and``/``or``/``not`` are accepted for ``&``/``|``/``~``)::

    expr     := xor ('|' xor)*
    xor      := and ('^' and)*
    and      := unary ('&' unary)*
    unary    := '~' unary | primary
    primary  := '(' expr ')' | '@' NAME
              | 'did' '(' EVENT ',' WINDOW ')'
              | 'count' '(' EVENT ',' WINDOW ')' predicate
              | NAME [predicate]                    # bare NAME = a boolean tag
    predicate:= CMP value | 'between' value 'and' value
              | ['not'] 'in' '(' value (',' value)* ')'
    CMP      := '==' | '=' | '!=' | '<>' | '>=' | '>' | '<=' | '<'
    value    := NUMBER | '-' NUMBER | STRING | 'true' | 'false'
    WINDOW   := INTEGER 'd'                         # e.g. 30d = the last 30 days

Every node remembers the character span it came from, so errors found later (unknown
tag, type mismatch) can point at the right token with a caret.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from mktlab.errors import NotFoundError, ValidationError

COMPARISONS = ("==", "!=", ">=", ">", "<=", "<")
_CMP_ALIASES = {"=": "==", "<>": "!="}
_KEYWORDS = {"and", "or", "not", "in", "between", "true", "false"}
Value = int | float | str | bool


# --------------------------------------------------------------------------- errors
def caret_message(message: str, text: str, start: int, end: int | None = None) -> str:
    """Return ``message`` followed by ``text`` and a caret line under ``text[start:end]``."""
    start = max(0, min(start, len(text)))
    width = max(1, (end if end is not None else start + 1) - start)
    # Keep the caret aligned when the expression spans several lines: show one line.
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", start)
    line = text[line_start : line_end if line_end != -1 else len(text)]
    col = start - line_start
    width = min(width, max(1, len(line) - col))
    return f"{message}\n  {line}\n  {' ' * col}{'^' * width}"


class AudienceSyntaxError(ValidationError):
    """The expression is malformed; the message shows it with a caret under the problem."""

    def __init__(self, message: str, text: str, start: int, end: int | None = None):
        self.text, self.start, self.end = text, start, end
        self.reason = message
        super().__init__(caret_message(message, text, start, end))


class AudienceTypeError(ValidationError):
    """A tag is used in a way its type does not allow (``city >= 3``, bare ``age``)."""

    def __init__(self, message: str, text: str = "", start: int = 0, end: int | None = None):
        self.reason = message
        super().__init__(caret_message(message, text, start, end) if text else message)


class UnknownNameError(NotFoundError):
    """An unknown tag, value, event or saved audience; suggests the closest known name."""

    def __init__(self, message: str, text: str = "", start: int = 0, end: int | None = None):
        self.reason = message
        super().__init__(caret_message(message, text, start, end) if text else message)


def suggest(name: str, choices, n: int = 1) -> str:
    """Return ``"; did you mean 'x'?"`` for the closest of ``choices`` (or ``""``)."""
    choices = [str(c) for c in choices]
    close = difflib.get_close_matches(str(name), choices, n=n, cutoff=0.5)
    if not close:
        lowered = {c.lower(): c for c in choices}
        if str(name).lower() in lowered:
            close = [lowered[str(name).lower()]]
    if not close:
        return ""
    return "; did you mean " + " or ".join(repr(c) for c in close) + "?"


# --------------------------------------------------------------------------- tokens
@dataclass(frozen=True)
class Token:
    kind: str  # NAME NUMBER STRING WINDOW OP AT EOF
    text: str
    start: int
    end: int
    value: object = None


_OPS = (
    "==",
    "!=",
    ">=",
    "<=",
    "<>",
    "&&",
    "||",
    "=",
    ">",
    "<",
    "&",
    "|",
    "~",
    "^",
    "!",
    "(",
    ")",
    ",",
    "-",
    "*",
)


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into tokens; raise :class:`AudienceSyntaxError` on a bad character."""
    if not isinstance(text, str):
        raise ValidationError(f"expression must be a string, got {type(text).__name__}")
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        start = i
        if c in "\"'":
            j = i + 1
            buf = []
            while j < n and text[j] != c:
                if text[j] == "\\" and j + 1 < n:
                    j += 1
                buf.append(text[j])
                j += 1
            if j >= n:
                raise AudienceSyntaxError("unterminated string", text, start, n)
            tokens.append(Token("STRING", text[start : j + 1], start, j + 1, "".join(buf)))
            i = j + 1
            continue
        if c.isdigit() or (c == "." and i + 1 < n and text[i + 1].isdigit()):
            j = i
            while j < n and (text[j].isdigit() or text[j] in "._"):
                j += 1
            if (
                j < n
                and text[j] in "eE"
                and j + 1 < n
                and (text[j + 1].isdigit() or text[j + 1] in "+-")
            ):
                j += 2
                while j < n and text[j].isdigit():
                    j += 1
            raw = text[start:j].replace("_", "")
            if (
                j < n
                and text[j] in "dD"
                and not (j + 1 < n and (text[j + 1].isalnum() or text[j + 1] == "_"))
            ):
                if not raw.isdigit():
                    raise AudienceSyntaxError(
                        "a window is a whole number of days, e.g. 30d", text, start, j + 1
                    )
                tokens.append(Token("WINDOW", text[start : j + 1], start, j + 1, int(raw)))
                i = j + 1
                continue
            if j < n and (text[j].isalpha() or text[j] == "_"):
                k = j
                while k < n and (text[k].isalnum() or text[k] == "_"):
                    k += 1
                raise AudienceSyntaxError(
                    f"bad number {text[start:k]!r} (windows are written like 30d)", text, start, k
                )
            try:
                value: int | float = int(raw) if raw.isdigit() else float(raw)
            except ValueError:
                raise AudienceSyntaxError(f"bad number {raw!r}", text, start, j) from None
            tokens.append(Token("NUMBER", text[start:j], start, j, value))
            i = j
            continue
        if c.isalpha() or c == "_":
            j = i
            while j < n and (text[j].isalnum() or text[j] in "_."):
                j += 1
            word = text[start:j]
            tokens.append(Token("NAME", word, start, j, word))
            i = j
            continue
        if c == "@":
            j = i + 1
            while j < n and (text[j].isalnum() or text[j] in "_-."):
                j += 1
            if j == i + 1:
                raise AudienceSyntaxError(
                    "expected a saved audience name after '@'", text, start, j
                )
            tokens.append(Token("AT", text[start:j], start, j, text[i + 1 : j]))
            i = j
            continue
        for op in _OPS:
            if text.startswith(op, i):
                tokens.append(Token("OP", op, start, start + len(op), op))
                i += len(op)
                break
        else:
            raise AudienceSyntaxError(f"unexpected character {c!r}", text, start, start + 1)
    tokens.append(Token("EOF", "", n, n))
    return tokens


# --------------------------------------------------------------------------- AST
@dataclass(frozen=True)
class Node:
    """Base of AST nodes; ``span`` is the (start, end) in the source text."""

    span: tuple[int, int] = field(default=(0, 0), compare=False, kw_only=True)


@dataclass(frozen=True)
class Tag(Node):
    """A bare boolean tag: a bool column or a derived window tag such as ``active_7d``."""

    name: str


@dataclass(frozen=True)
class Compare(Node):
    """``tag OP value``."""

    tag: str
    op: str
    value: Value
    value_span: tuple[int, int] = field(default=(0, 0), compare=False)


@dataclass(frozen=True)
class Between(Node):
    """``tag between lo and hi`` (inclusive)."""

    tag: str
    lo: Value
    hi: Value


@dataclass(frozen=True)
class In(Node):
    """``tag in (v, ...)``; ``negate`` for ``not in``."""

    tag: str
    values: tuple[Value, ...]
    negate: bool = False


@dataclass(frozen=True)
class Did(Node):
    """``did(event, Nd)``: at least one ``event`` in the last ``days`` days."""

    event: str
    days: int


@dataclass(frozen=True)
class CountCmp(Node):
    """``count(event, Nd) OP k`` or ``count(event, Nd) between lo and hi``."""

    event: str
    days: int
    op: str  # one of COMPARISONS or "between"
    value: Value
    hi: Value | None = None


@dataclass(frozen=True)
class SavedRef(Node):
    """``@name``: a saved audience, evaluated from its definition."""

    name: str


@dataclass(frozen=True)
class Not(Node):
    operand: Node


@dataclass(frozen=True)
class And(Node):
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Or(Node):
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Xor(Node):
    operands: tuple[Node, ...]


def to_text(node: Node) -> str:
    """Render an AST back to a canonical expression (parses to an equal AST)."""

    def lit(v: Value) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return repr(v)

    if isinstance(node, Tag):
        return node.name
    if isinstance(node, Compare):
        return f"{node.tag} {node.op} {lit(node.value)}"
    if isinstance(node, Between):
        return f"{node.tag} between {lit(node.lo)} and {lit(node.hi)}"
    if isinstance(node, In):
        return f"{node.tag} {'not in' if node.negate else 'in'} ({', '.join(lit(v) for v in node.values)})"
    if isinstance(node, Did):
        return f"did({node.event}, {node.days}d)"
    if isinstance(node, CountCmp):
        head = f"count({node.event}, {node.days}d)"
        if node.op == "between":
            return f"{head} between {lit(node.value)} and {lit(node.hi)}"
        return f"{head} {node.op} {lit(node.value)}"
    if isinstance(node, SavedRef):
        return f"@{node.name}"
    if isinstance(node, Not):
        return f"~{_wrap(node.operand)}"
    sep = {And: " & ", Or: " | ", Xor: " ^ "}[type(node)]
    return sep.join(_wrap(o) for o in node.operands)  # type: ignore[attr-defined]


def _wrap(node: Node) -> str:
    text = to_text(node)
    return f"({text})" if isinstance(node, And | Or | Xor) else text


# --------------------------------------------------------------------------- parser
class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def error(self, message: str, tok: Token | None = None) -> AudienceSyntaxError:
        tok = tok or self.tok
        return AudienceSyntaxError(message, self.text, tok.start, max(tok.end, tok.start + 1))

    def describe(self, tok: Token) -> str:
        return "end of expression" if tok.kind == "EOF" else repr(tok.text)

    def is_op(self, *ops: str) -> bool:
        return self.tok.kind == "OP" and self.tok.text in ops

    def is_word(self, *words: str) -> bool:
        return self.tok.kind == "NAME" and self.tok.text.lower() in words

    def advance(self) -> Token:
        tok = self.tok
        if tok.kind != "EOF":
            self.i += 1
        return tok

    def expect_op(self, op: str, what: str) -> Token:
        if not self.is_op(op):
            raise self.error(f"expected {what}, got {self.describe(self.tok)}")
        return self.advance()

    def parse(self) -> Node:
        if self.tok.kind == "EOF":
            raise self.error("empty expression")
        node = self.parse_or()
        if self.tok.kind != "EOF":
            if self.is_op(")"):
                raise self.error("unmatched ')'")
            raise self.error(
                f"expected an operator (&, |, ^) or the end, got {self.describe(self.tok)}"
            )
        return node

    def _binary(self, sub, ops: tuple[str, ...], words: tuple[str, ...], cls) -> Node:
        first = sub()
        operands = [first]
        while self.is_op(*ops) or self.is_word(*words):
            self.advance()
            if self.tok.kind == "EOF" or self.is_op(")", "&", "|", "^", "&&", "||", ","):
                raise self.error(f"expected an audience term, got {self.describe(self.tok)}")
            operands.append(sub())
        if len(operands) == 1:
            return first
        return cls(tuple(operands), span=(operands[0].span[0], operands[-1].span[1]))

    def parse_or(self) -> Node:
        return self._binary(self.parse_xor, ("|", "||"), ("or",), Or)

    def parse_xor(self) -> Node:
        return self._binary(self.parse_and, ("^",), (), Xor)

    def parse_and(self) -> Node:
        return self._binary(self.parse_unary, ("&", "&&"), ("and",), And)

    def parse_unary(self) -> Node:
        if self.is_op("~", "!") or self.is_word("not"):
            tok = self.advance()
            if self.tok.kind == "EOF":
                raise self.error("expected an audience term after negation")
            operand = self.parse_unary()
            return Not(operand, span=(tok.start, operand.span[1]))
        return self.parse_primary()

    def parse_primary(self) -> Node:
        tok = self.tok
        if self.is_op("("):
            self.advance()
            if self.is_op(")"):
                raise self.error("empty parentheses")
            node = self.parse_or()
            if not self.is_op(")"):
                if self.tok.kind == "EOF":
                    raise self.error("missing ')' for this '('", tok)
                raise self.error(f"expected ')' or an operator, got {self.describe(self.tok)}")
            close = self.advance()
            return _respan(node, (tok.start, close.end))
        if tok.kind == "AT":
            self.advance()
            return SavedRef(str(tok.value), span=(tok.start, tok.end))
        if tok.kind == "NAME" and tok.text.lower() not in _KEYWORDS:
            self.advance()
            if tok.text.lower() in ("did", "count") and self.is_op("("):
                return self.parse_function(tok)
            if self.at_predicate():
                return self.parse_predicate(tok)
            return Tag(tok.text, span=(tok.start, tok.end))
        if tok.kind == "EOF":
            raise self.error("expected an audience term, got end of expression")
        if tok.kind in ("NUMBER", "STRING"):
            raise self.error(f"a value {tok.text} needs a tag to compare with, e.g. age >= 30")
        raise self.error(
            f"expected an audience term (a tag, '(' or '@name'), got {self.describe(tok)}"
        )

    def at_predicate(self) -> bool:
        if self.tok.kind == "OP" and self.tok.text in (*COMPARISONS, *_CMP_ALIASES):
            return True
        if self.is_word("between", "in"):
            return True
        nxt = self.tokens[min(self.i + 1, len(self.tokens) - 1)]
        return self.is_word("not") and nxt.kind == "NAME" and nxt.text.lower() == "in"

    def parse_value(self) -> tuple[Value, Token]:
        tok = self.tok
        if self.is_op("-"):
            self.advance()
            num = self.tok
            if num.kind != "NUMBER":
                raise self.error("expected a number after '-'")
            self.advance()
            return -num.value, Token("NUMBER", self.text[tok.start : num.end], tok.start, num.end)  # type: ignore[operator]
        if tok.kind in ("NUMBER", "STRING"):
            self.advance()
            return tok.value, tok  # type: ignore[return-value]
        if self.is_word("true", "false"):
            self.advance()
            return tok.text.lower() == "true", tok
        if tok.kind == "NAME":
            raise self.error(f'expected a value; write strings in quotes, e.g. "{tok.text}"')
        if tok.kind == "WINDOW":
            raise self.error("expected a value, got a window")
        raise self.error(f"expected a value, got {self.describe(tok)}")

    def parse_predicate(self, name: Token) -> Node:
        if self.is_word("between"):
            self.advance()
            lo, _ = self.parse_value()
            if not self.is_word("and"):
                raise self.error(
                    f"expected 'and' in 'between ... and ...', got {self.describe(self.tok)}"
                )
            self.advance()
            hi, hi_tok = self.parse_value()
            return Between(name.text, lo, hi, span=(name.start, hi_tok.end))
        negate = False
        if self.is_word("not"):
            self.advance()
            negate = True
        if self.is_word("in"):
            self.advance()
            self.expect_op("(", "'(' after 'in'")
            values: list[Value] = []
            if self.is_op(")"):
                raise self.error("'in ()' needs at least one value")
            while True:
                v, _ = self.parse_value()
                values.append(v)
                if self.is_op(","):
                    self.advance()
                    continue
                break
            close = self.expect_op(")", "',' or ')' in the value list")
            return In(name.text, tuple(values), negate, span=(name.start, close.end))
        op_tok = self.advance()
        op = _CMP_ALIASES.get(op_tok.text, op_tok.text)
        value, vtok = self.parse_value()
        return Compare(name.text, op, value, (vtok.start, vtok.end), span=(name.start, vtok.end))

    def parse_function(self, fn: Token) -> Node:
        self.advance()  # (
        ev = self.tok
        if ev.kind == "STRING" or (ev.kind == "NAME" and ev.text.lower() not in _KEYWORDS):
            event = str(ev.value)
            self.advance()
        elif self.is_op("*"):
            event = "any"
            self.advance()
        else:
            raise self.error(f"expected an event name, got {self.describe(ev)}")
        self.expect_op(",", f"',' then a window such as 30d after the event in {fn.text}()")
        win = self.tok
        if win.kind != "WINDOW":
            hint = f" (write {win.text}d)" if win.kind == "NUMBER" else ""
            raise self.error(f"expected a window such as 30d, got {self.describe(win)}{hint}")
        self.advance()
        days = int(win.value)  # type: ignore[arg-type]
        if days < 1:
            raise AudienceSyntaxError("a window must be at least 1d", self.text, win.start, win.end)
        close = self.expect_op(")", "')'")
        if fn.text.lower() == "did":
            return Did(event, days, span=(fn.start, close.end))
        if self.is_word("between"):
            self.advance()
            lo, _ = self.parse_value()
            if not self.is_word("and"):
                raise self.error(
                    f"expected 'and' in 'between ... and ...', got {self.describe(self.tok)}"
                )
            self.advance()
            hi, hi_tok = self.parse_value()
            return CountCmp(event, days, "between", lo, hi, span=(fn.start, hi_tok.end))
        if not (self.tok.kind == "OP" and self.tok.text in (*COMPARISONS, *_CMP_ALIASES)):
            raise self.error(f"count(...) must be compared, e.g. count({event}, {days}d) >= 2")
        op_tok = self.advance()
        value, vtok = self.parse_value()
        return CountCmp(
            event,
            days,
            _CMP_ALIASES.get(op_tok.text, op_tok.text),
            value,
            span=(fn.start, vtok.end),
        )


def _respan(node: Node, span: tuple[int, int]) -> Node:
    """Return ``node`` with its span widened to include parentheses."""
    import dataclasses

    return dataclasses.replace(node, span=span)


def parse(text: str) -> Node:
    """Parse an audience expression into an AST.

    Parameters
    ----------
    text : str
        For example ``'active_7d & ~purchased_30d & (tier_level >= 4 | city in ("SH", "BJ"))'``.

    Returns
    -------
    Node
        The root of the AST (:class:`And`, :class:`Or`, :class:`Compare`, ...).

    Raises
    ------
    AudienceSyntaxError
        With the expression and a caret under the offending token.
    """
    return _Parser(text).parse()


def walk(node: Node):
    """Yield ``node`` and all its descendants (pre-order)."""
    yield node
    if isinstance(node, Not):
        yield from walk(node.operand)
    elif isinstance(node, And | Or | Xor):
        for o in node.operands:
            yield from walk(o)
