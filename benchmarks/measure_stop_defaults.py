"""Measure stop/target multiples with random entries, to choose the environment's defaults.

Random entries (probability ``--entry-prob`` per bar when an entry is allowed,
long or short at random, no management) over every session of the stored
default data, in full-session episodes. Prints, per (stop ATR multiple,
target/stop ratio): mean trade length in bars, how trades ended (stop, target,
deadline, breach), drawdown breaches per session and mean episode length.

    .venv/bin/python -m benchmarks.measure_stop_defaults   (after `kedro run`)
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
import pandas as pd

from hybrid_trader.env.actions import Action
from hybrid_trader.env.engine import EXIT_KINDS, EngineConfig, TradingEngine
from hybrid_trader.env.market import MarketData
from hybrid_trader.markets import CONTRACTS


def measure(market: MarketData, config: EngineConfig, entry_prob: float, seed: int) -> dict[str, float]:
    n = market.n_sessions
    engine = TradingEngine(market, config, n_envs=n, seed=seed)
    engine.reset(starts=engine.sample_starts(n))
    rng = np.random.default_rng(seed)
    done = np.zeros(n, dtype=bool)
    lengths = np.zeros(n)
    bars_held, reasons = 0, []
    while not done.all():
        masks = engine.action_masks()
        enter = masks[:, Action.BUY] & (rng.random(n) < entry_prob) & ~done
        actions = np.where(enter, rng.integers(1, 3, n), 0)
        result = engine.step(actions)
        bars_held += int(((engine.side != 0) & ~done).sum())
        finished = (result.terminated | result.truncated) & ~done
        lengths[finished] = engine.steps[finished]
        reasons += [int(r) for r in result.end_reason[finished]]
        done |= finished
    exits = engine.exit_counts.sum(axis=0)
    trades = max(exits.sum(), 1)
    return {
        "mean_trade_bars": bars_held / trades,
        # No management: the agent's EXIT never occurs, so its (zero) share is left out.
        **{f"{k}_share": exits[i] / trades for i, k in enumerate(EXIT_KINDS) if k != "exit"},
        "breaches_per_session": reasons.count(1) / n,
        "mean_episode_steps": lengths.mean(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entry-prob", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    bars = pd.read_parquet("data/02_intermediate/clean_bars.parquet")
    features = pd.read_parquet("data/05_model_input/model_input_features.parquet")
    market = MarketData.from_frames(bars, features, CONTRACTS["NQ"])
    rows = []
    for stop, ratio in itertools.product((1.5, 2.0, 3.0, 4.0), (1.0, 2.0, 3.0)):
        config = EngineConfig(stop_atr_multiple=stop, target_stop_ratio=ratio, episode_mode="full_session")
        rows.append({"stop_atr": stop, "target_ratio": ratio, **measure(market, config, args.entry_prob, args.seed)})
    print(pd.DataFrame(rows).round(3).to_string(index=False))


if __name__ == "__main__":
    main()
