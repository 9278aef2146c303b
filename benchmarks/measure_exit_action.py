"""Does the EXIT action help? Phase 2 with and without it, side by side, on held-out sessions.

For each market (the planted time-of-day drift and the default synthetic market), each
seed and EXIT on/off (``environment.engine.exit_action``), Phase 2 is trained with the
default hyperparameters for ``--steps`` steps on 60 sessions and backtested on the next
50 (:func:`hybrid_trader.evaluation.learning.phase2_learning_run`). Prints per run and
per setting (mean over seeds): mean daily net P&L ($), Apex breaches (sessions), mean
episode length (bars), trades per session, and on the planted market the oracle capture.

    .venv/bin/python -m benchmarks.measure_exit_action [--steps 57344] [--seeds 7 8]
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np
from omegaconf import OmegaConf

from hybrid_trader.evaluation.learning import phase2_learning_run
from hybrid_trader.market_data.synthetic import PlantedEdge


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=57_344)
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 8])
    args = parser.parse_args()
    shared = OmegaConf.to_container(OmegaConf.load("conf/base/parameters.yml"))
    environment, market = shared["environment"], shared["market"]
    ppo = OmegaConf.to_container(OmegaConf.load("conf/base/parameters_phase2.yml"))["phase2"]["ppo"]
    print(f"Phase 2, {args.steps} steps, seeds {args.seeds}; 50 held-out sessions per run")
    print(f"{'market':12} {'exit':5} {'seed':>4} {'P&L/day':>9} {'breaches':>8} {'ep.len':>7} {'trades':>7} "
          f"{'capture':>8}")
    for market, edge in (("time_of_day", PlantedEdge("time_of_day")), ("default", None)):
        for exit_action in (False, True):
            env = {**environment, "engine": {**environment["engine"], "exit_action": exit_action}}
            rows = []
            for seed in args.seeds:
                with tempfile.TemporaryDirectory() as work_dir:
                    run = phase2_learning_run(edge, {**ppo, "total_timesteps": args.steps, "seed": seed}, env,
                                              work_dir, market_params=market)
                episodes, figures = run["episodes"], run["figures"]
                row = (episodes["net_pnl"].mean(), (episodes["end_reason"] == "drawdown_breach").sum(),
                       episodes["steps"].mean(), episodes["trades"].mean(),
                       figures["oracle_capture"] if figures else float("nan"))
                rows.append(row)
                print(f"{market:12} {str(exit_action):5} {seed:4d} {row[0]:9.0f} {row[1]:8d} {row[2]:7.1f} "
                      f"{row[3]:7.1f} {row[4]:8.3f}", flush=True)
            mean = np.mean(np.array(rows, dtype=float), axis=0)
            print(f"{market:12} {str(exit_action):5} mean {mean[0]:9.0f} {mean[1]:8.1f} {mean[2]:7.1f} "
                  f"{mean[3]:7.1f} {mean[4]:8.3f}", flush=True)


if __name__ == "__main__":
    main()
