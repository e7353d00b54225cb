"""``mktlab audience``: build the store, query, save and list audiences."""

from __future__ import annotations

from pathlib import Path

import click

from mktlab.config import settings


def default_store_path() -> Path:
    """``<processed_dir>/audience_store.duckdb``."""
    return settings().processed_dir / "audience_store.duckdb"


def _load(store_path: str | None):
    from mktlab.audience.tagstore import AudienceStore

    return AudienceStore.read(store_path or default_store_path())


def _identity_map():
    """The saved identity map, if One ID has been run; else None (uids only)."""
    try:
        from mktlab.identity import IdentityMap

        return IdentityMap.load()
    except Exception:  # no saved map yet: samples show uids
        return None


store_option = click.option(
    "--store",
    "store_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Store file (default <processed>/audience_store.duckdb).",
)


@click.group()
def audience() -> None:
    """Bitmap audiences: build the tag store, query expressions, save audiences."""


@audience.command()
@click.option(
    "--profiles",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Parquet of profile tags with a uint32 uid column (default: the synthetic world).",
)
@click.option(
    "--events",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Parquet of events (uid, ts, event).",
)
@click.option("--uid", default="uid", show_default=True, help="Name of the uid column.")
@click.option(
    "--as-of", default=None, help="End day of windows (YYYY-MM-DD); default the last event day."
)
@click.option("--exclude", multiple=True, help="Profile column to leave out (repeatable).")
@click.option(
    "--out", type=click.Path(dir_okay=False), default=None, help="Where to write the store."
)
def build(profiles, events, uid, as_of, exclude, out) -> None:
    """Build the tag bitmaps and write the store (atomically)."""
    from mktlab.audience.tagstore import AudienceStore

    if profiles is None and events is None:
        from mktlab.audience.world import store_from_world

        store, _ = store_from_world(progress=True)
        if store.dropped_rows:
            click.echo(
                "dropped rows: " + ", ".join(f"{k}={v:,}" for k, v in store.dropped_rows.items())
            )
    else:
        store = AudienceStore.build(
            profiles, events, uid=uid, as_of=as_of, exclude=list(exclude), progress=True
        )
    path = store.write(out or default_store_path())
    click.echo(f"{store!r}")
    click.echo(store.describe().to_string(index=False))
    if store.skipped:
        click.echo("skipped columns: " + ", ".join(f"{k} ({v})" for k, v in store.skipped.items()))
    click.echo(f"wrote {path}")


@audience.command()
@click.argument("expr")
@store_option
@click.option(
    "--sample", "n_sample", type=int, default=5, show_default=True, help="Members to show."
)
@click.option(
    "--export",
    "export_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write members to .parquet or .csv.",
)
@click.option("--hash-salt", default=None, help="Export sha256(salt + id) instead of ids.")
@click.option("--sql", "show_sql", is_flag=True, help="Also print the equivalent DuckDB SQL.")
def query(expr, store_path, n_sample, export_path, hash_salt, show_sql) -> None:
    """Evaluate EXPR and print its exact size and a sample of members."""
    store = _load(store_path)
    aud = store.query(expr)
    click.echo(
        f"size: {aud.size:,} of {len(store):,} users ({aud.seconds * 1e3:.1f} ms, as_of {store.as_of})"
    )
    imap = _identity_map() if (n_sample or export_path) else None
    if n_sample:
        click.echo(aud.sample(n_sample, identity_map=imap).to_string(index=False))
    if export_path:
        click.echo(f"wrote {aud.export(export_path, identity_map=imap, hash_salt=hash_salt)}")
    if show_sql:
        from mktlab.audience.sql import to_sql

        click.echo(
            to_sql(
                expr,
                events="events" if store.events else None,
                as_of=store.as_of,
                profile_columns=set(store.tags),
                definitions=lambda n: store.catalog.get(n).definition,
            )
        )


@audience.command()
@click.argument("name")
@click.argument("expr")
@store_option
@click.option("--description", default=None, help="Free text kept with the audience.")
def save(name, expr, store_path, description) -> None:
    """Save EXPR as audience NAME (usable as @NAME)."""
    store = _load(store_path)
    row = store.save(name, expr, description=description)
    click.echo(
        f"saved @{row.name}: {row.size:,} users ({row.build_seconds * 1e3:.1f} ms) in {store.catalog.path}"
    )


@audience.command("list")
def list_() -> None:
    """List saved audiences."""
    from mktlab.audience.catalog import AudienceCatalog

    table = AudienceCatalog().list()
    click.echo("no saved audiences" if table.empty else table.to_string(index=False))


@audience.command()
@click.argument("names", nargs=-1)
@store_option
def refresh(names, store_path) -> None:
    """Recompute saved audiences (all, or NAMES) against the current store."""
    store = _load(store_path)
    click.echo(store.refresh(list(names) or None).to_string(index=False))


@audience.command()
@click.argument("names", nargs=-1)
@click.option(
    "--value",
    type=click.Choice(["intersection", "jaccard", "share_of_a"]),
    default="jaccard",
    show_default=True,
)
def overlap(names, value) -> None:
    """Overlap matrix of saved audiences (all, or NAMES)."""
    from mktlab.audience.catalog import AudienceCatalog
    from mktlab.audience.results import overlap_matrix

    sets = AudienceCatalog().bitmaps(list(names) or None)
    click.echo(overlap_matrix(sets, value).to_string())
