"""The README's benchmark figures, rendered from ``benchmarks/results/<name>.json``.

Each README section that quotes a benchmark sits between ``<!-- figures:<name> -->`` and
``<!-- /figures:<name> -->``; its text is :data:`SECTIONS`\\[name\\] applied to the results
file that ``benchmarks/<name>.py`` wrote (``write_results`` in ``_results.py``). A section
whose results file is missing, or holds no run at the sizes the text quotes (the ``full``
variant, or another one the text names), is left as it is.

    .venv/bin/python benchmarks/readme_figures.py           # say which sections differ
    .venv/bin/python benchmarks/readme_figures.py --check   # exit 1 when any differs
    .venv/bin/python benchmarks/readme_figures.py --write   # rewrite them in README.md
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RESULTS = Path(__file__).resolve().parent / "results"
MARKER = re.compile(r"^[ \t]*<!-- figures:(?P<name>[a-z0-9_]+) -->[ \t]*$", re.M)


class NotMeasured(KeyError):
    """The results file lacks a run or a figure the section quotes."""


def _need(doc: dict[str, Any], variant: str = "full") -> dict[str, Any]:
    if variant not in doc:
        raise NotMeasured(f"no {variant!r} run")
    return doc[variant]


def _m(n: float) -> str:
    """10_300_000 -> "10.3M"; 3_000_000 -> "3M"."""
    s = f"{n / 1e6:.1f}"
    return (s[:-2] if s.endswith(".0") else s) + "M"


def _k(n: float) -> str:
    return f"{n / 1e3:.0f}k"


# --------------------------------------------------------------------- the sections
def world(doc: dict) -> str:
    f = _need(doc)
    return (
        f"  1M users take about {f['seconds_per_1m_users']:.0f} s on {f['cores']} cores "
        f"(`benchmarks/world.py` prints users/s; measured on a {f['machine']})."
    )


def identity(doc: dict) -> str:
    f = _need(doc)
    return f"""Measured: on the world, pairwise F1 against the truth **0.995** (recency; 0.997 by
frequency), no person with two values of a single-valued type (`make demo`, notebook 01).
`.venv/bin/python benchmarks/identity.py`: {_m(f["observations"])} observations ({_m(f["people"])} people) end to end in
{f["end_to_end_s"]:.1f} s at load average {f["load_average"]:.0f} on {f["cores"]} cores ({f["resolve_cpu_s"]:.0f} s of CPU in `resolve`), peak {f["peak_gb"]:.1f} GB; on {_m(f["graph_edges"])} edges
mktlab is {f["vs_networkx"]:.1f}× faster than networkx and {f["vs_scipy"]:.1f}× slower than scipy's bare
`connected_components` while also applying the rules."""


def identity_spark(doc: dict) -> str:
    # the README quotes the largest run: "full" is 10M; a smaller one says its size
    runs = sorted(doc.values(), key=lambda r: r["observations"])
    if not runs:
        raise NotMeasured("no run")
    f = doc.get("full") or runs[-1]
    rounds = ", ".join(
        f"{r['edges'] / 1e6:.2f}M edges in {r['seconds']:.1f} s" for r in f["rounds"]
    )
    proj = f["projected_components_s"]
    return f"""Measured (`{f["command"]}`, {f["machine"]}): {_m(f["observations"])} observations
