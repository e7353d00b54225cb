"""``mktlab world ...`` and ``mktlab data ...`` commands."""

from __future__ import annotations

import click

from mktlab.config import settings


@click.group()
def world() -> None:
    """Generate and inspect the synthetic marketing world."""


@world.command("generate")
@click.option(
    "--users", "n_users", type=int, default=100_000, show_default=True, help="Number of people."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Non-negative random seed.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Target folder (default data/raw/world).",
)
def generate(n_users: int, seed: int, out_dir: str | None) -> None:
    """Generate the world (Parquet under data/raw/world) and print its tables."""
    from mktlab.datasets import make_world

    w = make_world(n_users, seed, out_dir=out_dir, progress=True)
    click.echo(f"world of {n_users:,} users (seed {seed}) in {w.meta['seconds']:.1f} s at {w.path}")
    click.echo(w.summary().to_string(index=False))


@world.command("summary")
@click.option("--path", type=click.Path(file_okay=False), default=None)
def summary(path: str | None) -> None:
    """Print the tables of a generated world."""
    from mktlab.datasets import load_world

    w = load_world(path)
    click.echo(f"{w.path}: {w.meta['n_users']:,} users, seed {w.meta['seed']}")
    click.echo(w.summary().to_string(index=False))


@click.group()
def data() -> None:
    """Check and fetch the data sets."""


@data.command("check")
def check() -> None:
    """Check that Hillstrom is readable and report the world on disk."""
    from mktlab.datasets import find_hillstrom, load_hillstrom, load_world
    from mktlab.errors import DataError

    s = settings()
    df = load_hillstrom()
    click.echo(f"hillstrom: {len(df):,} rows from {find_hillstrom()}")
    click.echo(df.groupby("segment")[["visit", "conversion", "spend"]].mean().round(4).to_string())
    try:
        w = load_world()
        click.echo(f"world: {w.meta['n_users']:,} users (seed {w.meta['seed']}) at {w.path}")
    except DataError:
        click.echo(f"world: none at {s.world_dir} (run `mktlab world generate`)")
