"""Phase 2 training throughput next to SB3's MaskablePPO on a no-op VecEnv, in one run.

Both train MaskablePPO with the same hyperparameters (``conf/base/parameters_phase2.yml``)
and observation/action spaces for the same number of steps; the only difference
is the environment. Prints steps/s of each and their ratio (1.00 = no overhead).

    .venv/bin/python -m benchmarks.bench_phase2 [--steps 32768]   (after `kedro run`)
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch
from omegaconf import OmegaConf
from sb3_contrib import MaskablePPO

from benchmarks.bench_env import NoOpVecEnv
from hybrid_trader.agents.phase2 import PPOConfig
from hybrid_trader.env.actions import N_ACTIONS
from hybrid_trader.env.factory import make_vec_env, market_for_split
from hybrid_trader.markets import CONTRACTS


class MaskedNoOpVecEnv(NoOpVecEnv):
    """The no-op VecEnv with the masks MaskablePPO asks for; episodes of 300 steps."""

    def __init__(self, n_envs: int, dim: int) -> None:
        super().__init__(n_envs, dim)
        self._masks = np.ones((n_envs, N_ACTIONS), dtype=bool)
        self._t = 0

    def action_masks(self) -> np.ndarray:
        return self._masks

    def step_wait(self):
        self._t += 1
        self._dones[:] = self._t % 300 == 0
        return self._obs, self._rewards, self._dones, [{} for _ in range(self.num_envs)]


def train_speed(env, config: PPOConfig, steps: int) -> float:
    model = MaskablePPO("MlpPolicy", env, n_steps=config.n_steps, batch_size=config.batch_size,
                        n_epochs=config.n_epochs, learning_rate=config.learning_rate, gamma=config.gamma,
                        gae_lambda=config.gae_lambda, ent_coef=config.ent_coef, target_kl=None,
                        policy_kwargs={"net_arch": list(config.net_arch)}, seed=config.seed, device="cpu")
    start = time.perf_counter()
    model.learn(total_timesteps=steps)
    return model.num_timesteps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=32768)
    args = parser.parse_args()
    torch.set_num_threads(1)
    params = OmegaConf.to_container(OmegaConf.load("conf/base/parameters_phase2.yml"))["phase2"]
    environment = OmegaConf.to_container(OmegaConf.load("conf/base/parameters.yml"))["environment"]
    config = PPOConfig(**params["ppo"])
    bars = pd.read_parquet("data/02_intermediate/clean_bars.parquet")
    features = pd.read_parquet("data/05_model_input/model_input_features.parquet")
    market = market_for_split(bars, features, CONTRACTS["NQ"], environment, "train")
    trading = make_vec_env(market, environment, n_envs=config.n_envs, phase=2, seed=0)
    ours = train_speed(trading, config, args.steps)
    noop = train_speed(MaskedNoOpVecEnv(config.n_envs, 228), config, args.steps)
    print(f"MaskablePPO, {config.n_envs} envs, n_steps {config.n_steps}, batch {config.batch_size}, "
          f"{config.n_epochs} epochs, net {config.net_arch}, 1 torch thread, {args.steps} steps")
    print(f"  trading env : {ours:8,.0f} steps/s")
    print(f"  no-op VecEnv: {noop:8,.0f} steps/s")
    print(f"  ratio       : {ours / noop:8.3f}  (target >= 0.90)")


if __name__ == "__main__":
    main()
