"""``mktlab keys``: create, list and revoke API keys (needs an admin key)."""

from __future__ import annotations

import click

from mktlab.campaigns.cli_common import key_option, principal


@click.group()
def keys() -> None:
    """API keys for the service and the campaign commands (roles: app, operator, approver, analyst, admin)."""


@keys.command("create")
@click.option("--name", required=True, help="Who holds the key (a person or an application).")
@click.option(
    "--role", required=True, type=click.Choice(["app", "operator", "approver", "analyst", "admin"])
)
@key_option
def create_cmd(name, role, key) -> None:
    """Create a key; it is printed once and never stored."""
    from mktlab.campaigns.access import KeyStore
    from mktlab.campaigns.db import CampaignDB

    key_id, secret = KeyStore(CampaignDB()).create(name, role, principal(key))
    click.echo(f"key id {key_id} ({role}, {name}); the key, shown once:\n{secret}")


@keys.command("revoke")
@click.argument("key_id")
@key_option
def revoke_cmd(key_id, key) -> None:
    """Revoke a key (refused everywhere within a second)."""
    from mktlab.campaigns.access import KeyStore
    from mktlab.campaigns.db import CampaignDB

    KeyStore(CampaignDB()).revoke(key_id, principal(key))
    click.echo(f"revoked {key_id}")


@keys.command("list")
@key_option
def list_cmd(key) -> None:
    """Keys without their secrets."""
    from mktlab.campaigns.access import KeyStore
    from mktlab.campaigns.db import CampaignDB
    from mktlab.campaigns.roles import require

    require(principal(key), "keys.manage")
    for k in KeyStore(CampaignDB()).list():
        state = "revoked" if k["revoked_at"] else "active"
        click.echo(f"{k['key_id']}\t{k['role']}\t{k['name']}\t{state}")


@keys.command("local-admin")
def local_admin_cmd() -> None:
    """Create the local admin key file (mode 0600) if it is missing; print its path."""
    from mktlab.campaigns.access import ensure_local_admin

    path, created = ensure_local_admin()
    click.echo(f"{'created' if created else 'kept'} the local admin key: {path}")
