"""How much the advisor should weigh: Phase 3 trained with several fixed ``llm_weight``
values and with a learned one, each judged on validation days, in one run.

Each setting trains the hybrid from the stored Phase 2 policy with
``conf/base/parameters_phase3.yml`` (``--steps`` steps, the configured warm-up
scaled to the budget) against a copy of the project's answer cache, then
backtests it (deterministic, masked, cached advice) on the validation days.
Prints, per setting: the final ``w``, the validation mean episode reward and
mean net P&L per session, and the same policy with ``w`` set to 0.

    .venv/bin/python -m benchmarks.compare_llm_weight [--steps 30720] [--weights 0,0.1,0.2,0.4]
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import torch
from omegaconf import OmegaConf
from sb3_contrib import MaskablePPO

from hybrid_trader.advisor.advisor import Advisor
from hybrid_trader.advisor.cache import AdviceCache
from hybrid_trader.agents.phase3 import Phase3Config, backtest_hybrid, make_advised_env, start_worker, train_phase3
from hybrid_trader.markets import CONTRACTS

PROJECT_CACHE = "data/06_models/llm_advice_cache.parquet"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30720)
    parser.add_argument("--weights", default="0,0.1,0.2,0.4", help="fixed weights to try, comma-separated")
    args = parser.parse_args()
    torch.set_num_threads(1)
    params = OmegaConf.to_container(OmegaConf.load("conf/base/parameters_phase3.yml"))["phase3"]
    advisor_params = OmegaConf.to_container(OmegaConf.load("conf/base/parameters_advisor.yml"))["advisor"]
    environment = OmegaConf.to_container(OmegaConf.load("conf/base/parameters.yml"))["environment"]
    fraction = params["adapter_warmup_steps"] / params["ppo"]["total_timesteps"]
    params["ppo"].update(total_timesteps=args.steps, eval_every_steps=10 * args.steps)
    params["adapter_warmup_steps"] = int(fraction * args.steps)
    base = Phase3Config.from_params(params)
    frames = (pd.read_parquet("data/02_intermediate/clean_bars.parquet"),
              pd.read_parquet("data/05_model_input/model_input_features.parquet"),
              pd.read_parquet("data/05_model_input/advisor_bar_features.parquet"), CONTRACTS["NQ"], environment)
    phase2 = MaskablePPO.load("data/06_models/phase2_best_policy.zip", device="cpu")
    weights = [float(w) for w in args.weights.split(",")]
    settings = [(f"fixed {w:g}", dataclasses.replace(base, llm_weight=w, learn_llm_weight=False)) for w in weights]
    settings.append((f"learned from {base.llm_weight:g}", dataclasses.replace(base, learn_llm_weight=True)))
    print(f"Phase 3, {args.steps} steps per setting, validation days, cached advice")
    print(f"  {'setting':18s} {'final w':>8s} {'reward':>8s} {'P&L/session':>12s} {'P&L with w=0':>13s}")
    for name, config in settings:
        with tempfile.TemporaryDirectory() as tmp:
            cache_file = Path(tmp) / "cache.parquet"
            if Path(PROJECT_CACHE).exists():
                shutil.copy(PROJECT_CACHE, cache_file)
            advisor = Advisor.from_params(advisor_params, cache=AdviceCache(cache_file))
            torch.set_num_threads(1)
            worker = start_worker(config, advisor, advisor_params)
            train = make_advised_env(*frames, "train", config, advisor=advisor, worker=worker,
                                     n_envs=config.ppo.n_envs, episode_mode="random_start", seed=config.ppo.seed)
            validation = make_advised_env(*frames, "validation", config, advisor=advisor, worker=None, n_envs=1,
                                          episode_mode="full_session", mode="cached")
            try:
                result, _ = train_phase3(config, phase2, train, validation, 1, Path(tmp) / "work", progress_bar=False)
            finally:
                if worker is not None:
                    worker.close()
            model = result.model
            hybrid = backtest_hybrid(model, validation)
            alone = backtest_hybrid(model, validation, llm_weight=0.0)
            print(f"  {name:18s} {float(model.policy.llm_weight().detach()):8.3f} {hybrid['reward'].mean():8.3f} "
                  f"{hybrid['net_pnl'].mean():12,.0f} {alone['net_pnl'].mean():13,.0f}", flush=True)


if __name__ == "__main__":
    main()
