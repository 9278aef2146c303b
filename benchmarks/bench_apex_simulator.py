"""Time of the Apex evaluation estimate (``evaluation/apex.py``) for a default comparison.

A default comparison has 8 agents x 2 splits x 2 cost levels; each backtest has
about 64 sessions of about 400 bars. The script builds that many backtests of
random-walk sessions (a drifting walk per agent, so pass and breach shares vary)
or, with ``--stored``, reads the last run's ``backtest_episodes`` and
``backtest_steps``, and times, on one core, the session summaries and the
estimate with the configured settings (``conf/base/parameters_evaluation.yml``).

    .venv/bin/python -m benchmarks.bench_apex_simulator [--stored]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from hybrid_trader.evaluation.apex import apex_figures, apex_settings

ROOT = Path(__file__).resolve().parents[1]


def synthetic_backtests(agents: int = 8, sessions: int = 64, bars: int = 400,
                        seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Backtests of random-walk equity paths: ``agents`` x 2 splits x 2 costs, each ``sessions``
    sessions of ``bars`` steps ($25 a bar of noise, a drift per agent)."""
    rng = np.random.default_rng(seed)
    episodes, steps = [], []
    dates = pd.date_range("2024-01-02", periods=sessions, freq="B").strftime("%Y-%m-%d")
    for agent in range(agents):
        for split in ("validation", "test"):
            for cost in (1.0, 2.0):
                walk = np.cumsum(rng.normal(0.5 * (agent - 3) / cost, 25.0, (sessions, bars)), axis=1)
                keys = {"agent": f"agent{agent}", "split": split, "cost_multiple": cost}
                episodes.append(pd.DataFrame({"session_date": dates, "net_pnl": walk[:, -1], **keys}))
                steps.append(pd.DataFrame({"session_date": np.repeat(dates, bars),
                                           "step": np.tile(np.arange(1, bars + 1), sessions),
                                           "equity": 50_000.0 + walk.ravel(), **keys}))
    return pd.concat(episodes, ignore_index=True), pd.concat(steps, ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stored", action="store_true", help="the last run's backtests instead of random walks")
    args = parser.parse_args()
    params = yaml.safe_load((ROOT / "conf/base/parameters_evaluation.yml").read_text())["evaluation"]
    engine = yaml.safe_load((ROOT / "conf/base/parameters.yml").read_text())["environment"]["engine"]
    rules, estimation = apex_settings(params["apex_evaluation"], engine)
    if args.stored:
        episodes = pd.read_parquet(ROOT / "data/07_model_output/backtest_episodes.parquet")
        steps = pd.read_parquet(ROOT / "data/07_model_output/backtest_steps.parquet")
    else:
        episodes, steps = synthetic_backtests()
    keys = ["agent", "split", "cost_multiple"]
    step_groups = dict(list(steps.groupby(keys, sort=False)))
    began = time.perf_counter()
    figures = {key: apex_figures(group, step_groups[key], rules, estimation)
               for key, group in episodes.groupby(keys, sort=False)}
    seconds = time.perf_counter() - began
    sessions = sum(f["sessions"] for f in figures.values())
    print(f"{len(figures)} backtests, {sessions} sessions, {len(steps):,} steps; {estimation.attempts} attempts + "
          f"{estimation.outer_resamples} resamples x {estimation.resample_attempts}, up to {rules.max_days} days each")
    print(f"{seconds:.2f} s in all, {seconds / len(figures):.3f} s a backtest")
    for key, f in list(figures.items())[:4]:
        print(f"  {key}: pass {f['pass_probability']:.3f} [{f['pass_probability_low']:.3f}, "
              f"{f['pass_probability_high']:.3f}], breach {f['breach_probability']:.3f}, "
              f"median days to pass {f['median_days_to_pass']}")


if __name__ == "__main__":
    main()
