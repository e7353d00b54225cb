"""The last stage of ``make demo``: serve the champions and talk to the live service.

:func:`run_service_demo` imports the registered champions into the BentoML model store,
starts ``bentoml serve`` on localhost, sends a handful of real requests (health, uplift,
next action, attribution, coupon issuance with a retry, campaign status) and prints the
answers; a request without an API key shows the 401 every endpoint but the probes gives
(the local admin key, created on first run, is at ``settings().admin_key_path``). Then it
either keeps serving with the URL shown until Ctrl+C, or stops cleanly
(``exit_after=True``; ``make demo`` maps ``DEMO_EXIT=1`` to it).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import click

from mktlab.config import settings

DEMO_CAMPAIGN = "demo-welcome"


def _call(
    url: str, method: str = "GET", body: Any = None, key: str | None = None
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, raw.decode(errors="replace")


def _action_state(imported: dict[str, Any], features: dict[str, Any]) -> dict[str, Any]:
    """The state ``/next_action`` expects: the RL policy's observation when one is served
    (a user from the environment's first week), else the uplift features of the fallback."""
    if not imported.get("rl_policy"):
        return features
    from mktlab.rl import OBS_COLUMNS, MarketingEnv

    obs, _ = MarketingEnv().reset(seed=0)
    return {c: float(v) for c, v in zip(OBS_COLUMNS, obs, strict=True)}


def _sample_rows(schema: dict[str, Any], n: int) -> tuple[list[str], list[dict[str, Any]]]:
    """``n`` (user_id, feature row) pairs: stored profiles when they fit the model, else made up."""
    import pandas as pd

    cols = list(schema.get("input_columns") or [])
    cats = dict(schema.get("categorical") or {})
    path = settings().world_dir / "profiles.parquet"
    if cols and path.is_file():
        prof = pd.read_parquet(path)
        if "user_id" in prof.columns and all(c in prof.columns for c in cols):
            sample = prof.sample(n=min(n, len(prof)), random_state=0)
            rows = [
                {c: (v.item() if hasattr(v, "item") else v) for c, v in r.items()}
                for r in sample[cols].to_dict("records")
            ]
            return sample["user_id"].astype(str).tolist(), rows
    rows = []
    for i in range(n):
        rows.append({c: (cats[c][i % len(cats[c])] if c in cats else float(i % 3)) for c in cols})
    return [f"demo-user-{i}" for i in range(n)], rows


def _journeys(n: int, channels: list[str] | None = None) -> list[dict[str, Any]]:
    import pandas as pd

    path = settings().world_dir / "touches.parquet"
    if path.is_file():
        t = pd.read_parquet(path, columns=["journey_id", "channel", "ts"]).sort_values(
            ["journey_id", "ts"]
        )
        ids = t["journey_id"].drop_duplicates().head(n)
        return [{"path": t.loc[t.journey_id == j, "channel"].astype(str).tolist()} for j in ids]
    ch = list(channels or ["search", "email", "social", "display"])  # what the model knows
    return [
        {"path": [ch[0], ch[1 % len(ch)]]},
        {"path": [ch[2 % len(ch)], ch[3 % len(ch)], ch[0]], "conversions": 2},
    ]


def _ensure_campaign(stock: int) -> None:
    """The demo campaign and its strategy: predicted uplift >= the threshold, <= 3 coupons a week."""
    from mktlab.config import service_settings
    from mktlab.coupons import Campaign, CouponIssuer
    from mktlab.rules.model import FrequencyCap
    from mktlab.strategy import Strategy, StrategyCatalog, TreatmentPolicy

    cfg = service_settings()
    with CouponIssuer(namespace=cfg.namespace) as issuer:
        try:
            issuer.campaign(DEMO_CAMPAIGN)
        except KeyError:
            issuer.create_campaign(Campaign(DEMO_CAMPAIGN, stock=stock, face_value=5.0))
    policy = TreatmentPolicy("uplift_threshold", model="uplift", threshold=cfg.uplift_threshold)
    StrategyCatalog().save(
        Strategy(
            f"{DEMO_CAMPAIGN}-strategy",
            policy,
            campaign_id=DEMO_CAMPAIGN,
            caps=(FrequencyCap("coupon", 3, "7d"),),
        ),
        replace=True,
    )


def _show(title: str, status: int, body: Any) -> None:
    click.secho(f"-- {title}  [HTTP {status}]", fg="cyan")
    text = json.dumps(body, indent=None, default=str)
    click.echo(text if len(text) < 1500 else text[:1500] + " ...")


def run_service_demo(
    *,
    exit_after: bool = False,
    port: int | None = None,
    host: str | None = None,
    n_users: int = 5,
    campaign_stock: int = 1000,
) -> dict[str, Any]:
    """Import champions, start the service, send real requests, then serve on or stop.

    Parameters
    ----------
    exit_after : bool
        Stop the service after the requests (tests, CI). Otherwise keep serving until
        Ctrl+C with the URL shown.
    port, host : optional
        Where to listen (default ``MKTLAB_SERVICE_PORT``/``_HOST``: ``127.0.0.1:3000``).
    n_users : int
        Users scored and sent to ``/issue``.
    campaign_stock : int
        Stock of the demo campaign ``demo-welcome`` (created once, then reused).

    Returns
    -------
    dict
        ``url``, ``models`` (served versions) and ``answers`` (endpoint -> list of
        ``(status, body)``).
    """
    from mktlab.config import service_settings
    from mktlab.service import models as store
    from mktlab.service.server import ServiceProcess

    cfg = service_settings()
    imported = store.import_champions()
    click.echo(
        "served models: "
        + ", ".join(f"{k}={v.mlflow_version if v else '-'}" for k, v in imported.items())
    )
    _ensure_campaign(campaign_stock)
    from mktlab.campaigns.access import ensure_local_admin

    key_path, _ = ensure_local_admin()
    key = key_path.read_text().strip()
    click.echo(
        f"the local admin API key is in {key_path} (send it as 'Authorization: Bearer <key>')"
    )
    sp = ServiceProcess(port=port or cfg.port, host=host or cfg.host)
    click.echo(f"starting the service on {sp.url} (log: {sp.log_path}) ...")
    sp.start(timeout=180)
    answers: dict[str, list[tuple[int, Any]]] = {}

    def call(name: str, path: str, body: Any = None, *, auth: bool = True) -> Any:
        status, out = _call(
            sp.url + path, "GET" if body is None else "POST", body, key if auth else None
        )
        answers.setdefault(name, []).append((status, out))
        _show(f"{'GET' if body is None else 'POST'} {path}", status, out)
        return out

    try:
        call("healthz", "/healthz")
        schema = imported["uplift"].metadata if imported.get("uplift") else {}
        users, rows = _sample_rows(schema, n_users)
        call("uplift", "/uplift", {"rows": rows})
        call(
            "next_action",
            "/next_action",
            {"state": _action_state(imported, rows[0]), "user_id": users[0]},
        )
        known = (
            (imported["attribution"].metadata or {}).get("channels")
            if imported.get("attribution")
            else None
        )
        call("attribute", "/attribute", {"journeys": _journeys(3, known)})
        for u, r in zip(users, rows):
            call(
                "issue",
                "/issue",
                {
                    "campaign_id": DEMO_CAMPAIGN,
                    "user_id": u,
                    "request_id": f"demo-{u}",
                    "context": {"features": r},
                },
            )
        call(
            "issue",
            "/issue",
            {"campaign_id": DEMO_CAMPAIGN, "user_id": users[0], "request_id": f"demo-{users[0]}"},
        )
        call(  # without a key: 401, nothing issued
            "issue_unauthenticated",
            "/issue",
            {"campaign_id": DEMO_CAMPAIGN, "user_id": users[0], "request_id": "demo-nokey"},
            auth=False,
        )
        call("campaign", f"/campaigns/{DEMO_CAMPAIGN}")
        result = {
            "url": sp.url,
            "models": {k: (v.mlflow_version if v else None) for k, v in imported.items()},
            "answers": answers,
        }
        if exit_after:
            click.echo("stopping the service (exit requested)")
            sp.stop()
            return result
        click.secho(
            f"\nThe service is live at {sp.url}  (OpenAPI: {sp.url}/docs.json). Ctrl+C stops it.",
            bold=True,
        )
        try:
            sp.proc.wait()
        except KeyboardInterrupt:
            click.echo("\nstopping the service")
        return result
    finally:
        sp.stop()
