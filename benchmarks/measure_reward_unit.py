"""Rewards in dollars or in R? Where the reward signal sits, and what Phase 2 learns with each.

The default market (``raw_bars`` of ``conf/base/catalog.yml``: 320 synthetic sessions, seed 7)
is ingested, featured, split and scaled as the pipeline does (``conf/base`` parameters), in
memory. A session's volatility is the median ATR-14 of its decision bars where an entry is
allowed; the top quartile is the train sessions at or above the 75th percentile of it (the
same cut is applied to the validation sessions).

1. Concentration: the masked random agent (uniform over the valid actions, seeded) plays
   every train session once (``full_session`` episodes). For each reward unit
   (``environment.engine.reward_unit``: ``dollars``, or ``risk``, the equity change in R,
   the position's dollar risk at entry), the share of the summed squared step rewards, a
   proxy for the weight of the policy gradient, that comes from the top-quartile sessions
   (a quarter of the sessions: 0.25 would be no concentration). The same trajectories are
   played under both units (the reward changes no action, observation or fill). The trained
   policies of step 2 are measured the same way, sampling their actions as in training.
2. Learning: Phase 2 is trained with each reward unit and each seed (``phase2.ppo`` of
   ``conf/base/parameters_phase2.yml``, ``--steps`` steps, no evaluation or checkpoints) on
   the train sessions, and its deterministic policy is backtested on every validation
   session (full sessions, a fresh account each). Prints, per run and per unit over the
   seeds: mean daily net P&L ($) with its standard error (the standard deviation over
   sessions / sqrt(sessions); over the seeds, of each session's mean over the seeds), the
   same on the top-quartile sessions, the breach rate (sessions ending in an Apex breach)
   and trades per session (and the masked random agent's, for reference); then SB3's value
   loss, explained variance and approximate KL of each run's last update, and the paired
   difference risk - dollars per session.

    .venv/bin/python -m benchmarks.measure_reward_unit [--steps 163840] [--seeds 7 8]

About 2.2 minutes per training run on one core (about 9 minutes in all). Results:
docs/environment.md, "Reward units".
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from hybrid_trader.agents.backtest import random_policy, sb3_policy
from hybrid_trader.agents.phase2 import PPOConfig, train_phase2
from hybrid_trader.env.factory import make_vec_env, market_for_split
from hybrid_trader.env.market import MarketData
from hybrid_trader.markets import resolve_contract

from benchmarks.default_market import base_conf, default_frames

UNITS = ("dollars", "risk")
DIAGNOSTICS = ("value_loss", "explained_variance", "approx_kl")  # SB3's last logged value of each
Policy = Callable[[np.ndarray, np.ndarray], np.ndarray]


def session_volatility(market: MarketData) -> np.ndarray:
    """Median ATR-14 (points) of each session's decision bars where an entry is allowed."""
    rows = np.flatnonzero(market.entry_allowed)
    frame = pd.DataFrame({"session": market.session_id[rows], "atr": market.atr[rows]})
    return frame.groupby("session")["atr"].median().reindex(range(market.n_sessions)).to_numpy()


def play_sessions(env: Any, policy: Policy) -> tuple[pd.DataFrame, np.ndarray]:
    """Every session of a ``full_session`` env once. Returns one row per session (``net_pnl``,
    ``breach``, ``trades``) and each session's summed squared step rewards."""
    engine = env.engine
    n_sessions, n = engine.market.n_sessions, env.num_envs
    if len(engine._session_starts) != n_sessions:
        raise ValueError("a session has no bar to start an episode at")
    obs = env.reset()
    episode_of = np.arange(n)  # sessions are handed out in index order, first to env 0..n-1
    handed_out = n
    squared = np.zeros(n_sessions)
    rows: dict[int, dict[str, Any]] = {}
    while len(rows) < n_sessions:
        actions = np.asarray(policy(obs, env.action_masks())).reshape(n)
        obs, rewards, dones, infos = env.step(actions)
        live = episode_of < n_sessions
        np.add.at(squared, episode_of[live], rewards[live].astype(np.float64) ** 2)
        for i in np.flatnonzero(dones):
            if live[i]:
                info = infos[i]
                rows[int(episode_of[i])] = {"net_pnl": info["net_pnl"], "trades": info["trades"],
                                            "breach": info["end_reason"] == "drawdown_breach"}
            episode_of[i] = handed_out
            handed_out += 1
    return pd.DataFrame([rows[k] for k in range(n_sessions)]), squared


def full_session_env(market: MarketData, environment: dict[str, Any], unit: str) -> Any:
    return make_vec_env(market, environment, n_envs=min(64, market.n_sessions), phase=2,
                        episode_mode="full_session", reward_unit=unit)


def concentration(market: MarketData, environment: dict[str, Any], top: np.ndarray,
                  make_policy: Callable[[], Policy]) -> dict[str, float]:
    """Share of the summed squared step rewards from the ``top`` sessions, per reward unit."""
    shares = {}
    for unit in UNITS:
        _, squared = play_sessions(full_session_env(market, environment, unit), make_policy())
        shares[unit] = squared[top].sum() / squared.sum()
    return shares


def stochastic_model_policy(model: Any, seed: int) -> Callable[[], Policy]:
    def make() -> Policy:
        torch.manual_seed(seed)  # the same draws under both units
        return sb3_policy(model, deterministic=False)

    return make


def mean_se(values: np.ndarray) -> tuple[float, float]:
    values = np.asarray(values, dtype=float)
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values)))


