"""The ``mktlab`` command line: thin sub-commands over the same functions notebooks call.

Each capability owns its click group in ``mktlab/<capability>/cli.py``; this module only
lists them and imports one when it is invoked, so ``mktlab --help`` stays fast.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

import click

from mktlab.errors import MktlabError

# name -> ("module:attribute", one-line help). Groups whose module is absent are hidden.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "world": ("mktlab.datasets.cli:world", "Generate the synthetic marketing world."),
    "data": ("mktlab.datasets.cli:data", "Check and fetch the data sets."),
    "identity": ("mktlab.identity.cli:identity", "One ID: resolve identifiers to people."),
    "audience": ("mktlab.audience.cli:audience", "Bitmap audiences: build, query, save."),
    "uplift": ("mktlab.uplift.cli:uplift", "Uplift models: train and evaluate."),
    "coupons": (
        "mktlab.coupons.cli:coupons",
        "Coupon issuer: create, status, reconcile, simulate.",
    ),
    "redis": ("mktlab.coupons.redis_cli:redis_group", "Embedded redis-server: status, stop."),
    "attribution": ("mktlab.attribution.cli:attribution", "Multi-touch attribution."),
    "sandbox": ("mktlab.sandbox.cli:sandbox", "Replay strategies over logged data."),
    "rl": ("mktlab.rl.cli:rl", "Reinforcement-learning policies."),
    "models": ("mktlab.service.cli:models", "Promote and import served models."),
    "experiments": (
        "mktlab.experiments.cli:experiments",
        "A/B experiments: design, assign, analyse.",
    ),
    "ab": ("mktlab.experiments.cli:ab", "A/B experiments (alias of `experiments`)."),
    "live": ("mktlab.live.cli:live", "The live loop: event bus, workers, journeys, decisions."),
    "strategy": ("mktlab.strategy.cli:strategy", "Strategies: validate, save, schema."),
    "campaign": (
        "mktlab.campaigns.cli:campaign",
        "Campaign lifecycle: create, approve, simulate, launch, ramp, pause, report.",
    ),
    "keys": ("mktlab.campaigns.keys_cli:keys", "API keys: create, list, revoke, local admin."),
    "demo": ("mktlab.demo:demo_command", "Run the main job end to end."),
}


def _available(name: str) -> bool:
    module = SUBCOMMANDS[name][0].split(":")[0]
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # the parent package is absent
        return False


class LazyGroup(click.Group):
    """A click group whose sub-commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(n for n in SUBCOMMANDS if _available(n))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in SUBCOMMANDS or not _available(cmd_name):
            return None
        target, _ = SUBCOMMANDS[cmd_name]
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(n, SUBCOMMANDS[n][1]) for n in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mktlab")
def cli() -> None:
    """mktlab: marketing data science workspace (One ID, audiences, uplift, coupons, ...)."""


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI and turn :class:`MktlabError` into a one-line message."""
    try:
        cli.main(args=argv, prog_name="mktlab", standalone_mode=False)
    except MktlabError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        return 2
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
