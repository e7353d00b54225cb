"""Whose key a command acts with, shared by ``mktlab campaign`` and ``mktlab keys``."""

from __future__ import annotations

from typing import Any

import click

key_option = click.option(
    "--key",
    envvar=None,
    default=None,
    help="API key (default: MKTLAB_API_KEY, then the local admin key).",
)


def principal(key: str | None) -> Any:
    """The :class:`~mktlab.campaigns.roles.Principal` of ``key`` (or the configured one)."""
    from mktlab.campaigns.access import KeyStore
    from mktlab.campaigns.db import CampaignDB
    from mktlab.config import settings
    from mktlab.errors import AuthError

    s = settings()
    secret = key or s.api_key
    if secret is None and s.admin_key_path.exists():
        secret = s.admin_key_path.read_text().strip()
    if not secret:
        raise AuthError(
            f"API key missing: pass --key, set MKTLAB_API_KEY, or create the local admin key "
            f"with `mktlab keys local-admin` (it is written to {s.admin_key_path})"
        )
    return KeyStore(CampaignDB()).authenticate(secret)


def lifecycle() -> Any:
    from mktlab.campaigns.lifecycle import Lifecycle
    from mktlab.config import service_settings

    return Lifecycle(namespace=service_settings().namespace)
