"""``mktlab campaign``: the lifecycle from the command line, with credentials.

Every command acts as the holder of an API key: ``--key``, else ``MKTLAB_API_KEY``, else
the local admin key that ``make demo`` / ``mktlab keys local-admin`` writes (its path is
printed there). The key's role decides what the command may do, and every attempt is in
the audit log (``mktlab campaign history ID``).
"""

from __future__ import annotations

import json
from typing import Any

import click

from mktlab.campaigns.cli_common import key_option, lifecycle, principal


def show(rec: dict[str, Any]) -> None:
    extra = f" ({rec['state_reason']})" if rec.get("state_reason") else ""
    click.echo(
        f"{rec['campaign_id']}\tv{rec['version']}\t{rec['state']}{extra}\trollout={rec['rollout']:.0%}"
    )


@click.group()
def campaign() -> None:
    """Campaigns: create, submit, approve, simulate, launch, ramp, pause, resume, end, report."""


@campaign.command("create")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@key_option
def create_cmd(file, key) -> None:
    """Register the campaign in FILE (YAML) as a draft."""
    from mktlab.campaigns.spec import CampaignSpec

    show(lifecycle().create(CampaignSpec.from_yaml(file), principal(key)))


@campaign.command("update")
@click.argument("campaign_id")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--why", default="", help="Why it changed (kept with the version).")
@key_option
def update_cmd(campaign_id, file, why, key) -> None:
    """Store FILE as the next version of a draft; prints the diff."""
    from mktlab.campaigns.spec import CampaignSpec

    lc = lifecycle()
    rec = lc.update(campaign_id, CampaignSpec.from_yaml(file), principal(key), why=why)
    show(rec)
    click.echo(json.dumps(lc.versions(campaign_id)[-1]["diff"], indent=2, default=str))


def _simple(name: str, doc: str, call) -> None:
    @campaign.command(name, help=doc)
    @click.argument("campaign_id")
    @key_option
    def cmd(campaign_id, key) -> None:
        show(call(lifecycle(), campaign_id, principal(key)))


_simple("submit", "Send a draft to review.", lambda lc, c, p: lc.submit(c, p))
_simple("resume", "Resume a paused campaign.", lambda lc, c, p: lc.resume(c, p))
_simple("archive", "Archive an ended campaign.", lambda lc, c, p: lc.archive(c, p))


@campaign.command("approve")
@click.argument("campaign_id")
@click.option("--note", default="")
@key_option
def approve_cmd(campaign_id, note, key) -> None:
    """Approve the version in review (the owner cannot; big budgets need two approvers)."""
    show(lifecycle().approve(campaign_id, principal(key), note=note))


@campaign.command("reject")
@click.argument("campaign_id")
@click.option("--why", required=True)
@key_option
def reject_cmd(campaign_id, why, key) -> None:
    """Send the campaign back to draft with the reason."""
    show(lifecycle().reject(campaign_id, principal(key), why))


@campaign.command("simulate")
@click.argument("campaign_id")
@click.option("--events", "events_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Event log (CSV or Parquet: user_id, ts, event, ...).")  # fmt: skip
@key_option
def simulate_cmd(campaign_id, events_path, key) -> None:
    """Replay the current version's strategy over an event log and store the prediction."""
    import pandas as pd

    from mktlab.audience.membership import SavedAudiences
    from mktlab.live.context import LiveContext

    p = principal(key)
    events = (
        pd.read_parquet(events_path)
        if events_path.endswith(".parquet")
        else pd.read_csv(events_path)
    )
    rec = lifecycle().simulate(campaign_id, p, events, LiveContext(audiences=SavedAudiences()))
    sim = rec["simulation"]
    click.echo(
        f"predicted: spend {sim['spend']:,.2f}  reach {sim['reach']}  coupons {sim['coupons']}  messages {sim['messages']}"
    )


@campaign.command("launch")
@click.argument("campaign_id")
@click.option(
    "--rollout",
    type=float,
    default=0.05,
    show_default=True,
    help="Gray share of the traffic (1 = full).",
)
@key_option
def launch_cmd(campaign_id, rollout, key) -> None:
    """Launch an approved, simulated campaign to a gray share of its audience."""
    show(lifecycle().launch(campaign_id, principal(key), rollout=rollout))


