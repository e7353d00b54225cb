"""Exceptions raised by mktlab.

Every error a user can cause derives from :class:`MktlabError`, so a notebook or the
service can catch one type. Messages name the offending field, file or token.
"""

from __future__ import annotations

from collections.abc import Iterable


class MktlabError(Exception):
    """Base class of every error mktlab raises on purpose."""


class ConfigError(MktlabError):
    """A setting or environment variable is invalid."""


class DataError(MktlabError):
    """Input data is missing, corrupt or has the wrong shape."""


class SchemaError(DataError):
    """A table lacks columns, or a column has the wrong type."""


class ValidationError(MktlabError, ValueError):
    """An argument is out of range or of the wrong kind."""


class NotFoundError(MktlabError, KeyError):
    """A named thing (campaign, audience, model, tag) does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ServiceUnavailableError(MktlabError):
    """A backing service (Redis, ledger database, MLflow) cannot be reached."""


class AuthError(MktlabError):
    """No credentials, or credentials that are not recognised (HTTP 401)."""


class PermissionDeniedError(MktlabError):
    """Recognised credentials whose role may not do this (HTTP 403)."""


class ConflictError(ValidationError):
    """The request clashes with the current state (an illegal or concurrent transition; HTTP 409)."""


def require_columns(df, columns: Iterable[str], *, table: str) -> None:
    """Raise :class:`SchemaError` naming every column of ``columns`` missing from ``df``.

    Parameters
    ----------
    df : pandas.DataFrame or pyarrow.Table
        The table to check.
    columns : iterable of str
        Columns that must be present.
    table : str
        Name used in the message, e.g. ``"observations"``.
    """
    names = list(df.columns) if hasattr(df, "columns") else list(df.column_names)
    missing = [c for c in columns if c not in names]
    if missing:
        raise SchemaError(
            f"{table}: missing column(s) {', '.join(map(repr, missing))}; "
            f"got {', '.join(map(repr, names)) or 'no columns'}"
        )
