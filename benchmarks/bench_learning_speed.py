"""How fast Phase 2 learns the planted edge, per PPO setting: steps and training seconds to 50%
of the oracle's net P&L on held-out sessions.

The market is the ``conf/planted`` edge (time-of-day drift, 1 point a minute) with the
``conf/base`` contract and environment: ``--sessions`` sessions, the last ``--held-out`` held
out (:func:`hybrid_trader.evaluation.learning.planted_frames`, market seed 3). For each seed
and setting (n_envs x n_steps, n_epochs, batch_size; every other hyperparameter from
``conf/base/parameters_phase2.yml``, with ``total_timesteps`` = ``--budget``, which also sets
the learning-rate schedule), Phase 2 trains for ``--budget`` steps; every ``--every`` steps
until the capture first reaches ``--threshold``, and at the end, the policy is backtested
on the held-out sessions (:class:`hybrid_trader.evaluation.learning_speed.LearningCurve`).
Settings run side by side, interleaved by seed, so that load on the machine hits them alike.

Columns, per run and as the median over seeds (ratio to the first setting, the default):

* ``steps``: environment steps at the first evaluation whose oracle capture (the agent's total
  net P&L over the held-out sessions / the oracle's) is at least the threshold ("never":
  not within the budget, and the median counts it as infinite);
* ``train s``: training wall time to that evaluation, evaluations excluded;
* ``steps/s``: the budget's steps / its training wall time (evaluations excluded);
* ``final``: the oracle capture at the end of the budget.

    .venv/bin/python -m benchmarks.bench_learning_speed [--seeds 7 8] [--budget 196608] [--every 2048]
        [--settings 8x256x10 16x128x10 ...]   (N_ENVSxN_STEPSxN_EPOCHS[xBATCH]; the first is the reference)
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from omegaconf import OmegaConf
from sb3_contrib import MaskablePPO

from hybrid_trader.agents.backtest import backtest_vec_env, run_backtest, sb3_policy
from hybrid_trader.agents.phase2 import PPOConfig, ppo_kwargs
from hybrid_trader.env.factory import make_vec_env, market_for_split
from hybrid_trader.evaluation.learning import learning_figures, oracle_policy, planted_frames, split_directions
from hybrid_trader.evaluation.learning_speed import LearningCurve, first_reaching
from hybrid_trader.market_data.synthetic import PlantedEdge
from hybrid_trader.markets import resolve_contract

SETTINGS = ["8x256x10", "16x128x10", "32x64x10", "64x32x10", "32x64x5"]
MARKET_SEED = 3


@dataclass(frozen=True)
class Setting:
    n_envs: int
    n_steps: int
    n_epochs: int
    batch_size: int

    @classmethod
    def parse(cls, text: str) -> "Setting":
        values = [int(v) for v in text.lower().split("x")]
        return cls(*values) if len(values) == 4 else cls(*values, batch_size=256)

    def __str__(self) -> str:
        return f"{self.n_envs:>2} x {self.n_steps:>3}, {self.n_epochs:>2} ep, b {self.batch_size}"


def _median(values: list[float]) -> float:
    return float(np.median(values)) if all(math.isfinite(v) for v in values) else math.inf


def _num(value: float, fmt: str) -> str:
    return format(value, fmt) if math.isfinite(value) else "never"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 8])
    parser.add_argument("--budget", type=int, default=196_608)
    parser.add_argument("--every", type=int, default=2_048)
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--sessions", type=int, default=160)
    parser.add_argument("--held-out", type=int, default=50)
    parser.add_argument("--settings", nargs="+", default=SETTINGS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    settings = [Setting.parse(s) for s in args.settings]
    base = OmegaConf.to_container(OmegaConf.load("conf/base/parameters.yml"))
    environment, contract = base["environment"], resolve_contract(base["market"])
    ppo = OmegaConf.to_container(OmegaConf.load("conf/base/parameters_phase2.yml"))["phase2"]["ppo"]
    edge = PlantedEdge.from_params(OmegaConf.to_container(OmegaConf.load("conf/planted/globals.yml"))["planted_edge"])

    bars, features = planted_frames(edge, args.sessions, args.held_out, seed=MARKET_SEED)
    train, test = (market_for_split(bars, features, contract, environment, split) for split in ("train", "test"))
    directions = split_directions(bars, features, "test", edge)

    def backtest_env():
        return backtest_vec_env(test, environment)

    oracle_env = backtest_env()
    oracle = run_backtest(oracle_env, oracle_policy(oracle_env, directions))

    def capture(model) -> float:
        episodes, steps = run_backtest(backtest_env(), sb3_policy(model), trace=True)
        return learning_figures(episodes, steps, directions, oracle)["oracle_capture"]

    print(f"Planted {edge.kind} drift, {edge.points_per_minute:g} point(s) a minute; {contract.symbol} x "
          f"{environment['engine']['contracts']}; {args.sessions} sessions, the last {args.held_out} held out "
          f"(oracle net P&L ${oracle['net_pnl'].sum():,.0f}); budget {args.budget:,} steps, evaluated every "
          f"{args.every:,} until capture >= {args.threshold:g}; 1 torch thread")
    print(f"{'setting':26} {'seed':>4} {'steps':>8} {'train s':>8} {'steps/s':>8} {'final':>6}")
    runs: dict[Setting, list[tuple[float, float, float, float]]] = {s: [] for s in settings}
    started = time.perf_counter()
    for seed in args.seeds:
        for setting in settings:
            config = PPOConfig(**{**ppo, "n_envs": setting.n_envs, "n_steps": setting.n_steps,
                                  "n_epochs": setting.n_epochs, "batch_size": setting.batch_size, "seed": seed,
                                  "total_timesteps": args.budget})
            train_env = make_vec_env(train, environment, n_envs=config.n_envs, phase=2, seed=config.seed)
            model = MaskablePPO("MlpPolicy", train_env, policy_kwargs={"net_arch": list(config.net_arch)},
                                device="cpu", **ppo_kwargs(config))
            curve = LearningCurve(capture, args.every, args.threshold)
            model.learn(total_timesteps=config.total_timesteps, callback=curve)
            reached, end = first_reaching(curve.points, args.threshold), curve.points[-1]
            run = (float(reached.steps) if reached else math.inf, reached.train_seconds if reached else math.inf,
                   end.steps / end.train_seconds, end.score)
            runs[setting].append(run)
            print(f"{str(setting):26} {seed:4d} {_num(run[0], '8,.0f'):>8} {_num(run[1], '8.1f'):>8} "
                  f"{run[2]:8,.0f} {run[3]:6.3f}", flush=True)

    print(f"\nMedian over seeds {args.seeds} (x: ratio to {settings[0]}); reached: seeds reaching the threshold")
    print(f"{'setting':26} {'steps':>8} {'x':>5} {'train s':>8} {'x':>5} {'steps/s':>8} {'x':>5} {'final':>6} "
          f"{'reached':>7}")
    reference = [_median([r[i] for r in runs[settings[0]]]) for i in range(4)]
    for setting in settings:
        medians = [_median([r[i] for r in runs[setting]]) for i in range(4)]
        ratios = [m / ref if math.isfinite(m) and math.isfinite(ref) else math.nan
                  for m, ref in zip(medians, reference)]
        reached = sum(math.isfinite(r[0]) for r in runs[setting])
        print(f"{str(setting):26} {_num(medians[0], '8,.0f'):>8} {ratios[0]:5.2f} {_num(medians[1], '8.1f'):>8} "
              f"{ratios[1]:5.2f} {medians[2]:8,.0f} {ratios[2]:5.2f} {medians[3]:6.3f} "
              f"{reached:>3}/{len(args.seeds)}")
    print(f"\n({time.perf_counter() - started:,.0f} s in all, evaluations included)")


if __name__ == "__main__":
    main()