def evaluation_row(pnl: np.ndarray, breach: np.ndarray, trades: np.ndarray, top: np.ndarray) -> str:
    mean, se = mean_se(pnl)
    top_mean, top_se = mean_se(pnl[top])
    return (f"{mean:8.0f} ± {se:4.0f}  {top_mean:8.0f} ± {top_se:4.0f}  {breach.mean():6.3f}  "
            f"{trades.mean():6.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: phase2.ppo's)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 8])
    args = parser.parse_args()
    torch.set_num_threads(1)
    began = time.time()
    conf = base_conf()
    environment, ppo = conf["environment"], conf["phase2"]["ppo"]
    steps = args.steps or ppo["total_timesteps"]
    bars, features, _ = default_frames(conf)
    contract = resolve_contract(conf["market"])
    train, validation = (market_for_split(bars, features, contract, environment, split)
                         for split in ("train", "validation"))
    train_vol, validation_vol = session_volatility(train), session_volatility(validation)
    cut = np.quantile(train_vol, 0.75)
    train_top, validation_top = train_vol >= cut, validation_vol >= cut
    print(f"{conf['environment']['engine']['contracts']} {contract.symbol}; {train.n_sessions} train sessions, "
          f"{validation.n_sessions} validation sessions; top quartile: median ATR-14 >= {cut:.2f} points "
          f"({train_top.sum()} train, {validation_top.sum()} validation sessions; median ATR "
          f"{np.median(train_vol[train_top]):.2f} vs {np.median(train_vol[~train_top]):.2f} in the others)")

    print("\nShare of the summed squared step rewards from the top-quartile train sessions")
    print(f"{'policy':28} {'dollars':>8} {'risk':>8}")
    shares = concentration(train, environment, train_top, lambda: random_policy(0))
    print(f"{'masked random':28} {shares['dollars']:8.3f} {shares['risk']:8.3f}", flush=True)

    results: dict[str, list[pd.DataFrame]] = {unit: [] for unit in UNITS}
    trained_shares, diagnostics = [], []
    for unit in UNITS:
        for seed in args.seeds:
            env = {**environment, "engine": {**environment["engine"], "reward_unit": unit}}
            config = PPOConfig(**{**ppo, "total_timesteps": steps, "seed": seed,
                                  "eval_every_steps": 10 * steps, "checkpoint_every_steps": 10 * steps})
            train_env = make_vec_env(train, env, n_envs=config.n_envs, phase=2, seed=seed)
            eval_env = make_vec_env(validation, env, n_envs=1, phase=2, episode_mode="full_session")
            with tempfile.TemporaryDirectory() as work_dir:
                trained = train_phase2(config, train_env, eval_env, 1, work_dir, progress_bar=False)
            model = trained.model
            logged = trained.last_logged
            diagnostics.append((unit, seed, *(logged.get(f"train/{k}", float("nan")) for k in DIAGNOSTICS)))
            episodes, _ = play_sessions(full_session_env(validation, environment, "dollars"), sb3_policy(model))
            results[unit].append(episodes)
            trained_shares.append((f"Phase 2 ({unit}, seed {seed})",
                                   concentration(train, environment, train_top, stochastic_model_policy(model, seed))))
            print(f"  trained {unit} seed {seed} ({time.time() - began:.0f} s)", flush=True)
    for name, share in trained_shares:
        print(f"{name:28} {share['dollars']:8.3f} {share['risk']:8.3f}")

    print(f"\nPhase 2, {steps} steps; deterministic backtests of the {validation.n_sessions} validation sessions")
    print(f"{'reward':8} {'seed':>5}  {'P&L/day ± se':>15}  {'top-quartile ± se':>15}  {'breach':>6}  "
          f"{'trades':>6}")
    random_play, _ = play_sessions(full_session_env(validation, environment, "dollars"), random_policy(0))
    columns = (random_play[k].to_numpy(dtype=float) for k in ("net_pnl", "breach", "trades"))
    print(f"{'random':8} {'-':>5}  " + evaluation_row(*columns, validation_top))
    per_session = {}
    for unit in UNITS:
        for seed, episodes in zip(args.seeds, results[unit]):
            columns = (episodes[k].to_numpy(dtype=float) for k in ("net_pnl", "breach", "trades"))
            print(f"{unit:8} {seed:5d}  " + evaluation_row(*columns, validation_top))
        stacked = {k: np.mean([e[k].to_numpy(dtype=float) for e in results[unit]], axis=0)
                   for k in ("net_pnl", "breach", "trades")}
        per_session[unit] = stacked["net_pnl"]
        print(f"{unit:8} {'all':>5}  " + evaluation_row(stacked["net_pnl"], stacked["breach"], stacked["trades"],
                                                       validation_top))
    print("\nLast update of each run: " + ", ".join(DIAGNOSTICS))
    for unit, seed, *values in diagnostics:
        print(f"{unit:8} {seed:5d}  " + "  ".join(f"{v:9.4f}" for v in values))
    diff, diff_se = mean_se(per_session["risk"] - per_session["dollars"])
    top_diff, top_diff_se = mean_se((per_session["risk"] - per_session["dollars"])[validation_top])
    print(f"risk - dollars, paired by session: {diff:.0f} ± {diff_se:.0f} $/day "
          f"(top quartile {top_diff:.0f} ± {top_diff_se:.0f})")
    print(f"({time.time() - began:.0f} s)")


if __name__ == "__main__":
    main()
