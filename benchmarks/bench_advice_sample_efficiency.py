"""Does the advisor's advice speed learning? Phase 3 hybrid against RL only, on the planted market.

The Phase 3 hybrid and the same policy with the advisor off start from the same fresh network
and are compared at equal environment steps on held-out sessions.

Input: a Kedro project folder in which ``kedro run --env planted --to-nodes=evaluate_advisor_skill``
has run (``clean_bars``, ``advisor_bar_features``, ``market_spec``, ``advice_cache``,
``advisor_adapter``; ``model_input_features``, or the ``bar_features``, ``day_splits`` and
``feature_scaler`` it is computed from), loaded with Kedro's own API (env ``planted``).

1. The fine-tuned advisor's answers to every flat-account prompt of the train and test days are
   put in the project's advice cache (:func:`~hybrid_trader.advisor.prescore.prescore`); after
   that, training and backtests read advice from the cache only (``cached`` mode: no model call
   while training, so runs are fast and repeat exactly). A state whose prompt is not cached (an
   open position, or a flat account whose drawdown buffer is no longer full) gets no advice.
2. The oracle of the planted edge is backtested once on the test sessions.
3. For each seed and each variant (``hybrid``: the advisor on; ``rl_only``: ``use_advisor``
   off, so the observation never carries advice), a fresh Phase 2 MaskablePPO (random
   initialisation from the seed, Phase 2's ``net_arch``) becomes a Phase 3 model
   (:func:`~hybrid_trader.agents.adapter.phase3_from_phase2`, fusion ``--fusion``) that trains
   on train days in chunks up to each checkpoint of ``--steps``. Both variants of a seed start
   from the same weights, environments seeds and PPO settings: 32 environments x 64 steps
   (2,048 steps per update), 5 epochs, batch 256, constant learning rate 3e-4 (constant, so
   that a checkpoint's model does not depend on the later ones), no adapter-only warm-up;
   every other PPO value from ``phase3.ppo``. An update is a whole rollout, so a checkpoint is
   reached at the first multiple of 2,048 at or past it (``env_steps``: equal for both variants).
4. At each checkpoint, the deterministic masked policy is backtested on the test sessions (one
   full-session episode each) and scored against the oracle
   (:func:`~hybrid_trader.evaluation.learning.learning_figures`).

Figures (per seed, variant and checkpoint, on the test sessions):

* ``oracle_capture``: the agent's total net P&L / the oracle's total net P&L;
* ``direction_agreement``: share of the agent's entries on the oracle's side, among entries
  where the oracle has a side;
* ``mean_daily_pnl``: mean net P&L per session ($).

Statistics (:func:`paired_statistics`), per checkpoint: each variant's mean over seeds, and
the paired difference hybrid - rl_only per seed: its mean, standard error (sample standard
deviation over seeds / sqrt(n)) and 95% t-interval (mean +- t(0.975, n - 1) x standard error).

    .venv/bin/python benchmarks/bench_advice_sample_efficiency.py [--project-dir .] [--seeds 1 2 3 4 5]
        [--steps 10000,20000,40000,80000] [--fusion fixed] [--out data/08_reporting/advice_sample_efficiency]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd
from scipy import stats

METRICS = ("oracle_capture", "direction_agreement", "mean_daily_pnl")
VARIANTS = ("hybrid", "rl_only")
# The rollout shape for checkpoints 10k steps apart: 2,048 steps an update, five updates by the first.
ROLLOUT = {"n_envs": 32, "n_steps": 64, "n_epochs": 5, "batch_size": 256, "learning_rate": 3e-4,
           "lr_schedule": "constant"}
REPO_ROOT = Path(__file__).resolve().parents[1]


def paired_statistics(runs: Iterable[Mapping[str, Any]], metrics: Iterable[str] = METRICS,
                      confidence: float = 0.95) -> list[dict[str, Any]]:
    """Per checkpoint (``steps``), each variant's mean of each metric over seeds, and the paired
    difference ``hybrid - rl_only`` over the seeds that have both (and a finite value of both).

    Args:
        runs: One row per seed, variant and checkpoint: ``seed``, ``variant`` (``hybrid`` or
            ``rl_only``), ``steps``, ``env_steps`` and each metric.

    Returns:
        One dict per checkpoint in step order: ``steps``, ``env_steps`` (the largest recorded),
        ``seeds`` (paired seeds), ``hybrid`` and ``rl_only`` (metric -> mean over that variant's
        seeds) and ``difference`` (metric -> ``mean``, ``se`` = sample standard deviation /
        sqrt(n), ``lower``/``upper`` = mean -+ t(1 - (1 - confidence) / 2, n - 1) x se, ``n``,
        ``per_seed`` {seed: difference}). With one pair, ``se`` and the interval are NaN.
    """
    metrics = list(metrics)
    frame = pd.DataFrame(list(runs))
    out = []
    for steps, block in frame.groupby("steps", sort=True):
        by_variant = {v: block[block["variant"] == v].set_index("seed") for v in VARIANTS}
        row: dict[str, Any] = {"steps": int(steps), "env_steps": int(block["env_steps"].max()),
                               "seeds": sorted(int(s) for s in set(by_variant["hybrid"].index)
                                               & set(by_variant["rl_only"].index)),
                               "difference": {}}
        for variant in VARIANTS:
            row[variant] = {m: float(by_variant[variant][m].astype(float).mean()) if len(by_variant[variant])
                            else float("nan") for m in metrics}
        for metric in metrics:
            diffs = {}
            for seed in row["seeds"]:
                a = float(by_variant["hybrid"].loc[seed, metric])
                b = float(by_variant["rl_only"].loc[seed, metric])
                if math.isfinite(a) and math.isfinite(b):
                    diffs[seed] = a - b
            values = np.array(list(diffs.values()), dtype=float)
            n = len(values)
            mean = float(values.mean()) if n else float("nan")
            se = float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
            half = float(stats.t.ppf(1 - (1 - confidence) / 2, n - 1) * se) if n > 1 else float("nan")
            row["difference"][metric] = {"mean": mean, "se": se, "lower": mean - half, "upper": mean + half,
                                         "n": n, "per_seed": diffs}
        out.append(row)
    return out


def _num(value: float, fmt: str = ".3f") -> str:
    return format(value, fmt) if isinstance(value, (int, float)) and math.isfinite(value) else "n/a"


def _diff(d: Mapping[str, Any], fmt: str = "+.3f") -> str:
    text = _num(d["mean"], fmt)
    if math.isfinite(d["lower"]):
        text += f" [{_num(d['lower'], fmt)}, {_num(d['upper'], fmt)}]"
    return text


def markdown_table(summary: list[dict[str, Any]]) -> str:
    """One row per checkpoint: each variant's mean capture, agreement and daily P&L over seeds,
    and the hybrid - RL-only difference with its 95% t-interval."""
    lines = ["| steps | env steps | seeds | capture hybrid | capture RL-only | capture diff [95% CI] "
             "| agreement hybrid | agreement RL-only | agreement diff [95% CI] "
             "| P&L/day hybrid ($) | P&L/day RL-only ($) | P&L/day diff [95% CI] |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in summary:
        h, r, d = row["hybrid"], row["rl_only"], row["difference"]
        lines.append(
            f"| {row['steps']:,} | {row['env_steps']:,} | {len(row['seeds'])} "
            f"| {_num(h['oracle_capture'])} | {_num(r['oracle_capture'])} | {_diff(d['oracle_capture'])} "
            f"| {_num(h['direction_agreement'])} | {_num(r['direction_agreement'])} "
            f"| {_diff(d['direction_agreement'])} "
            f"| {_num(h['mean_daily_pnl'], ',.0f')} | {_num(r['mean_daily_pnl'], ',.0f')} "
            f"| {_diff(d['mean_daily_pnl'], '+,.0f')} |")
    return "\n".join(lines)


# --- the run (needs the Kedro project and its data; not imported by the tests) ------------------

def load_project(project_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The catalog entries this benchmark reads and the parameters, env ``planted``.

    ``model_input_features`` is not among the outputs of ``--to-nodes=evaluate_advisor_skill``:
    when it was never saved, it is computed as the pipeline's ``scale_features`` node does
    (from ``bar_features``, ``day_splits`` and the train-fitted ``feature_scaler``).
    """
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    from hybrid_trader.pipelines.data_split.nodes import scale_features

    bootstrap_project(project_dir)
    names = ("clean_bars", "advisor_bar_features", "market_spec", "advice_cache", "advisor_adapter")
    with KedroSession.create(project_path=project_dir, env="planted") as session:
        context = session.load_context()
        catalog = context.catalog
        data = {name: catalog.load(name) for name in names}
        if catalog.exists("model_input_features"):
            data["model_input_features"] = catalog.load("model_input_features")
        else:
            data["model_input_features"] = scale_features(catalog.load("bar_features"), catalog.load("day_splits"),
                                                          catalog.load("feature_scaler"))
        params = context.params
    return data, params


