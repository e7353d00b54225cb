"""``mktlab redis``: the embedded redis-server of this workspace (status, stop).

The embedded server (started when ``MKTLAB_REDIS_URL`` is unset) is stopped by the process
that started it; these commands find and stop one left behind (e.g. its owner was killed).
"""

from __future__ import annotations

import json

import click


def _not_embedded() -> str | None:
    from mktlab.config import settings

    url = settings().redis_url
    return (
        f"MKTLAB_REDIS_URL={url} is set: the issuer uses that server, not an embedded one"
        if url
        else None
    )


@click.group("redis")
def redis_group() -> None:
    """Embedded redis-server: status, stop."""


@redis_group.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(as_json: bool) -> None:
    """Is the embedded redis-server of this workspace running (pid, socket, RDB file)?"""
    from mktlab.coupons.connection import embedded_status

    st = embedded_status()
    st["MKTLAB_REDIS_URL"] = _not_embedded()
    if as_json:
        click.echo(json.dumps(st))
        return
    if st["MKTLAB_REDIS_URL"]:
        click.echo(st["MKTLAB_REDIS_URL"])
    if st["running"]:
        click.echo(f"embedded redis-server running: pid {st['pid']}, {st['url']}, data {st['db']}")
        click.echo("stop it with `mktlab redis stop` (or `make redis-stop`)")
    else:
        click.echo(f"no embedded redis-server running for {st['db']}")


@redis_group.command()
@click.option("--timeout", type=float, default=15.0, show_default=True, help="Seconds to wait.")
def stop(timeout: float) -> None:
    """Save and stop the embedded redis-server of this workspace, whoever started it."""
    from mktlab.coupons.connection import embedded_db_path, stop_embedded

    pid = stop_embedded(timeout=timeout)
    if pid is None:
        click.echo(f"no embedded redis-server running for {embedded_db_path()}")
    else:
        click.echo(
            f"stopped the embedded redis-server (pid {pid}); data saved to {embedded_db_path()}"
        )
    note = _not_embedded()
    if note:
        click.echo(note)
