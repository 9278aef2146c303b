"""Environment throughput, side by side with a no-op VecEnv of the same spaces.

Prints steps/s (environment steps, i.e. N per call) of the trading VecEnv for
N = 1, 16, 64 and 256, and of a trivial VecEnv that returns zeros, in one run; then
episode lengths and end reasons of a random policy that picks uniformly among
the valid actions, on the stored default data.

    .venv/bin/python -m benchmarks.bench_env   (after `kedro run`)
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import numpy as np
import pandas as pd
from stable_baselines3.common.vec_env import VecEnv

from hybrid_trader.env.actions import N_ACTIONS
from hybrid_trader.env.engine import EngineConfig
from hybrid_trader.env.market import MarketData
from hybrid_trader.env.vec_env import TradingVecEnv, _spaces
from hybrid_trader.markets import CONTRACTS


class NoOpVecEnv(VecEnv):
    """Same spaces, no work: zeros, no rewards, never done."""

    def __init__(self, n_envs: int, dim: int) -> None:
        self.render_mode = None
        super().__init__(n_envs, *_spaces(dim))
        self._obs = np.zeros((n_envs, dim), dtype=np.float32)
        self._rewards = np.zeros(n_envs, dtype=np.float32)
        self._dones = np.zeros(n_envs, dtype=bool)

    def reset(self):
        return self._obs

    def step_async(self, actions):
        self._actions = actions

    def step_wait(self):
        return self._obs, self._rewards, self._dones, [{} for _ in range(self.num_envs)]

    def close(self):
        pass

    def get_attr(self, attr_name, indices=None):
        return [getattr(self, attr_name)] * self.num_envs

    def set_attr(self, attr_name, value, indices=None):
        setattr(self, attr_name, value)

    def env_method(self, method_name, *args, indices=None, **kwargs):
        return [np.ones(N_ACTIONS, dtype=bool)] * self.num_envs

    def env_is_wrapped(self, wrapper_class, indices=None):
        return [False] * self.num_envs


def steps_per_second(env: VecEnv, calls: int, seed: int = 0) -> float:
    env.reset()
    actions = np.random.default_rng(seed).integers(0, N_ACTIONS, size=(calls, env.num_envs))
    start = time.perf_counter()
    for k in range(calls):
        env.step_async(actions[k])
        env.step_wait()
    return calls * env.num_envs / (time.perf_counter() - start)


def random_policy_episodes(market: MarketData, config: EngineConfig, episodes: int, seed: int = 0):
    env = TradingVecEnv(market, config, n_envs=16, phase=2, seed=seed)
    rng = np.random.default_rng(seed)
    env.reset()
    lengths, trades = [], []
    while len(lengths) < episodes:
        masks = env.action_masks()
        choice = (masks.cumsum(1) > rng.random((16, 1)) * masks.sum(1, keepdims=True)).argmax(1)
        _, _, dones, infos = env.step(choice)
        for done, info in zip(dones, infos):
            if done:
                lengths.append(info["episode"]["l"])
                trades.append(info["trades"])
    return np.array(lengths), np.array(trades), env.end_reason_counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=4000)
    args = parser.parse_args()
    bars = pd.read_parquet("data/02_intermediate/clean_bars.parquet")
    features = pd.read_parquet("data/05_model_input/model_input_features.parquet")
    market = MarketData.from_frames(bars, features, CONTRACTS["NQ"])

    print("steps/s (higher is better), one core, random actions")
    for phase in (2, 3):
        for n in (1, 16, 64, 256):
            calls = max(args.calls * 16 // max(n, 16), 200)
            trading = steps_per_second(TradingVecEnv(market, EngineConfig(), n_envs=n, phase=phase, seed=0), calls)
            noop = steps_per_second(NoOpVecEnv(n, 228 if phase == 2 else 261), calls)
            print(f"  phase {phase}  N={n:2d}  trading {trading:10,.0f}   no-op {noop:10,.0f}   "
                  f"ratio {trading / noop:5.2f}")

    for mode in ("random_start", "full_session"):
        lengths, trades, reasons = random_policy_episodes(market, EngineConfig(episode_mode=mode), 400)
        print(f"random valid actions, {mode}: {len(lengths)} episodes, mean length {lengths.mean():.1f} "
              f"(median {np.median(lengths):.0f}), trades/episode {trades.mean():.1f}, "
              f"end reasons {dict(Counter(reasons))}")


if __name__ == "__main__":
    main()
