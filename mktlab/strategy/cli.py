"""``mktlab strategy``: validate, save, list strategies and print their JSON schema."""

from __future__ import annotations

import json

import click


@click.group()
def strategy() -> None:
    """One strategy for the sandbox, the live workers and /issue."""


@strategy.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
def validate_cmd(files) -> None:
    """Check strategy YAML files (schema, rules, templates); exit 1 on the first bad one."""
    from mktlab.strategy import Strategy

    for f in files:
        s = Strategy.from_yaml(f)
        click.echo(f"{f}: {s.key} ok (fingerprint {s.fingerprint()})")


@strategy.command("save")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
def save_cmd(file) -> None:
    """Save a strategy so the live workers and /issue run it (a changed one needs a new version)."""
    from mktlab.strategy import Strategy, StrategyCatalog

    s = StrategyCatalog().save(Strategy.from_yaml(file))
    click.echo(f"saved {s.key}" + (f" for campaign {s.campaign_id}" if s.campaign_id else ""))


@strategy.command("list")
def list_cmd() -> None:
    """Saved strategies."""
    from mktlab.strategy import StrategyCatalog

    cat = StrategyCatalog()
    for name in cat.names():
        s = cat.get(name)
        click.echo(
            f"{s.key}\tcampaign={s.campaign_id}\tpolicy={s.policy.kind}\tholdout={s.holdout:g}"
        )


@strategy.command("schema")
def schema_cmd() -> None:
    """Print the strategy JSON Schema (for editors and CI checks)."""
    from mktlab.strategy import STRATEGY_SCHEMA

    click.echo(json.dumps(STRATEGY_SCHEMA, indent=2))
