"""Benchmark mktlab.rl: environment throughput, training wall time, PPO vs baselines.

Anchors measured in the same run:

* throughput — the gymnasium single-user ``MarketingEnv`` stepped in a Python loop (what
  a textbook gym setup does) vs the vectorised simulator stepping a whole population
  (target >= 50,000 user-steps/s), and the SB3 ``MarketingVecEnv`` wrapper around it;
* quality — PPO (and DQN) vs every baseline on the same held-out seeds; target: PPO's
  return per user >= 1.05 x the best baseline's, with the 95% CI of the paired
  difference above zero, after < 10 minutes of training.

Run: ``.venv/bin/python benchmarks/rl.py`` (full) or ``--quick``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from _results import write_results  # benchmarks/_results.py

# how the README names the baselines
BASELINE_LABELS = {"never_treat": "never treat", "rfm_rule": "the RFM rule",
                   "myopic_uplift": "myopic uplift-greedy"}  # fmt: skip


def _throughput(n_users: int, single_steps: int) -> dict[str, float]:
    from mktlab.rl import MarketingEnv, MarketingSimulator, MarketingVecEnv

    env = MarketingEnv()
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    acts = rng.integers(0, 5, size=single_steps)
    t = time.perf_counter()
    for a in acts:
        _, _, term, _, _ = env.step(int(a))
        if term:
            env.reset()
    single = single_steps / (time.perf_counter() - t)

    sim = MarketingSimulator(n_users=n_users)
    sim.reset(0)
    a = rng.integers(0, 5, size=n_users)
    steps = 0
    t = time.perf_counter()
    while time.perf_counter() - t < 3.0:
        if sim.done:
            sim.reset(steps)
        sim.step(a)
        steps += n_users
    vec = steps / (time.perf_counter() - t)

    venv = MarketingVecEnv(n_users=n_users, seed=0)
    venv.reset()
    steps = 0
    t = time.perf_counter()
    while time.perf_counter() - t < 3.0:
        venv.step(a)
        steps += n_users
    sb3 = steps / (time.perf_counter() - t)
    return {"single": single, "vectorised": vec, "sb3_vecenv": sb3}


def _prior(world: str | None, world_users: int):
    from mktlab.datasets import load_world, make_world
    from mktlab.rl import UserPrior

    if world:
        return UserPrior.from_world(load_world(world))
    with tempfile.TemporaryDirectory(prefix="rl-bench-world-") as tmp:
        # the prior copies what it needs into memory, so the world can go afterwards
        return UserPrior.from_world(make_world(world_users, seed=7, out_dir=Path(tmp) / "world"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=10_000, help="population width for throughput")
    ap.add_argument("--single-steps", type=int, default=30_000, help="steps of the gym-loop anchor")
    ap.add_argument("--timesteps", type=int, default=4_000_000, help="PPO user-weeks")
    ap.add_argument("--time-budget", type=float, default=540.0, help="PPO training budget (s)")
    ap.add_argument("--train-users", type=int, default=512, help="users per PPO step")
    ap.add_argument("--dqn-budget", type=float, default=180.0, help="DQN budget (s); 0 skips DQN")
    ap.add_argument("--eval-seeds", type=int, default=20)
    ap.add_argument("--eval-users", type=int, default=3_000)
    ap.add_argument("--world", default=None, help="world folder (default: generate 20k users)")
    ap.add_argument("--world-users", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    args = ap.parse_args(argv)
    if args.quick:
        args.users, args.single_steps = 2_000, 3_000
        args.timesteps, args.time_budget, args.dqn_budget = 600_000, 90.0, 20.0
        args.eval_seeds, args.eval_users, args.world_users = 4, 1_000, 5_000

    import torch

    torch.set_num_threads(1)
    from mktlab.rl import EnvConfig, TrainConfig, evaluate_policies, standard_baselines, train_agent

    print("== environment throughput (user-steps/s)")
    tp = _throughput(args.users, args.single_steps)
    print(f"gym MarketingEnv, Python loop (anchor): {tp['single']:>12,.0f}")
    print(f"MarketingSimulator, {args.users:,} users/step: {tp['vectorised']:>12,.0f}")
    print(f"MarketingVecEnv (SB3 wrapper):           {tp['sb3_vecenv']:>12,.0f}")
    ratio = tp["vectorised"] / tp["single"]
    print(
        f"ratio vectorised / anchor: {ratio:,.0f}x; target >= 50,000/s: "
        f"{'MET' if tp['vectorised'] >= 50_000 else 'NOT MET'}"
    )

    print("\n== calibration")
    t = time.perf_counter()
    prior = _prior(args.world, args.world_users)
    cfg = EnvConfig()
    shares = ", ".join(f"{k} {v:.1%}" for k, v in prior.segment_shares().items())
    print(
        f"users from {prior.source} ({len(prior):,} prototypes; {shares}) in {time.perf_counter() - t:.1f} s"
    )

    print("\n== training")
    ppo = train_agent(
        TrainConfig(
            total_timesteps=args.timesteps,
            n_users=args.train_users,
            time_budget_s=args.time_budget,
            seed=args.seed,
        ),
        cfg,
        prior,
        progress=False,
    )
    print(
        f"PPO: {ppo.timesteps:,} user-weeks in {ppo.wall_s:.1f} s "
        f"({ppo.timesteps / ppo.wall_s:,.0f} user-weeks/s incl. learning)"
    )
    agents = [ppo.policy]
    if args.dqn_budget > 0:
        dqn = train_agent(
            TrainConfig(
                algorithm="dqn",
                total_timesteps=args.timesteps,
                n_users=256,
                time_budget_s=args.dqn_budget,
                seed=args.seed,
                learning_rate=5e-4,
                batch_size=512,
            ),
            cfg,
            prior,
        )
        print(f"DQN: {dqn.timesteps:,} user-weeks in {dqn.wall_s:.1f} s")
        agents.append(dqn.policy)

    print("\n== held-out evaluation")
    t = time.perf_counter()
    baselines = standard_baselines(cfg, prior)
    ev = evaluate_policies(
        [*baselines, *agents], cfg, n_seeds=args.eval_seeds, n_users=args.eval_users, prior=prior
    )
    print(
        f"{len(baselines) + len(agents)} policies x {args.eval_seeds} seeds x {args.eval_users:,} users "
        f"in {time.perf_counter() - t:.1f} s"
    )
    import pandas as pd

    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(ev.summary().round(3).to_string(index=False))
        share = ev.action_share[
            ev.action_share["policy"].isin(["ppo", "myopic_uplift", "rfm_rule"])
        ]
        print("\naction share by hidden segment:")
        print(share.round(2).to_string(index=False))
    base_names = [b.name for b in baselines]
    summ = ev.summary()
    best = summ[summ["policy"].isin(base_names)].iloc[0]["policy"]
    cmp = ev.compare("ppo", best)
    print(
        f"\nPPO vs best baseline ({best}): {cmp['policy_return']:.3f} vs {cmp['against_return']:.3f} "
        f"yuan/user; diff {cmp['diff']:+.3f} [95% CI {cmp['diff_ci_low']:+.3f}, "
        f"{cmp['diff_ci_high']:+.3f}] = {cmp['relative_gain']:+.1%}"
    )
    met = cmp["target_met"] and ppo.wall_s < 600
    print(
        f"target (>= +5%, CI of the difference > 0, training < 600 s): {'MET' if met else 'NOT MET'}"
    )
    write_results(
        "rl",
        {"single_steps_per_s": tp["single"], "vectorised_steps_per_s": tp["vectorised"],
         "sb3_steps_per_s": tp["sb3_vecenv"], "vectorised_ratio": ratio,
         "ppo_timesteps": ppo.timesteps, "ppo_seconds": ppo.wall_s,
         "ppo_return": cmp["policy_return"], "best_baseline": best,
         "best_baseline_label": BASELINE_LABELS.get(best, best),
         "best_baseline_return": cmp["against_return"], "diff": cmp["diff"],
         "diff_ci_low": cmp["diff_ci_low"], "diff_ci_high": cmp["diff_ci_high"],
         "relative_gain": cmp["relative_gain"], "target_met": bool(met),
         "returns": summ.set_index("policy")["return_per_user"].to_dict()},
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
