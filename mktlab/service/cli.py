"""``mktlab models``: what the service serves, and moving the ``@champion`` alias."""

from __future__ import annotations

import click


@click.group("models")
def models() -> None:
    """Promote registry versions and import champions into the service's model store."""


@models.command("list")
def list_models() -> None:
    """Registry champion vs the copy in the BentoML model store, per served model."""
    from mktlab.service import models as store

    rows = store.model_table()
    click.echo(
        f"{'name':<12} {'required':<9} {'champion':<9} {'stored':<9} {'in sync':<8} stored tag"
    )
    for r in rows:
        click.echo(
            f"{r['name']:<12} {('yes' if r['required'] else 'no'):<9} {r['champion_version'] or '-':<9} "
            f"{r['stored_version'] or '-':<9} {('yes' if r['in_sync'] else 'no'):<8} {r['stored_tag'] or '-'}"
        )
    click.echo(f"model store: {store.store_dir()}")


@models.command("promote")
@click.argument("name")
@click.argument("version")
def promote(name: str, version: str) -> None:
    """Point NAME@champion at VERSION and import it into the model store.

    A running service picks it up on restart (`make serve`).
    """
    from mktlab.service import models as store

    m = store.promote(name, version)
    click.echo(f"{name}@champion -> version {m.mlflow_version}; stored as {m.tag}")


@models.command("import")
@click.argument("names", nargs=-1)
@click.option("--force", is_flag=True, help="Copy again even if the stored copy is current.")
def import_(names: tuple[str, ...], force: bool) -> None:
    """Import the registered champions (default: uplift, attribution, rl_policy)."""
    from mktlab.service import models as store

    for name in names or tuple(store.SERVED_MODELS):
        try:
            m = store.import_champion(name, force=force)
        except KeyError as exc:  # NotFoundError
            if names or store.SERVED_MODELS[name]:
                raise
            click.echo(f"{name}: not registered ({exc}); skipped")
            continue
        click.echo(f"{name}: version {m.mlflow_version} stored as {m.tag}")