({_m(f["people"])} people): the local resolver {f["local_s"]:.1f} s, Spark `local[{f["spark_cores"]}]` {f["spark_s"]:.0f} s
({f["ratio"]:.0f}× slower on one machine; session start {f["spark_start_s"]:.0f} s more); same mapping, links and
audit: **{"yes" if f["same_mapping"] else "NO"}**. Connected components: {len(f["rounds"])} large-star / small-star rounds
({rounds}), {f["components_s"]:.0f} s; a round's fixed cost (a 2k-observation run) is {f["fixed_round_s"]:.1f} s. The part
of each round above that cost is shuffle work that divides by the executor cores: projected
~{proj["8"]:.0f} s on 8 cores, ~{proj["32"]:.0f} s on 32; the fixed part does not shrink."""


# The README shortens two long expressions; by position in benchmarks/audience.py
AUDIENCE_SHOWN = {
    2: '`(gender == "F" \\| lifecycle == "new") & frequency_90d >= 3 & region in (…) & sessions_30d between 5 and 20`'
}


def audience(doc: dict) -> str:
    f = _need(doc)
    rows = []
    for i, e in enumerate(f["expressions"]):
        shown = AUDIENCE_SHOWN.get(i, "`" + e["expr"].replace("|", "\\|") + "`")
        rows.append(
            f"| {shown} | {e['mktlab_ms']:.1f} | {e['duckdb_ms']:.0f} | {e['ratio']:.1f}× |"
        )
    agree = "every\nsize identical to SQL" if f["all_agree"] else "SIZES DIFFER from SQL"
    table = "\n".join(rows)
    return f"""Measured (`.venv/bin/python benchmarks/audience.py`, {_m(f["users"])} users ×
{f["tags"]} tags, {f["machine"]}): store built in {f["build_s"]:.1f} s, {f["peak_gb"]:.2f} GB peak including the input
table; five-predicate expressions {f["min_ms"]:.1f}–{f["max_ms"]:.1f} ms (median {f["median_ms"]:.1f} ms, target < 50 ms); DuckDB SQL
over the columnar table ({f["duckdb_threads"]} threads, ENUM categoricals) takes {f["duckdb_min_ms"]:.0f}–{f["duckdb_max_ms"]:.0f} ms for the same
expressions, so mktlab is {f["ratio_min"]:.1f}–{f["ratio_max"]:.1f}× faster per query (median {f["ratio_median"]:.1f}×; target ≥ 20×); {agree}. Per expression (mktlab / DuckDB ms, ratio):

| expression | mktlab | DuckDB | ratio |
| --- | ---: | ---: | ---: |
{table}

Returning the members (`evaluate`, the `with_members_ms` column, including the conversion
to a roaring bitmap) takes {f["with_members_min_ms"]:.0f}–{f["with_members_max_ms"]:.0f} ms."""


def audience_chdb(doc: dict) -> str:
    """The chdb engine beside the local one and DuckDB (the largest size measured)."""
    if not doc:
        raise NotMeasured("no run")
    f = max(doc.values(), key=lambda v: v["users"])
    rows = []
    for i, e in enumerate(f["expressions"]):
        shown = AUDIENCE_SHOWN.get(i, "`" + e["expr"].replace("|", "\\|") + "`")
        rows.append(
            f"| {shown} | {e['local_ms']:.1f} | {e['chdb_ms']:.1f} | {e['duckdb_ms']:.0f} | "
            f"{e['chdb_vs_local']:.1f}× | {e['duckdb_vs_chdb']:.1f}× |"
        )
    agree = "every size identical" if f["all_agree"] else "SIZES DIFFER"
    table = "\n".join(rows)
    return f"""Measured (`{f["command"]}`, {_m(f["users"])} users × {f["tags"]} tags, {f["machine"]}):
the chdb engine builds its states in {f["chdb_build_s"]:.1f} s (local engine {f["local_build_s"]:.1f} s) and holds
{f["chdb_states_mb"]:,.0f} MB of `groupBitmap` states (local bitmaps {f["local_store_mb"]:,.0f} MB; process RSS
+{f["chdb_rss_gb"]:.2f} GB after the build); {agree} to the local engine. Per expression (ms; ratios in one run):

| expression | local | chdb | DuckDB | chdb / local | DuckDB / chdb |
| --- | ---: | ---: | ---: | ---: | ---: |
{table}"""


def sandbox(doc: dict) -> str:
    f = _need(doc)
    return f"""Measured: coverage of the true incremental conversions over 30 worlds: IPS 0.90, DR 0.93,
DR intervals narrower (tests). `.venv/bin/python benchmarks/sandbox.py`: {_m(f["events"])} events
through {f["rules"]} rules in {f["batch_s"]:.1f} s (target < 60 s), {f["ratio_naive"]:.0f}× a per-event Python loop ({f["machine"]})."""


def rl(doc: dict) -> str:
    f = _need(doc)
    return f"""Measured (`.venv/bin/python benchmarks/rl.py`, {f["machine"]}): {_m(f["vectorised_steps_per_s"])} user-steps/s vectorised ({f["vectorised_ratio"]:,.0f}× the
single-user gym loop); PPO after {f["ppo_seconds"]:.0f} s of training returns {f["ppo_return"]:.2f} per user vs {f["best_baseline_return"]:.2f} for the
best baseline ({f["best_baseline_label"]}): {f["relative_gain"]:+.1%}, 95% CI of the paired difference [{f["diff_ci_low"]:+.2f}, {f["diff_ci_high"]:+.2f}].
The myopic uplift-greedy policy scores below doing nothing: it over-messages and fatigue
drives churn — exactly what a sequential policy avoids."""


def uplift(doc: dict) -> str:
    f = _need(doc)
    return f"""Measured (`.venv/bin/python benchmarks/uplift.py`, {f["machine"]}): Hillstrom, Womens e-mail vs none,
