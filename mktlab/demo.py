"""The main job behind ``make demo``: every stage on the embedded defaults, end to end.

Stages run in the order of the loop in DESIGN.md; each prints one short block and
returns a dict of figures, and the whole run is logged to MLflow (experiment
``demo``). Later capabilities add a stage here; the job never reaches backwards.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import click
import pandas as pd

from mktlab import tracking
from mktlab.config import PROJ_ROOT, env_flag, settings


def _world(ctx: dict[str, Any]) -> dict[str, Any]:
    from mktlab.datasets import make_world

    w = make_world(ctx["users"], ctx["seed"], progress=True)
    ctx["world"] = w
    s = w.summary()
    click.echo(s.to_string(index=False))
    return {
        "world_users": w.meta["n_users"],
        "world_seconds": w.meta["seconds"],
        "identity_rows": int(s.loc[s.table == "identities", "rows"].iloc[0]),
    }


def _identity(ctx: dict[str, Any]) -> dict[str, Any]:
    from mktlab.identity import assign_records, pairwise_scores, resolve

    w = ctx["world"]
    imap = resolve(w.identities)
    path = imap.save()
    click.echo(str(imap.report))
    rec = assign_records(w.identities, imap).merge(w.identity_truth, on="record_id")
    scores = pairwise_scores(rec["uid"], rec["person_id"])
    click.echo(
        f"pairwise vs truth: precision {scores['precision']:.4f}, recall {scores['recall']:.4f}, F1 {scores['f1']:.4f}; saved to {path}"
    )
    ctx["imap"] = imap
    return {
        "identity_f1": scores["f1"],
        "identity_people": int(imap.mapping["uid"].nunique()),
        "identity_precision": scores["precision"],
        "identity_recall": scores["recall"],
    }


def _audiences(ctx: dict[str, Any]) -> dict[str, Any]:
    from mktlab.audience.cli import default_store_path
    from mktlab.audience.world import store_from_world

    store, imap = store_from_world(ctx["world"], ctx["imap"])
    store.write(default_store_path())
    saved = {
        "gold_plus": 'tier >= "gold"',
        "lapsing_high_value": "monetary_90d >= 300 & ~purchased_30d",
        "active_no_purchase": 'active_7d & ~purchased_30d & (tier_level >= 4 | city in ("SH", "BJ"))',
        "repeat_buyers": "count(order, 30d) >= 2",
    }
    sizes = {name: store.save(name, expr).size for name, expr in saved.items()}
    both = store.query("@gold_plus & @repeat_buyers")
    for name, expr in saved.items():
        click.echo(f"  @{name:<20} {sizes[name]:>10,}  {expr}")
    click.echo(
        f"  @gold_plus & @repeat_buyers {both.size:,}; sample: {list(both.sample(3, identity_map=imap))}"
    )
    return {f"audience_{k}": v for k, v in sizes.items()}


def _hillstrom(ctx: dict[str, Any]) -> dict[str, Any]:
    from mktlab.datasets import copy_to_raw, load_hillstrom

    path = copy_to_raw()
    df = load_hillstrom(path)
    rates = df.groupby("segment")[["visit", "conversion", "spend"]].mean()
    click.echo(f"hillstrom: {len(df):,} customers from {path}")
    click.echo(rates.round(4).to_string())
    ctx["hillstrom"] = df
    return {f"hillstrom_visit_{k.split()[0].lower()}": float(v) for k, v in rates["visit"].items()}


def _attribution(ctx: dict[str, Any]) -> dict[str, Any]:
    from mktlab.attribution import Paths, attribute, log_attribution

    w = ctx["world"]
    paths = Paths.from_touches(w.touches, w.conversions, lookback_days=30)
    result = attribute(paths, "all")
    truth = w.channel_truth.set_index("channel")["true_incremental_conversions"]
    agreement = result.compare_to(truth)
    click.echo(result.conversions.round(1).to_string())
    click.echo(agreement.round(3).to_string())
    logged = log_attribution(result, method="markov", truth=truth, register=True)
    rho = agreement.iloc[:, 0]
    return {
        "attribution_journeys": len(w.conversions),
        "attribution_markov_spearman": float(rho.get("markov", float("nan"))),
        "attribution_shapley_spearman": float(rho.get("shapley", float("nan"))),
        "attribution_version": logged.get("version"),
    }


def _experiments(ctx: dict[str, Any]) -> dict[str, Any]:
    from mktlab.experiments import analyze, sample_size_proportion

    metrics = {"visit": "proportion", "conversion": "proportion", "spend": "mean"}
    res = analyze(ctx["hillstrom"], metrics, arm="segment", control="No E-Mail", name="hillstrom")
    click.echo(res.summary().to_string(index=False))
    click.echo(f"SRM p={res.srm.p_value:.3g} ({'MISMATCH' if res.srm.mismatch else 'ok'})")
    res.log(experiment="experiments", run_name="hillstrom-demo")
    n = sample_size_proportion(0.10, 0.05).n_control
    figs = res.figures("ab.")
    headline = {
        "ab_visit_lift_womens": figs["ab.visit.Womens_E-Mail.abs_lift"],
        "ab_visit_lift_mens": figs["ab.visit.Mens_E-Mail.abs_lift"],
        "ab_srm_p": figs["ab.srm_p_value"],
        "ab_n_per_arm_10pct_5rel": n,
    }
    return {**headline, **figs}


def quadrant_thresholds(treat_threshold: float | None = None):
    """Quadrant thresholds that agree with the service's treatment decision.

    The service treats a row when ``uplift >= treat_threshold`` (``MKTLAB_UPLIFT_THRESHOLD``)
    while :func:`~mktlab.uplift.assign_quadrants` calls a row persuadable when
    ``uplift > thresholds.uplift``. With two different cuts the demo printed rows labelled
    ``lost_cause`` with ``treat: true``; with this one cut a row is persuadable exactly
    when it is treated (the cut is the float just below the threshold, so ``>`` and ``>=``
    agree; at a threshold of 0 an uplift of exactly 0 is treated but not persuadable).

    Parameters
    ----------
    treat_threshold : float, optional
        Default: ``service_settings().uplift_threshold``.

    Returns
    -------
    QuadrantThresholds
    """
    import numpy as np

    from mktlab.config import service_settings
    from mktlab.uplift import QuadrantThresholds

    t = service_settings().uplift_threshold if treat_threshold is None else float(treat_threshold)
    cut = float(np.nextafter(t, -np.inf)) if t > 0 else max(t, 0.0)
    return QuadrantThresholds(uplift=cut, response=QuadrantThresholds.response)


def threshold_note(thresholds, treat_threshold: float) -> str:
    """One line saying how ``treat`` and ``quadrant`` are decided (printed by the demo)."""
    t, q = float(treat_threshold), thresholds
    same = abs(q.uplift - t) <= 1e-12 * max(1.0, abs(t))
    cut = f"uplift >= {t:g}" if same else f"uplift > {q.uplift:g}"
    note = (
        f"treat: uplift >= {t:g} (MKTLAB_UPLIFT_THRESHOLD); quadrant: persuadable when {cut}, "
        f"sleeping_dog when uplift < -{q.uplift:g}, otherwise sure_thing when p0 >= "
        f"{q.response:g}, else lost_cause"
    )
    if not same:
        note += " (two different cuts: a lost_cause or sure_thing row can be treated)"
    return note


def _uplift(ctx: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    from mktlab.config import service_settings
    from mktlab.uplift import hillstrom_data, train, world_data

    # Hillstrom (real, randomised): all learners on shared folds; reported, not served.
    quick = ctx["users"] < 200_000  # small demo runs (tests) train fewer learners
    learners = ["s", "t", "x"] if quick else None
    hres = train(
        hillstrom_data(ctx["hillstrom"]),
        learners=learners,
        n_splits=3 if quick else 5,
        register=False,
        explain=False,
    )
    click.echo(
        f"hillstrom champion {hres.champion}: "
        + ", ".join(f"{k}={v:.4f}" for k, v in hres.metrics.items() if "@" in k or "qini" in k)
    )
    # The world's randomised campaign C001 (a 50k sample): the champion the service serves.
    wd = world_data(ctx["world"], campaign_id="C001")
    idx = np.random.default_rng(ctx["seed"]).choice(
        len(wd), size=min(50_000, len(wd)), replace=False
    )
    # its quadrants use the service's treat threshold, so "persuadable" == "treat: true"
    treat = service_settings().uplift_threshold
    cuts = quadrant_thresholds(treat)
    wres = train(
        wd.subset(np.sort(idx)),
        learners=learners,
        n_splits=3,
        register=True,
        explain=False,
        thresholds=cuts,
    )
    click.echo(
        f"world champion {wres.champion} registered as uplift@champion v{wres.model_version}"
    )
    click.echo(threshold_note(cuts, treat))
    ctx["uplift_registered"] = True
    h, w = hres.metrics, wres.metrics
    return {
        "uplift_hillstrom_champion": hres.champion,
        "uplift_hillstrom_qini": h.get("qini", float("nan")),
        "uplift_world_champion": wres.champion,
        "uplift_version": wres.model_version,
        **{f"uplift_hillstrom_{k}": v for k, v in h.items()},
        **{f"uplift_world_{k}": v for k, v in w.items()},
    }


def _sandbox(ctx: dict[str, Any]) -> dict[str, Any]:
    from mktlab.sandbox import (
        CouponTerms,
        Strategy,
        TreatmentPolicy,
        compare,
        from_world,
        log_results,
        replay_many,
    )

    data = from_world(ctx["world"], campaign_id="C002")
    terms = CouponTerms(face_value=10, send_cost=0.2, margin=0.35)
    strategies = [
        Strategy("logged", TreatmentPolicy("logged"), coupon=terms),
        Strategy("everyone", TreatmentPolicy("all"), coupon=terms),
        Strategy("random-30%", TreatmentPolicy("random", rate=0.3), coupon=terms),
    ]
    if ctx.get("uplift_registered"):
        strategies.append(
            Strategy(
                "uplift-top-30%",
                TreatmentPolicy("uplift_threshold", model="uplift", top_fraction=0.3),
                coupon=terms,
            )
        )
    results = replay_many(strategies, data, n_boot=200)
    table = compare(results, baseline="logged")
    cols = [
        "treated",
        "incremental_conversions",
        "incremental_conversions_lo",
        "incremental_conversions_hi",
        "roi",
    ]
    click.echo(table[[c for c in cols if c in table.columns]].round(3).to_string())
    log_results(results, run_name="demo", baseline="logged")
    inc = table["incremental_conversions"]
    return {
        f"sandbox_incremental_{k.replace('-', '_').replace('%', 'pct')}": float(v)
        for k, v in inc.items()
    }


def _rl(ctx: dict[str, Any]) -> dict[str, Any]:
    from mktlab.rl import (
        EnvConfig,
        TrainConfig,
        UserPrior,
        evaluate_policies,
        log_policy,
        standard_baselines,
        train_agent,
    )

    prior, cfg = UserPrior.from_world(ctx["world"]), EnvConfig()
    steps = 1_000_000 if ctx["users"] >= 200_000 else 600_000
    res = train_agent(TrainConfig(total_timesteps=steps, time_budget_s=180), cfg, prior)
    ev = evaluate_policies(
        [*standard_baselines(cfg, prior), res.policy], cfg, n_seeds=5, prior=prior
    )
    summary = ev.summary()
    click.echo(summary.round(2).to_string())
    logged = log_policy(res, evaluation=ev)
    ranked = summary.set_index("policy")["return_per_user"].sort_values(ascending=False)
    learned = next(p for p in ranked.index if p in ("ppo", "dqn"))
    baselines = ranked.drop(["ppo", "dqn"], errors="ignore")
    return {
        "rl_policy_return": float(ranked[learned]),
        "rl_best_baseline": str(baselines.index[0]),
        "rl_best_baseline_return": float(baselines.iloc[0]),
        "rl_version": logged.get("version"),
    }


def _coupons(ctx: dict[str, Any]) -> dict[str, Any]:
    from mktlab.coupons.simulate import SimulationConfig, simulate

    cfg = SimulationConfig(
        stock=20_000, n_requests=100_000, workers=2, shards=4, arrival="herd", seed=ctx["seed"]
    )
    s = simulate(cfg).summary()
    ok = s["issued"] == s["expected_issued"] and s["duplicates"] == 0 and s["over_issued"] == 0
    click.echo(
        {
            k: s[k]
            for k in (
                "issued",
                "stock",
                "ledger_issued",
                "duplicates",
                "over_issued",
                "rejects",
                "throughput",
                "p50_ms",
                "p99_ms",
            )
        }
    )
    click.echo(
        f"flash sale correct (issued == min(stock, users), no duplicates, ledger == Redis): {ok}"
    )
    return {
        "coupons_issued": s["issued"],
        "coupons_ok": int(ok),
        "coupons_per_s": s["throughput"],
        "coupons_p99_ms": s["p99_ms"],
    }


def _live(ctx: dict[str, Any]) -> dict[str, Any]:
    import uuid

    from mktlab.live.runner import load_spec
    from mktlab.live.synth import synthetic_events
    from mktlab.live.worker import replay

    n_users = max(2_000, min(ctx["users"] // 10, 100_000))
    events = synthetic_events(n_users, n_users * 2, seed=ctx["seed"])
    tag = uuid.uuid4().hex[:6]
    out_dir = settings().live_dir / f"demo-{tag}"
    spec = load_spec(PROJ_ROOT / "examples" / "live.yaml")
    spec.update(
        namespace=f"demo{tag}",
        issuer_namespace=f"demo{tag}:cp",
        decisions_dir=str(out_dir / "decisions"),
        delivery_url=f"sqlite:///{out_dir / 'deliveries.db'}",
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    r = replay(
        spec, events, workers=2, campaigns={"browse-rescue": 5.0, "spring-c10": 10.0}, progress=True
    )
    click.echo({k: v for k, v in r.items() if k != "workers"})
    click.echo(
        f"live loop: decisions equal the simulation: {r['equal_to_simulation']}; "
        f"coupons in the ledger == coupon decisions: {r['ledger_coupons'] == r['coupons']}"
    )
    return {
        "live_events": r["events"],
        "live_handle_per_s": r["handle_per_s"],
        "live_coupons": r["coupons"],
        "live_deliveries": r.get("deliveries", 0),
        "live_equal_to_simulation": int(r["equal_to_simulation"]),
    }


def _campaigns(ctx: dict[str, Any]) -> dict[str, Any]:
    """One campaign's life on the workspace registry, its live traffic from two real workers.

    Keys per role from the local admin key; draft → review → approve → simulate → gray
    launch at 50%; the synthetic events through the bus and two workers, gated by the
    campaign's published state; the watcher reads the counters the workers wrote; stock
    raised behind the issuer's back pauses the campaign by itself; then it ends.
    """
    import uuid

    import yaml
    from prometheus_client import CollectorRegistry

    from mktlab.campaigns.access import KeyStore, ensure_local_admin
    from mktlab.campaigns.counters import CampaignCounters
    from mktlab.campaigns.lifecycle import Lifecycle
    from mktlab.campaigns.watch import Watcher
    from mktlab.live import LiveContext, synthetic_events
    from mktlab.live.worker import replay

    path, created = ensure_local_admin()
    click.echo(
        f"local admin key: {path} ({'created now' if created else 'already there'}, mode 0600)"
    )
    keys = KeyStore()
    admin = keys.authenticate(path.read_text().strip())
    tag = uuid.uuid4().hex[:6]
    people = {"olga": "operator", "pia": "approver", "quentin": "approver"}
    made = {n: keys.create(f"demo-{n}-{tag}", role, admin) for n, role in people.items()}
    olga, pia, quentin = (keys.authenticate(made[n][1]) for n in people)
    cid, ns = f"demo-{tag}", f"demo{tag}"
    lc = Lifecycle(namespace=f"{ns}:cp", audiences={})
    n_users = max(2_000, min(ctx["users"] // 50, 20_000))
    events = synthetic_events(n_users, n_users * 2, seed=ctx["seed"])
    budget = float(max(9_000, 2 * n_users))  # the simulation predicts ~0.8 per user
    strategy = yaml.safe_load(
        (PROJ_ROOT / "examples" / "strategies" / "browse-rescue.yaml").read_text()
    )
    strategy.update(name=cid, campaign_id=cid, holdout=0.2, policy={"kind": "all"},
                    budget={"max_spend": budget, "max_coupons": int(budget // 5)})  # fmt: skip
    strategy["rules"]["rules"][0]["then"][0]["issue_coupon"]["coupon"] = cid
    now = time.time()
    # a flash campaign: the whole budget may go in its first hour (the burn breaker's plan)
    lc.create({"campaign_id": cid, "name": "Demo browse rescue",
               "window": {"start": now - 3600, "end": now + 7 * 86400},
               "coupon": {"stock": int(budget // 5), "per_user_limit": 1, "stackable": True},
               "plan": {"daily_spend": 24 * budget}, "strategy": strategy}, olga)  # fmt: skip
    lc.submit(cid, olga)
    lc.approve(cid, pia, note="demo")
    if lc.get(cid)["state"] != "approved":  # above the two-approver threshold
        lc.approve(cid, quentin, note="demo, second approver")
    sim = lc.simulate(cid, olga, events, LiveContext(audiences={}))["simulation"]
    lc.launch(cid, olga, rollout=0.5)
    out_dir = settings().live_dir / f"demo-{tag}"
    spec = {"strategies": [lc.strategy(cid).to_dict()], "namespace": f"{ns}:live",
            "issuer_namespace": f"{ns}:cp", "audiences": {}, "deliver": True,
            "decisions_dir": str(out_dir / "decisions"),
            "delivery_url": f"sqlite:///{out_dir / 'deliveries.db'}"}  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    r = replay(spec, events, workers=2, check=False, progress=True)
    counters = CampaignCounters(lc.issuer.redis, lc.namespace).read(cid)
    click.echo(f"predicted spend {sim['spend']:,.2f}; live: {r['coupons']} coupons to the gray half, "
               f"counters {counters}")  # fmt: skip
    watcher = Watcher(lc, registry=CollectorRegistry())
    healthy = watcher.tick()
    lc.issuer.redis.hincrby(
        lc.issuer._keys(cid, 0)["meta"], "stock", 100
    )  # behind the issuer's back
    trips = watcher.tick()
    state = lc.get(cid)
    click.echo(f"healthy pass: {len(healthy)} trip(s); after the planted over-issue: {state['state']} "
               f"({state['state_reason']})")  # fmt: skip
    lc.end(cid, olga, why="demo over")
    lc.archive(cid, olga)
    for kid, _ in made.values():
        keys.revoke(kid, admin)
    hist = lc.history(cid)
    with pd.option_context("display.width", 200, "display.max_colwidth", 60):
        cols = ["actor", "role", "action", "ok", "from_state", "to_state"]
        click.echo(hist[cols].fillna("").to_string(index=False))
    return {
        "campaign_events": r["events"],
        "campaign_coupons": r["coupons"],
        "campaign_treated_users": counters["treated"],
        "campaign_holdout_users": counters["holdout"],
        "campaign_paused_by": len(trips),
        "campaign_audit_rows": len(hist),
    }


HEADLINE = 4  # figures per stage in the printed summary; MLflow gets them all

STAGES: list[tuple[str, Callable[[dict[str, Any]], dict[str, Any]]]] = [
    ("synthetic world", _world),
    ("identity", _identity),
    ("audiences", _audiences),
    ("hillstrom", _hillstrom),
    ("a/b analysis", _experiments),
    ("uplift", _uplift),
    ("sandbox", _sandbox),
    ("attribution", _attribution),
    ("rl policy", _rl),
    ("coupon flash sale", _coupons),
    ("live loop", _live),
    ("campaign lifecycle", _campaigns),
]


def run_demo(
    users: int = 1_000_000, seed: int = 42, *, serve: bool = True, exit_after: bool | None = None
) -> pd.DataFrame:
    """Run every stage, log the demo run to MLflow, then start the model service.

    Stages log their own MLflow runs (each capability has its experiment); the
    ``demo`` experiment gets one run with every stage's figures and timings. The model
    service then starts and answers a handful of real requests; it keeps serving until
    Ctrl+C unless ``exit_after`` (default: the ``DEMO_EXIT`` flag) says to stop.
    """
    if exit_after is None:
        exit_after = env_flag("DEMO_EXIT")
    ctx: dict[str, Any] = {"users": users, "seed": seed}
    rows = []
    metrics: dict[str, float] = {}
    for name, stage in STAGES:
        click.secho(f"\n== {name}", bold=True)
        t0 = time.perf_counter()
        figures = stage(ctx)
        dt = time.perf_counter() - t0
        metrics.update({k: float(v) for k, v in figures.items() if isinstance(v, int | float)})
        metrics[f"seconds_{name.replace(' ', '_')}"] = dt
        shown = list(figures.items())[:HEADLINE]
        rows.append(
            {
                "stage": name,
                "seconds": round(dt, 2),
                "figures": ", ".join(f"{k}={_fmt(v)}" for k, v in shown),
            }
        )
    params = {"users": users, "seed": seed}
    with tracking.start_run("demo", run_name=f"demo-{users}", params=params):
        tracking.log_metrics(metrics)
    summary = pd.DataFrame(rows)
    click.secho("\n== summary", bold=True)
    with pd.option_context("display.max_colwidth", 200, "display.width", 200):
        click.echo(summary.to_string(index=False))
    s = settings()
    click.echo(f"\nMLflow: {s.mlflow_tracking_uri} (experiment 'demo'); data under {s.data_dir}")
    if serve:
        from mktlab.service.walkthrough import run_service_demo

        click.secho("\n== model service", bold=True)
        run_service_demo(exit_after=exit_after)
    return summary


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


@click.command("demo")
@click.option("--users", type=int, default=1_000_000, show_default=True)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option(
    "--serve/--no-serve", default=True, show_default=True, help="End with the live model service."
)
@click.option(
    "--exit/--stay",
    "exit_after",
    default=None,
    help="Stop the service after its requests (default: DEMO_EXIT).",
)
def demo_command(users: int, seed: int, serve: bool, exit_after: bool | None) -> None:
    """Run the main job end to end on the embedded defaults, ending with the live service."""
    from mktlab.coupons.connection import stop_embedded_on_signals

    # the demo starts the embedded redis-server: SIGTERM / SIGHUP must stop it too
    stop_embedded_on_signals()
    run_demo(users, seed, serve=serve, exit_after=exit_after)