@campaign.command("ramp")
@click.argument("campaign_id")
@click.argument("rollout", type=float)
@key_option
def ramp_cmd(campaign_id, rollout, key) -> None:
    """Widen the gray share (only up; 1 = full)."""
    show(lifecycle().ramp(campaign_id, principal(key), rollout))


@campaign.command("pause")
@click.argument("campaign_id")
@click.option("--reason", required=True)
@key_option
def pause_cmd(campaign_id, reason, key) -> None:
    """Pause: the issuer stops at once, every runtime within a second."""
    show(lifecycle().pause(campaign_id, principal(key), reason=reason))


@campaign.command("end")
@click.argument("campaign_id")
@click.option("--why", default="")
@key_option
def end_cmd(campaign_id, why, key) -> None:
    """End the campaign for good."""
    show(lifecycle().end(campaign_id, principal(key), why=why))


@campaign.command("list")
@click.option("--state", default=None)
@key_option
def list_cmd(state, key) -> None:
    """Campaigns and their states."""
    from mktlab.campaigns.roles import require

    require(principal(key), "campaign.read")
    for rec in lifecycle().list(state):
        show(rec)


@campaign.command("show")
@click.argument("campaign_id")
@key_option
def show_cmd(campaign_id, key) -> None:
    """The campaign's record, current spec, approvals and stored simulation (JSON)."""
    from mktlab.campaigns.roles import require

    require(principal(key), "campaign.read")
    click.echo(json.dumps(lifecycle().get(campaign_id), indent=2, default=str))


@campaign.command("history")
@click.argument("campaign_id")
@key_option
def history_cmd(campaign_id, key) -> None:
    """Every attempt on the campaign, taken or refused (the audit log)."""
    from mktlab.campaigns.roles import require

    require(principal(key), "campaign.read")
    log = lifecycle().history(campaign_id)
    cols = ["ts", "actor", "role", "action", "ok", "from_state", "to_state", "reason"]
    if log.empty:
        click.echo("no entries")
        return
    log["ts"] = log["ts"].map(
        lambda t: __import__("datetime").datetime.fromtimestamp(t).isoformat(timespec="seconds")
    )
    click.echo(
        log[cols]
        .astype(object)
        .where(log[cols].notna(), "")
        .to_string(index=False, max_colwidth=80)
    )


@campaign.command("report")
@click.argument("campaign_id")
@click.option("--outcomes", "outcomes_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Later events (CSV or Parquet: user_id, ts, event[, amount]) the conversions come from.")  # fmt: skip
@click.option(
    "--decisions",
    "decisions_dir",
    default=None,
    help="Decision log folder (default: the live loop's).",
)
@click.option(
    "--out", "out_path", default=None, help="HTML file (default data/processed/reports/<id>.html)."
)
@click.option("--outcome-event", default="purchase", show_default=True)
@key_option
def report_cmd(campaign_id, outcomes_path, decisions_dir, out_path, outcome_event, key) -> None:
    """Write the retrospective (lift and ROI against the holdout, segments, prediction vs outcome)."""
    import pandas as pd

    from mktlab.campaigns.review import review_campaign
    from mktlab.campaigns.roles import require
    from mktlab.config import settings
    from mktlab.live.decisions import DecisionLog

    require(principal(key), "campaign.report")
    lc = lifecycle()
    decisions = DecisionLog(decisions_dir).read(source=lc.strategy(campaign_id).name)
    read = pd.read_parquet if outcomes_path.endswith(".parquet") else pd.read_csv
    r = review_campaign(
        lc, campaign_id, decisions, read(outcomes_path), outcome_event=outcome_event
    )
    path = r.to_html(out_path or settings().processed_dir / "reports" / f"{campaign_id}.html")
    s = r.summary
    roi = "n/a" if s.get("roi") is None else f"{s['roi']:.2f}"
    click.echo(f"lift {s['lift']:+.2%} [{s['lift_lo']:+.2%}, {s['lift_hi']:+.2%}] against the holdout; "
               f"ROI {roi}; spend {s['spend']:,.2f} (redeemed coupons and sends)")  # fmt: skip
    click.echo(f"wrote {path}")


from mktlab.campaigns.watch_cli import watch as _watch  # noqa: E402 (the breakers' command)

campaign.add_command(_watch, "watch")