outcome visit, {f["repeats"]} stratified 70/30 splits, champion {f["champion_label"]}: Qini {f["qini_mean"]:.4f} [{f["qini_ci_lo"]:.4f},
{f["qini_ci_hi"]:.4f}], **uplift@30% {f["uplift_at_30_mean"]:.4f} [{f["uplift_at_30_ci_lo"]:.4f}, {f["uplift_at_30_ci_hi"]:.4f}]** (target ≥ 0.07; random targeting {f["random_ate"]:.3f}).
All {f["learners"]} learners with {f["folds"]}-fold CV in {f["train_s"]:.0f} s (target < 180 s). Scoring from the registered
pyfunc {_k(f["pyfunc_rows_per_s"])} rows/s (bare LightGBM {_k(f["lightgbm_rows_per_s"])}). On the world,
the champion's PEHE {f["world_pehe"]:.3f} {"beats" if f["world_pehe"] < f["world_pehe_t_learner"] else "does not beat"} the T-learner's {f["world_pehe_t_learner"]:.3f}, and its targeting profit is {f["world_ratio_feature_oracle"]:.0%} of
an oracle fitted to the same features ({f["world_ratio_oracle"]:.0%} of one that knows each user's true uplift,
which no model can reach: the world draws quadrants at random given the features)."""


def attribution(doc: dict) -> str:
    f = _need(doc)
    return f"""Measured (`.venv/bin/python benchmarks/attribution.py`, {f["machine"]}): {_m(f["journeys"])}