def fill_advice_cache(data: Mapping[str, Any], params: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The fine-tuned advisor, with every flat-account prompt of train and test days in its cache."""
    from hybrid_trader.advisor.advisor import Advisor
    from hybrid_trader.advisor.finetune import with_adapter
    from hybrid_trader.advisor.prescore import flat_states_at_buffers, prescore
    from hybrid_trader.env.factory import split_days

    # Answers are not kept in memory: training asks hundreds of thousands of times.
    advisor_params = {**with_adapter(params["advisor"], data["advisor_adapter"]), "save_llm_responses": False}
    advisor = Advisor.from_params(advisor_params, cache=data["advice_cache"])
    features = data["model_input_features"]
    days = pd.to_datetime(pd.Series(split_days(features, "train") + split_days(features, "test")))
    bars = data["advisor_bar_features"]
    # Flat accounts up to $1,500 below their peak too (the prompt shows the buffer), not only fresh ones.
    limit = float(params["environment"]["engine"]["drawdown_limit"])
    states = flat_states_at_buffers(bars.loc[bars["session_date"].isin(days)], limit,
                                    [limit - 500.0 * k for k in range(4) if limit - 500.0 * k > 0])
    settings = advisor_params["prescore"]
    counts = prescore(advisor, states, batch_size=settings["batch_size"], torch_threads=settings.get("torch_threads"))
    advisor.close()  # prescore flushes too; this keeps the cache written whatever prescore does later
    adapter = (data["advisor_adapter"] or {}).get("adapter_path")
    return advisor, {**counts, "cache_entries": len(advisor.cache), "fine_tuned": bool(adapter),
                     "adapter_path": adapter}


def train_and_score(seed: int, variant: str, steps: list[int], fusion: str, data: Mapping[str, Any],
                    params: Mapping[str, Any], advisor: Any, directions: np.ndarray,
                    oracle: pd.DataFrame) -> list[dict[str, Any]]:
    """One seed and variant: a fresh Phase 2 network made Phase 3, trained up to each checkpoint
    and backtested there on the test sessions."""
    import torch
    from sb3_contrib import MaskablePPO

    from hybrid_trader.agents.adapter import phase3_from_phase2
    from hybrid_trader.agents.backtest import backtest_env_count, run_backtest, sb3_policy
    from hybrid_trader.agents.phase2 import PPOConfig, ppo_kwargs
    from hybrid_trader.agents.phase3 import Phase3Config, make_advised_env
    from hybrid_trader.env.factory import make_vec_env, market_for_split, split_days
    from hybrid_trader.evaluation.learning import learning_figures
    from hybrid_trader.pipelines.phase2.nodes import contract_from_spec

    started = time.perf_counter()
    environment = params["environment"]
    contract = contract_from_spec(data["market_spec"])
    budget = max(steps)
    ppo = {**params["phase3"]["ppo"], **ROLLOUT, "seed": seed, "total_timesteps": budget,
           "eval_every_steps": budget, "checkpoint_every_steps": budget}
    config = Phase3Config.from_params({**params["phase3"], "ppo": ppo, "adapter_warmup_steps": 0, "fusion": fusion,
                                       "use_advisor": variant == "hybrid"})
    frames = (data["clean_bars"], data["model_input_features"], data["advisor_bar_features"], contract, environment)
    torch.set_num_threads(1)
    # The fresh Phase 2 network: random initialisation from the seed, as train_phase2 builds it.
    phase2_config = PPOConfig(**{**ppo, "net_arch": list(params["phase2"]["ppo"]["net_arch"])})
    phase2_env = make_vec_env(market_for_split(data["clean_bars"], data["model_input_features"], contract, environment,
                                               "train"), environment, n_envs=1, phase=2, seed=seed)
    phase2 = MaskablePPO("MlpPolicy", phase2_env, policy_kwargs={"net_arch": list(phase2_config.net_arch)},
                         device="cpu", **ppo_kwargs(phase2_config))
    train_env = make_advised_env(*frames, "train", config, advisor=advisor, worker=None, n_envs=config.ppo.n_envs,
                                 episode_mode="random_start", seed=seed, mode="cached")
    n_test = len(split_days(data["model_input_features"], "test"))
    test_env = make_advised_env(*frames, "test", config, advisor=advisor, worker=None,
                                n_envs=backtest_env_count(n_test), episode_mode="full_session", mode="cached")
    model = phase3_from_phase2(phase2, train_env, llm_weight=config.llm_weight,
                               learn_llm_weight=config.learn_llm_weight, fusion=config.fusion,
                               critic_adapter=config.critic_adapter, **ppo_kwargs(config.ppo))
    train_env.attach_policy(model.policy)
    test_env.attach_policy(model.policy)
    setup_seconds = time.perf_counter() - started
    rows, train_seconds = [], 0.0
    try:
        for target in steps:
            began = time.perf_counter()
            if target > model.num_timesteps:
                model.learn(total_timesteps=target - model.num_timesteps, reset_num_timesteps=False)
            train_seconds += time.perf_counter() - began
            began = time.perf_counter()
            episodes, trace = run_backtest(test_env, sb3_policy(model), trace=True)
            figures = learning_figures(episodes, trace, directions, oracle)
            rates = train_env.telemetry.rates()
            rows.append({"seed": seed, "variant": variant, "steps": int(target), "env_steps": int(model.num_timesteps),
                         **{m: float(figures[m]) for m in METRICS},
                         "oracle_capture_se": float(figures["oracle_capture_se"]),
                         "direction_agreement_se": float(figures["direction_agreement_se"]),
                         "mean_daily_pnl_se": float(figures["mean_daily_pnl_se"]),
                         "entries": int(figures["entries"]), "sessions": int(figures["sessions"]),
                         "train_advice_coverage": float(rates["advice_coverage"]),
                         "train_query_rate": float(rates["query_rate"]),
                         "train_override_rate": float(rates["override_rate"]),
                         "train_seconds": train_seconds, "backtest_seconds": time.perf_counter() - began})
            print(f"  seed {seed} {variant:7s} {model.num_timesteps:7,d} steps: "
                  f"capture {figures['oracle_capture']:7.3f}, agreement {figures['direction_agreement']:6.3f}, P&L/day {figures['mean_daily_pnl']:8,.0f}"
                  f", advice on {100 * np.nan_to_num(rates['advice_coverage']):4.1f}% of training steps"
                  f" ({train_seconds:,.0f} s training)", flush=True)
    finally:
        for env in (train_env, test_env, phase2_env):
            env.close()
    wall = time.perf_counter() - started
    for row in rows:
        row.update(setup_seconds=setup_seconds, run_wall_seconds=wall)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project-dir", type=Path, default=REPO_ROOT)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--steps", default="10000,20000,40000,80000", help="checkpoints, comma-separated")
    parser.add_argument("--fusion", default=None, help="fusion mode (default: phase3.fusion)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output stem (default: <project>/data/08_reporting/advice_sample_efficiency)")
    args = parser.parse_args()
    steps = sorted({int(s) for s in args.steps.split(",")})
    project = args.project_dir.resolve()
    out = (args.out.resolve() if args.out else project / "data/08_reporting/advice_sample_efficiency")
    # Paths stored in the project (the adapter's folder, the model cache) are relative to it.
    os.chdir(project)
    started = time.perf_counter()

    from hybrid_trader.agents.backtest import backtest_vec_env, run_backtest
    from hybrid_trader.env.factory import market_for_split
    from hybrid_trader.evaluation.learning import oracle_policy, split_directions
    from hybrid_trader.market_data.synthetic import PlantedEdge
    from hybrid_trader.pipelines.phase2.nodes import contract_from_spec

    data, params = load_project(project)
    edge = PlantedEdge.from_params(params["evaluation"].get("planted_edge"))
    if edge is None or edge.kind == "none":
        raise SystemExit("the project's market is not planted with an edge: there is no oracle to compare with")
    fusion = args.fusion or str(params["phase3"].get("fusion", "fixed"))
    advisor, prescored = fill_advice_cache(data, params)
    print(f"Advice cache: {prescored['distinct_prompts']:,} distinct flat prompts on train and test days, "
          f"{prescored['scored']:,} newly scored in {prescored['seconds']:,.0f} s "
          f"({'fine-tuned' if prescored['fine_tuned'] else 'base'} advisor); {prescored['cache_entries']:,} answers")

    environment = params["environment"]
    test = market_for_split(data["clean_bars"], data["model_input_features"], contract_from_spec(data["market_spec"]),
                            environment, "test")
    directions = split_directions(data["clean_bars"], data["model_input_features"], "test", edge)
    oracle_env = backtest_vec_env(test, environment)
    oracle = run_backtest(oracle_env, oracle_policy(oracle_env, directions))
    print(f"Planted {edge.kind} edge; {test.n_sessions} test sessions, oracle net P&L ${oracle['net_pnl'].sum():,.0f}; "
          f"fusion {fusion}; seeds {args.seeds}; checkpoints {steps}")

    runs: list[dict[str, Any]] = []
    for seed in args.seeds:
        for variant in VARIANTS:
            runs += train_and_score(seed, variant, steps, fusion, data, params, advisor, directions, oracle)
    summary = paired_statistics(runs)
    table = markdown_table(summary)
    wall = time.perf_counter() - started
    advisor.close()
    run_walls = {f"{r['seed']}/{r['variant']}": r["run_wall_seconds"] for r in runs}
    print(f"\nDoes the advice speed learning? Test sessions, mean over seeds; diff = hybrid - RL-only "
          f"(paired by seed, 95% t-interval)\n\n{table}\n\n({wall:,.0f} s in all; per run: "
          + ", ".join(f"{k} {v:,.0f} s" for k, v in run_walls.items()) + ")")

    report = {
        "project_dir": str(project), "planted_edge": {"kind": edge.kind, "points_per_minute": edge.points_per_minute,
                                                      "turn": edge.turn},
        "fusion": fusion, "seeds": args.seeds, "steps": steps,
        "rollout": {**ROLLOUT, "adapter_warmup_steps": 0, "advice": "cached"},
        "oracle": {"sessions": int(len(oracle)), "net_pnl": float(oracle["net_pnl"].sum())},
        "advice_cache": prescored, "summary": summary, "runs": runs, "run_wall_seconds": run_walls,
        "wall_seconds": wall,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2, default=str))
    out.with_suffix(".md").write_text(
        "# Does the advice speed learning?\n\n"
        f"Planted {edge.kind} edge, {test.n_sessions} test sessions (oracle net P&L ${oracle['net_pnl'].sum():,.0f}); "
        f"fusion {fusion}; seeds {args.seeds}. Means over seeds; diff = hybrid - RL-only, paired by seed, "
        f"with its 95% t-interval. Method: docs/phase3.md.\n\n{table}\n")
    print(f"Wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
