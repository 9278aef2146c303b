"""Phase 3 training throughput with the advisor at its default query rate, next to the
same training with ``llm_weight`` 0 and no queries, in one run.

Both build the hybrid policy from the stored Phase 2 policy and train it with
``conf/base/parameters_phase3.yml`` (warm-up off, so both update every weight)
on the stored default data for the same number of steps. The advisor run uses
the real default model, the configured query schedule and mode (``async``:
cache hits at once, misses to the background worker) and a copy of the
project's answer cache, so the project's cache is left as it was. Prints
steps/s of each, the advisor's share of training time
(``1 - advisor_speed / no_advisor_speed``; target < 25%) and the advisor's
figures during the run.

    .venv/bin/python -m benchmarks.bench_phase3 [--steps 16384]   (after `kedro run`)
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from omegaconf import OmegaConf
from sb3_contrib import MaskablePPO

from hybrid_trader.advisor.advisor import Advisor
from hybrid_trader.advisor.cache import AdviceCache
from hybrid_trader.agents.adapter import phase3_from_phase2
from hybrid_trader.agents.phase2 import ppo_kwargs
from hybrid_trader.agents.phase3 import Phase3Config, make_advised_env, start_worker
from hybrid_trader.markets import CONTRACTS

PROJECT_CACHE = "data/06_models/llm_advice_cache.parquet"  # the advice_cache catalog entry


def train_speed(config: Phase3Config, phase2: MaskablePPO, frames: tuple, environment: dict, advisor, worker,
                steps: int) -> tuple[float, dict]:
    env = make_advised_env(*frames, CONTRACTS["NQ"], environment, "train", config, advisor=advisor, worker=worker,
                           n_envs=config.ppo.n_envs, episode_mode="random_start", seed=config.ppo.seed)
    model = phase3_from_phase2(phase2, env, llm_weight=config.llm_weight, critic_adapter=config.critic_adapter,
                               **ppo_kwargs(config.ppo))
    env.attach_policy(model.policy)
    start = time.perf_counter()
    model.learn(total_timesteps=steps)
    speed = model.num_timesteps / (time.perf_counter() - start)
    return speed, {**env.telemetry.rates(), "queries": env.telemetry.queries, "queued": env.telemetry.queued}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=16384)
    parser.add_argument("--workers", default="process,thread", help="worker kinds to time, comma-separated")
    args = parser.parse_args()
    torch.set_num_threads(1)
    params = OmegaConf.to_container(OmegaConf.load("conf/base/parameters_phase3.yml"))["phase3"]
    advisor_params = OmegaConf.to_container(OmegaConf.load("conf/base/parameters_advisor.yml"))["advisor"]
    environment = OmegaConf.to_container(OmegaConf.load("conf/base/parameters.yml"))["environment"]
    params["adapter_warmup_steps"] = 0
    params["ppo"]["total_timesteps"] = args.steps
    with_advisor = Phase3Config.from_params(params)
    without = dataclasses.replace(with_advisor, llm_weight=0.0, use_advisor=False)
    frames = (pd.read_parquet("data/02_intermediate/clean_bars.parquet"),
              pd.read_parquet("data/05_model_input/model_input_features.parquet"),
              pd.read_parquet("data/05_model_input/advisor_bar_features.parquet"))
    phase2 = MaskablePPO.load("data/06_models/phase2_best_policy.zip", device="cpu")

    baseline, _ = train_speed(without, phase2, frames, environment, None, None, args.steps)
    print(f"Phase 3 MaskablePPO, {with_advisor.ppo.n_envs} envs, {args.steps} steps, 1 torch thread; "
          f"advisor {with_advisor.query_mode}, llm_weight {with_advisor.llm_weight}")
    print(f"  llm_weight 0, no queries: {baseline:8,.0f} steps/s")
    for kind in args.workers.split(","):
        config = dataclasses.replace(with_advisor, worker=kind)
        with tempfile.TemporaryDirectory() as tmp:
            cache_file = Path(tmp) / "cache.parquet"
            if Path(PROJECT_CACHE).exists():
                shutil.copy(PROJECT_CACHE, cache_file)  # a copy: the project's cache is left as it was
            advisor = Advisor.from_params(advisor_params, cache=AdviceCache(cache_file))
            torch.set_num_threads(1)
            worker = start_worker(config, advisor, advisor_params)
            try:
                advised, figures = train_speed(config, phase2, frames, environment, advisor, worker, args.steps)
            finally:
                worker.close()
        print(f"  default queries, {kind:7s} worker: {advised:8,.0f} steps/s; advisor's share of training time "
              f"{100 * (1 - advised / baseline):5.1f}% (target < 25%)")
        print(f"      query rate {100 * figures['query_rate']:.1f}%, cache hits {100 * figures['cache_hit_rate']:.0f}%, "
              f"advice on {100 * figures['advice_coverage']:.0f}% of steps, {figures['advisor_ms_per_step']:.3f} ms/step "
              f"in the advisor, {figures['queued']} misses to the worker, {worker.answered} answered")

if __name__ == "__main__":
    main()