journeys × {f["channels"]} channels, Markov + Shapley together in {f["total_s"]:.1f} s (target < 10 s); brute-force
coalition enumeration matches to {max(f["max_abs_diff"], 1e-16):.0e} and is {f["brute_ratio"]:,.0f}× slower at {f["brute_channels"]} channels.
On the world, every method ranks channels with Spearman ≈ 0.8 against the true
incremental conversions, Markov ≈ 0.64: all of them over-credit display, a frequent
channel with a small effect — attribution is correlational, which is what the notebook
shows next to the truth."""


def experiments(doc: dict) -> str:
    f = _need(doc)
    p = f["visit_p_adjusted_max"]
    bound = f"1e{math.floor(math.log10(p)) + 1}" if p > 0 else "1e-300"
    return f"""Measured (`.venv/bin/python benchmarks/experiments.py`, {f["machine"]}): assignment of {_m(f["ids"])} string ids at
{_m(f["assign_ids_per_s"])} ids/s ({f["assign_ratio"]:.1f}× a hashlib loop); A/A tests peeked at 28 looks: naive daily z-tests give
{f["naive_fpr_28_looks"]:.1%} false positives, the confidence sequences ≤ {f["max_sequential_fpr"]:.1%} (α = 5%). On Hillstrom, visit
lift vs No E-Mail: Mens {f["visit_lift_mens_pp"]:+.1f} pp, Womens {f["visit_lift_womens_pp"]:+.1f} pp (Holm-adjusted p < {bound})."""


def coupons(doc: dict) -> str:
    f = _need(doc)
    rows = []
    for variant in sorted(doc, key=lambda v: doc[v].get("batch_size", 0)):
        if variant == "quick" or variant.startswith("cluster"):
            continue
        r = doc[variant]
        label = f"{r['batch_size']}" + (" (default)" if variant == "full" else "")
        rows.append(
            f"| {label} | {r['ledger_throughput']:,.0f} ({r['ledger_p99_ms']:.1f} ms) | "
            f"{r['outbox_throughput']:,.0f} ({r['outbox_p99_ms']:.1f} ms) |"
        )
    table = "\n".join(rows)
    exact = "exactly" if f["correct"] else "NOT exactly"
    return f"""Measured with `.venv/bin/python benchmarks/coupons.py` ({f["workers"]} client processes — one per core,
Redis needs the rest — {f["shards"]} shards, {f["requests"] // 1000}k requests against stock {f["stock"] // 1000}k, 10% duplicate users,
2% retried requests; {f["machine"]}):
the ceiling is ~{_k(f["ceiling_pipelined_rps"])} trivial EVALSHA/s pipelined ({_k(f["ceiling_unpipelined_rps"])} unpipelined); the naive approach
issued {f["naive_issued"]:,} coupons for a stock of {f["naive_stock"]:,}; mktlab issued {exact} {f["stock"]:,} with no duplicate
and ledger == Redis. p99 is the latency of the `issue_many` call that carried
the decision.

| `--batch-size` | `durability="ledger"` decisions/s (p99) | `durability="outbox"` decisions/s (p99) |
| --- | --- | --- |
{table}{_coupons_cluster(doc.get("cluster-3x1"))}"""


def _coupons_cluster(f: dict | None) -> str:
    if f is None:
        return ""
    dup = f["cluster_ledger_duplicates"] + f["cluster_outbox_duplicates"]
    over = f["cluster_ledger_over_issued"] + f["cluster_outbox_over_issued"]
    return f"""

The same workload on a local Redis Cluster of {f["masters"]} masters with {f["replicas"]} replica each (six
`redis-server` processes sharing the cores with the clients; every write confirmed by the
master's replica with `WAIT` before it is answered), against one Redis in the same run
({f["machine"]}):

| `durability` | single Redis decisions/s (p99) | Redis Cluster decisions/s (p99) | cluster / single |
| --- | --- | --- | --- |
| `"ledger"` | {f["single_ledger_throughput"]:,.0f} ({f["single_ledger_p99_ms"]:.1f} ms) | {f["cluster_ledger_throughput"]:,.0f} ({f["cluster_ledger_p99_ms"]:.1f} ms) | {f["cluster_ledger_ratio"]:.2f}× |
| `"outbox"` | {f["single_outbox_throughput"]:,.0f} ({f["single_outbox_p99_ms"]:.1f} ms) | {f["cluster_outbox_throughput"]:,.0f} ({f["cluster_outbox_p99_ms"]:.1f} ms) | {f["cluster_outbox_ratio"]:.2f}× |

On the cluster it issued exactly {f["cluster_ledger_issued"]:,} and {f["cluster_outbox_issued"]:,} coupons for a stock of {f["stock"]:,}: {dup} duplicates,
{over} over-issued."""


def service(doc: dict) -> str:
    f = _need(doc)
    rows = [
        f"| {f['duration_s']:.0f} s, {f['connections']} connections (default) | "
        f"{f['issue_http_rps']:,.0f} ({f['issue_http_p50_ms']:.1f} / {f['issue_http_p99_ms']:.1f} ms) | "
        f"{f['uplift_http_rps']:,.0f} ({f['uplift_http_p50_ms']:.1f} / {f['uplift_http_p99_ms']:.1f} ms) |"
    ]
    for variant in sorted(v for v in doc if v.startswith("connections-")):
        r = doc[variant]
        rows.append(
            f"| {r['duration_s']:.0f} s, `--connections {r['connections']}` | "
            f"{r['issue_http_rps']:,.0f} ({r['issue_http_p50_ms']:.1f} / {r['issue_http_p99_ms']:.1f} ms) | "
            f"{r['uplift_http_rps']:,.0f} ({r['uplift_http_p50_ms']:.1f} / {r['uplift_http_p99_ms']:.1f} ms) |"
        )
    table = "\n".join(rows)
    errors = all(doc[v].get("issue_http_errors", 1) == 0 and doc[v].get("uplift_http_errors", 1) == 0
                 for v in doc if v != "quick")  # fmt: skip
    zero = (
        "Zero errors and zero over-issue"
        if errors and f["zero_over_issue"]
        else "ERRORS or over-issue"
    )
    runs = [doc[v] for v in doc if v == "full" or v.startswith("connections-")]
    met = (
        "met for " + ("both" if len(runs) == 2 else "every run")
        if all(r.get("target_met") for r in runs)
        else "NOT met in every run"
    )
    return f"""Measured (`.venv/bin/python benchmarks/service.py`: a load generator in a separate
process keeps N keep-alive connections busy on loopback for {f["duration_s"]:.0f} s per endpoint; {f["workers"]} service
workers × 16 request threads; {f["durability"]} durability; one-row `/uplift` requests; 10% of
`/issue` requests are retries; {f["machine"]}). {zero}
against the ledger in every run:

| run | `/issue` req/s (p50 / p99) | `/uplift` req/s (p50 / p99) |
| --- | --- | --- |
{table}

Target: ≥ 500 req/s with p99 < 100 ms and zero errors over 60 s — {met}. The
benchmark prints throughput per tenth of the run. The
same work in-process (the floor, one thread) runs {f["issue_in_process_rps"]:,.0f} `/issue` and {f["uplift_in_process_rps"]:,.0f}
one-row `/uplift` calls per second."""


def live(doc: dict) -> str:
    variant = "full" if "full" in doc else "quick"
    f = _need(doc, variant)
    lat = f["latency"][-1] if f.get("latency") else None
    js = f["journey_state"]
    t = f["targets"]
    lines = [
        f"Measured (`.venv/bin/python benchmarks/live.py{' --quick' if variant == 'quick' else ''}`, "
        f"{f['machine']}): {f['events']:,} events through {f['rules']:,} rules and "
        f"{f['journeys']} journeys, {f['action_share']:.0%} of events leading to a coupon or "
        f"message, {f['workers']} workers on {f['partitions']} Redis Streams partitions:",
        "",
        "| figure | measured | target |",
        "| --- | --- | --- |",
        f"| events/s end to end (workers running, start-up excluded) | {f['eps']:,.0f} "
        f"({f['ratio']:.1f}× the anchor) | ≥ 20,000 {'✓' if t['eps'] else '✗'} |",
        f"| anchor: each event as one `POST /issue` over HTTP | {f['anchor_eps']:,.0f} | |",
    ]
    for row in f.get("latency") or ():  # every publishing rate; the target is judged at the last
        judged = row is lat
        mark = ("✓" if t["p99"] else "✗") if judged else ("✓" if row["p99_ms"] < 200 else "✗")
        lines.append(
            f"| p99 published → action recorded at {row['rate_published']:,.0f} events/s "
            f"| {row['p99_ms']:,.0f} ms (p50 {row['p50_ms']:,.0f} ms) | < 200 ms {mark} |"
        )
    lines.append(
        f"| journey state per active (user, journey) in Redis | {js['active_value_bytes']:.0f} B value, "
        f"{js['active_entry_bytes']:.0f} B with its field | ≤ 200 B {'✓' if t['state_bytes'] else '✗'} |"
    )
    c = f["correctness"]
    lines.append(
        f"| coupons in the ledger = coupon decisions; deliveries = message decisions | "
        f"{c['ledger_coupons']:,} = {c['coupon_decisions_ok']:,}; {c['deliveries']:,} = "
        f"{c['message_decisions_ok']:,}, 0 duplicates | exact {'✓' if t['correct'] else '✗'} |"
    )
    return "\n".join(lines)


def bus(doc: dict) -> str:
    f = _need(doc)
    rows = []
    for name, b in f["backends"].items():
        pub = next(v for k, v in b.items() if k.startswith("bus_publish"))
        con = b["bus_consume_and_ack"]
        rows.append(f"| {name} ({b['server']}) | {pub['events_per_s']:,.0f} ({b['publish_ratio']:.1f}×) | "
                    f"{con['events_per_s']:,.0f} ({b['consume_ratio']:.1f}×) |")  # fmt: skip
    return (
        f"The bus alone (`.venv/bin/python benchmarks/bus.py`, {f['partitions']} partitions, batches of "
        f"{f['batch']:,}; anchors: one round trip or confirm per event; {f['machine']}):\n\n"
        "| backend | publish events/s (× anchor) | consume + ack events/s (× anchor) |\n"
        "| --- | --- | --- |\n" + "\n".join(rows)
    )


def messaging(doc: dict) -> str:
    f = _need(doc)
    pg = f.get("send_many_postgresql")
    tail = f", {pg['msgs_per_s']:,.0f}/s on PostgreSQL" if pg else ""
    return (
        f"The gateway alone (`.venv/bin/python benchmarks/messaging.py --full`): `send_many` of "
        f"{f['send_many']['messages']:,} messages in batches of {f['send_many']['batch']:,} at "
        f"{f['send_many']['msgs_per_s']:,.0f}/s on SQLite{tail}, {f['ratio']:.1f}× a "
        f"one-transaction-per-message `send` loop ({f['naive_send']['msgs_per_s']:,.0f}/s), same run."
    )


def uplift_latency(doc: dict) -> str:
    f = _need(doc)
    return (
        f"`/uplift` scores raw rows without DataFrames ({f['one_row_p50_ms']:.2f} ms per one-row call at the\n"
        f"median, {f['one_row_ratio']:.1f}× MLflow's pyfunc DataFrame path; {f['machine']}:\n"
        "`.venv/bin/python benchmarks/uplift_latency.py`)."
    )


def campaigns(doc: dict) -> str:
    f = _need(doc)
    return (
        f"Measured (`.venv/bin/python benchmarks/campaigns.py`, {f['machine']}): {f['campaigns']} launched campaigns "
        f"with {f['issued_per_campaign']:,} issued coupons each, watcher interval {f['interval_s']:g} s:\n\n"
        "| figure | measured | target |\n| --- | --- | --- |\n"
        f"| one watcher pass (Redis vs ledger, metrics, breakers) over all of them | {f['tick_ms']:.0f} ms "
        f"({f['pass_ratio']:.1f}× faster than one repairing `reconcile` pass, {f['anchor_pass_ms']:,.0f} ms) | |\n"
        f"| reconciliation delay | ≤ {f['delay_bound_s']:.2f} s (a once-a-minute batch job: ≤ "
        f"{f['anchor_delay_bound_s']:.1f} s, {f['delay_ratio']:.0f}× longer) | < 60 s ✓ |\n"
        f"| planted over-issue → paused (database and Redis) | p50 {f['over_issue_p50_s']:.2f} s, max "
        f"{f['over_issue_max_s']:.2f} s over {f['trials']} trials | < 60 s ✓ |\n"
        f"| planted harmful variant → paused | p50 {f['harmful_p50_s']:.2f} s, max {f['harmful_max_s']:.2f} s | "
        "< 60 s ✓ |"
    )


_RENDERERS = (world, identity, identity_spark, audience, audience_chdb, sandbox, rl, uplift,
              attribution, experiments, coupons, service, uplift_latency, bus, messaging, live, campaigns)  # fmt: skip
SECTIONS: dict[str, Callable[[dict], str]] = {fn.__name__: fn for fn in _RENDERERS}


# ------------------------------------------------------------------------- machinery
def find_sections(text: str) -> dict[str, tuple[int, int]]:
    """name -> (start, end) character offsets of the text between a section's markers."""
    out: dict[str, tuple[int, int]] = {}
    for m in MARKER.finditer(text):
        name = m.group("name")
        close = re.compile(rf"^[ \t]*<!-- /figures:{re.escape(name)} -->[ \t]*$", re.M)
        end = close.search(text, m.end())
        if end is None:
            raise SystemExit(f"README: <!-- figures:{name} --> has no closing marker")
        if name in out:
            raise SystemExit(f"README: two sections named figures:{name}")
        out[name] = (m.end() + 1, end.start() - 1)  # the lines in between, no final newline
    return out


def render(name: str, results: Path = RESULTS) -> str | None:
    """The section's text from its results file; None when not measured (yet)."""
    path = results / f"{name}.json"
    if not path.exists():
        return None
    try:
        return SECTIONS[name](json.loads(path.read_text()))
    except (NotMeasured, KeyError):
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 when a section differs")
    mode.add_argument("--write", action="store_true", help="rewrite the sections in the README")
    ap.add_argument("--readme", type=Path, default=README)
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    text = args.readme.read_text()
    spans = find_sections(text)
    unknown = sorted(set(spans) - set(SECTIONS))
    if unknown:
        print(f"README sections without a renderer: {unknown}")
        return 1
    differ, new = [], text
    # replaced from the end of the file backwards, so earlier offsets stay valid
    for name, (start, end) in sorted(spans.items(), key=lambda kv: -kv[1][0]):
        rendered = render(name, args.results)
        if rendered is not None and rendered != text[start:end]:
            differ.append(name)
            new = new[:start] + rendered + new[end:]
    for name, (start, end) in sorted(spans.items(), key=lambda kv: kv[1][0]):
        rendered = render(name, args.results)
        if rendered is None:
            print(f"  {name:<15} not measured at the quoted sizes: left as it is")
        elif name not in differ:
            print(f"  {name:<15} matches results/{name}.json")
        else:
            print(f"  {name:<15} DIFFERS from results/{name}.json")
            if not args.write:
                diff = difflib.unified_diff(text[start:end].splitlines(), rendered.splitlines(),
                                            "README.md", f"results/{name}.json", lineterm="", n=0)  # fmt: skip
                print("\n".join("      " + line for line in diff))
    if args.write and differ:
        tmp = args.readme.with_suffix(".md.tmp")
        tmp.write_text(new)
        tmp.replace(args.readme)
        print(f"rewrote {len(differ)} section(s): {', '.join(sorted(differ))}")
    return 1 if args.check and differ else 0


if __name__ == "__main__":
    sys.exit(main())
