"""Message templates: ``str.format``-style bodies with named ``{placeholders}``.

>>> cat = TemplateCatalog.from_dict({"welcome": {"body": "Hi {name}!", "channels": ["push", "sms"]}})
>>> cat.render("welcome", {"name": "Ada"})
('Hi Ada!', None)
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mktlab.errors import NotFoundError, ValidationError
from mktlab.messaging.model import check_channels, check_text

_FORMATTER = string.Formatter()


def _placeholders(text: str, *, where: str) -> frozenset[str]:
    """Names used by ``text``; raise on malformed braces or positional fields."""
    names: set[str] = set()
    try:
        parsed = list(_FORMATTER.parse(text))
    except ValueError as exc:  # "Single '}' encountered in format string" and friends
        raise ValidationError(f"{where}: malformed braces in {text!r}: {exc}") from None
    for _literal, fname, spec, _conv in parsed:
        if fname is None:
            continue
        root = fname.split(".", 1)[0].split("[", 1)[0]
        if not root.isidentifier():
            raise ValidationError(
                f"{where}: placeholder {{{fname}}} must be a name like {{first_name}} "
                "(positional {} fields are not allowed)"
            )
        if root != fname:
            raise ValidationError(
                f"{where}: placeholder {{{fname}}}: attribute or index access is not allowed, "
                "pass the value itself as a parameter"
            )
        if spec and "{" in spec:
            raise ValidationError(f"{where}: nested placeholder in format spec {{{fname}:{spec}}}")
        names.add(root)
    return frozenset(names)


@dataclass(frozen=True)
class Template:
    """A named message body (and optional title) with ``{placeholder}`` fields.

    Parameters
    ----------
    name : str
    body : str
        ``str.format`` text with named fields, e.g. ``"Hi {first_name}, {pct}% off"``;
        ``{{`` and ``}}`` are literal braces.
    channels : sequence of str, optional
        Channels this template may go out on; ``None`` allows all.
    title : str, optional
        Title / subject line, a template itself.

    Raises
    ------
    ValidationError
        Empty name or body, malformed braces, positional or attribute placeholders,
        unknown channels.
    """

    name: str
    body: str
    channels: tuple[str, ...] | None = None
    title: str | None = None

    def __post_init__(self) -> None:
        check_text(self.name, "template.name", max_len=128)
        where = f"template {self.name!r}"
        if not isinstance(self.body, str) or not self.body:
            raise ValidationError(f"{where}: body must be a non-empty string, got {self.body!r}")
        names = _placeholders(self.body, where=f"{where} body")
        if self.title is not None:
            if not isinstance(self.title, str):
                raise ValidationError(f"{where}: title must be a string, got {self.title!r}")
            names |= _placeholders(self.title, where=f"{where} title")
        if self.channels is not None:
            object.__setattr__(self, "channels", check_channels(self.channels, f"{where} channels"))
        object.__setattr__(self, "_names", names)

    @property
    def placeholders(self) -> frozenset[str]:
        """Parameter names the body and title need."""
        return self._names  # type: ignore[attr-defined]

    def allows(self, channel: str) -> bool:
        """True when this template may be sent on ``channel``."""
        return self.channels is None or channel in self.channels

    def render(self, params: Mapping[str, Any]) -> tuple[str, str | None]:
        """``(body, title)`` with ``params`` filled in.

        Raises
        ------
        ValidationError
            A placeholder has no value in ``params`` (named with the template), or a value
            does not fit its format spec.
        """
        missing = sorted(self.placeholders - params.keys())
        if missing:
            raise ValidationError(
                f"template {self.name!r}: missing parameter(s) {', '.join(map(repr, missing))}"
            )
        try:
            body = self.body.format_map(params)
            title = None if self.title is None else self.title.format_map(params)
        except (ValueError, TypeError) as exc:
            raise ValidationError(f"template {self.name!r}: cannot render: {exc}") from None
        return body, title

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"body": self.body}
        if self.channels is not None:
            d["channels"] = list(self.channels)
        if self.title is not None:
            d["title"] = self.title
        return d


class TemplateCatalog:
    """Templates by name.

    Parameters
    ----------
    templates : iterable of Template

    Raises
    ------
    ValidationError
        Two templates share a name.
    """

    def __init__(self, templates: Iterable[Template] = ()):
        self._by_name: dict[str, Template] = {}
        for t in templates:
            if not isinstance(t, Template):
                raise ValidationError(f"templates: expected Template objects, got {t!r}")
            if t.name in self._by_name:
                raise ValidationError(f"templates: name {t.name!r} defined twice")
            self._by_name[t.name] = t

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TemplateCatalog:
        """Build from ``{name: body}`` or ``{name: {body, channels, title}}``.

        A top-level ``{"templates": {...}}`` wrapper is accepted too.
        """
        if (
            isinstance(d, Mapping)
            and set(d) == {"templates"}
            and isinstance(d["templates"], Mapping)
        ):
            d = d["templates"]
        if not isinstance(d, Mapping):
            raise ValidationError(f"templates: expected a mapping of name -> template, got {d!r}")
        out = []
        for name, spec in d.items():
            if isinstance(spec, str):
                spec = {"body": spec}
            if not isinstance(spec, Mapping):
                raise ValidationError(
                    f"template {name!r}: expected a body or a mapping, got {spec!r}"
                )
            unknown = set(spec) - {"body", "channels", "title"}
            if unknown:
                raise ValidationError(f"template {name!r}: unknown key(s) {sorted(unknown)}")
            out.append(
                Template(name, spec.get("body", ""), spec.get("channels"), spec.get("title"))
            )
        return cls(out)

    @classmethod
    def from_yaml(cls, source: str | Path) -> TemplateCatalog:
        """Build from a YAML file path or YAML text (same shape as :meth:`from_dict`)."""
        text = str(source)
        if isinstance(source, Path) or (
            isinstance(source, str) and "\n" not in source and source.endswith((".yaml", ".yml"))
        ):
            path = Path(source)
            if not path.is_file():
                raise NotFoundError(f"templates file {str(path)!r} does not exist")
            text = path.read_text(encoding="utf-8")
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValidationError(f"templates: invalid YAML: {exc}") from None
        return cls.from_dict(data or {})

    def to_dict(self) -> dict:
        return {n: t.to_dict() for n, t in self._by_name.items()}

    def get(self, name: str) -> Template:
        """The template called ``name``.

        Raises
        ------
        NotFoundError
            No template has that name.
        """
        try:
            return self._by_name[name]
        except KeyError:
            known = ", ".join(map(repr, self.names())) or "none"
            raise NotFoundError(f"template {name!r} not found; known: {known}") from None

    def render(self, name: str, params: Mapping[str, Any]) -> tuple[str, str | None]:
        """``(body, title)`` of template ``name`` filled with ``params``."""
        return self.get(name).render(params)

    def names(self) -> list[str]:
        """Template names, sorted."""
        return sorted(self._by_name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __len__(self) -> int:
        return len(self._by_name)

    def __repr__(self) -> str:
        return f"TemplateCatalog({self.names()})"
