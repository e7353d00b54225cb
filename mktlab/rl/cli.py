"""``mktlab rl``: train an agent on the marketing environment and evaluate policies."""

from __future__ import annotations

import click


def _env_config(horizon: int, budget: float):
    from mktlab.rl.dynamics import EnvConfig

    return EnvConfig(horizon=horizon, budget_per_user=budget)


def _prior(use_world: bool):
    from mktlab.rl.dynamics import UserPrior

    if not use_world:
        return None
    from mktlab.datasets import load_world

    return UserPrior.from_world(load_world())


@click.group()
def rl() -> None:
    """Reinforcement-learning marketing policies (PPO/DQN vs honest baselines)."""


@rl.command()
@click.option("--algorithm", type=click.Choice(["ppo", "dqn"]), default="ppo", show_default=True)
@click.option(
    "--timesteps", type=int, default=2_000_000, show_default=True, help="User-weeks of experience."
)
@click.option("--users", type=int, default=512, show_default=True, help="Users stepped together.")
@click.option(
    "--time-budget", type=float, default=None, help="Stop training after this many seconds."
)
@click.option("--horizon", type=int, default=26, show_default=True, help="Weeks per episode.")
@click.option(
    "--budget", type=float, default=30.0, show_default=True, help="Campaign budget per user (yuan)."
)
@click.option(
    "--world/--no-world",
    default=False,
    show_default=True,
    help="Draw users from the generated world.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--eval-seeds", type=int, default=5, show_default=True, help="Held-out seeds to score on."
)
@click.option(
    "--eval-users", type=int, default=2000, show_default=True, help="Users per held-out seed."
)
@click.option(
    "--myopic-users",
    type=int,
    default=8000,
    show_default=True,
    help="Users logged to fit the myopic baseline.",
)
@click.option(
    "--register/--no-register",
    default=True,
    show_default=True,
    help="Register with alias @champion.",
)
@click.option("--model-name", default="rl_policy", show_default=True, help="Registered model name.")
def train(
    algorithm,
    timesteps,
    users,
    time_budget,
    horizon,
    budget,
    world,
    seed,
    eval_seeds,
    eval_users,
    myopic_users,
    register,
    model_name,
):
    """Train an agent, compare it with the baselines, log and register it."""
    from mktlab.rl.baselines import standard_baselines
    from mktlab.rl.evaluate import evaluate_policies
    from mktlab.rl.train import TrainConfig, log_policy, train_agent

    ec = _env_config(horizon, budget)
    prior = _prior(world)
    tc = TrainConfig(
        algorithm=algorithm,
        total_timesteps=timesteps,
        n_users=users,
        time_budget_s=time_budget,
        seed=seed,
    )
    res = train_agent(tc, ec, prior, progress=True)
    click.echo(f"trained {algorithm} for {res.timesteps:,} user-weeks in {res.wall_s:.1f} s")
    policies = [*standard_baselines(ec, prior, myopic_users=myopic_users), res.policy]
    ev = evaluate_policies(
        policies, ec, n_seeds=eval_seeds, n_users=eval_users, prior=prior, progress=True
    )
    click.echo(ev.summary().round(3).to_string(index=False))
    cmp = ev.compare(res.policy.name)
    click.echo(
        f"{cmp['policy']} vs {cmp['against']}: {cmp['diff']:+.3f} yuan/user "
        f"[{cmp['diff_ci_low']:+.3f}, {cmp['diff_ci_high']:+.3f}] ({cmp['relative_gain']:+.1%})"
    )
    out = log_policy(res, evaluation=ev, register=register, model_name=model_name)
    click.echo(
        f"logged run {out['run_id']}"
        + (f"; registered {model_name} v{out['version']} @champion" if register else "")
    )


@rl.command()
@click.option(
    "--model", "model_name", default="rl_policy", show_default=True, help="Registered model name."
)
@click.option("--alias", default="champion", show_default=True)
@click.option(
    "--seeds", type=int, default=10, show_default=True, help="Held-out seeds (populations)."
)
@click.option("--users", type=int, default=2000, show_default=True, help="Users per population.")
@click.option("--horizon", type=int, default=26, show_default=True)
@click.option("--budget", type=float, default=30.0, show_default=True)
@click.option("--world/--no-world", default=False, show_default=True)
@click.option(
    "--myopic-users",
    type=int,
    default=8000,
    show_default=True,
    help="Users logged to fit the myopic baseline.",
)
def evaluate(model_name, alias, seeds, users, horizon, budget, world, myopic_users):
    """Score the registered policy against the baselines on held-out seeds."""
    from mktlab.rl.baselines import standard_baselines
    from mktlab.rl.evaluate import evaluate_policies
    from mktlab.rl.train import PyfuncPolicy, load_policy

    ec = _env_config(horizon, budget)
    prior = _prior(world)
    agent = PyfuncPolicy(load_policy(model_name, alias), name=f"{model_name}@{alias}")
    ev = evaluate_policies(
        [*standard_baselines(ec, prior, myopic_users=myopic_users), agent],
        ec,
        n_seeds=seeds,
        n_users=users,
        prior=prior,
        progress=True,
    )
    click.echo(ev.summary().round(3).to_string(index=False))
    cmp = ev.compare(agent.name)
    click.echo(
        f"{cmp['policy']} vs {cmp['against']}: {cmp['diff']:+.3f} yuan/user "
        f"[{cmp['diff_ci_low']:+.3f}, {cmp['diff_ci_high']:+.3f}] ({cmp['relative_gain']:+.1%}); "
        f"target (>= 5%, CI > 0) {'met' if cmp['target_met'] else 'NOT met'}"
    )
