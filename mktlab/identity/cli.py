"""``mktlab identity ...``: resolve the world's identifiers, inspect the saved map."""

from __future__ import annotations

from pathlib import Path

import click

from mktlab.config import settings
from mktlab.errors import DataError


def _read_observations(path: Path):
    import pandas as pd

    if not path.is_file():
        raise DataError(
            f"--input {path}: no such file; generate the world with `mktlab world generate` "
            "or pass --input FILE (.parquet or .csv)"
        )
    if path.suffix.lower() == ".csv":
        return pd.read_csv(path, dtype={"id_value": "str", "id_type": "str"})
    return pd.read_parquet(path)


@click.group()
def identity() -> None:
    """One ID: resolve raw identifiers into people with stable global ids and uids."""


@identity.command("resolve")
@click.option(
    "--input",
    "input_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Observations (.parquet/.csv). Default: <world_dir>/identities.parquet.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the map is saved. Default: <processed_dir>/identity.",
)
@click.option(
    "--rules",
    "rules_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="YAML rule file (see IdentityRules.to_yaml()).",
)
@click.option(
    "--order",
    type=click.Choice(["recency", "frequency"]),
    default=None,
    help="Override the rules' conflict order.",
)
@click.option(
    "--incremental/--full",
    default=False,
    show_default=True,
    help="Add the input to the saved map (keeping its ids) instead of starting over.",
)
@click.option(
    "--errors", type=click.Choice(["raise", "quarantine"]), default="raise", show_default=True
)
def resolve_command(input_path: Path | None, out_dir: Path | None, rules_path: Path | None,
                    order: str | None, incremental: bool, errors: str) -> None:  # fmt: skip
    """Resolve observations, save the map atomically and print the report."""
    import dataclasses

    from mktlab.identity import IdentityMap, IdentityRules, resolve

    path = input_path or settings().world_dir / "identities.parquet"
    obs = _read_observations(path)
    previous = IdentityMap.load(out_dir) if incremental else None
    rules = IdentityRules.from_yaml(rules_path) if rules_path else None
    if order:
        base = rules or (previous.rules if previous else IdentityRules())
        rules = dataclasses.replace(base, order=order)
    imap = resolve(obs, rules=rules, previous=previous, errors=errors)
    saved = imap.save(out_dir)
    click.echo(str(imap.report))
    if len(imap.audit):
        click.echo("refused links (sample):")
        click.echo(imap.audit.head(5).to_string(index=False))
    click.echo(f"saved {len(imap.mapping):,} identifiers / {imap.n_people:,} people to {saved}")


@identity.command("report")
@click.option("--path", type=click.Path(file_okay=False, path_type=Path), default=None)
def report_command(path: Path | None) -> None:
    """Print the report of the saved map."""
    from mktlab.identity import IdentityMap

    imap = IdentityMap.load(path)
    click.echo(str(imap.report))


@identity.command("lookup")
@click.argument("id_type")
@click.argument("id_value")
@click.option("--path", type=click.Path(file_okay=False, path_type=Path), default=None)
def lookup_command(id_type: str, id_value: str, path: Path | None) -> None:
    """Print the person holding ID_TYPE=ID_VALUE and all their identifiers."""
    from mktlab.identity import IdentityMap

    imap = IdentityMap.load(path)
    person = imap.lookup(id_type, id_value)
    click.echo(f"{person.global_id} (uid {person.uid})")
    click.echo(imap.identifiers_of(person.uid).to_string(index=False))
