"""One real trial (tiny Phase 2 training) on a planted market: its figures against the oracle,
and the shared Phase 2 stage's files."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import yaml

from hybrid_trader.evaluation.apex import FIGURES as APEX_FIGURES
from hybrid_trader.evaluation.backtests import BacktestSetup, run_agent
from hybrid_trader.evaluation.learning import planted_frames
from hybrid_trader.experiments.spec import ExperimentSpec
from hybrid_trader.experiments.trials import TrialData, train_and_backtest, train_stage
from hybrid_trader.market_data.synthetic import PlantedEdge
from hybrid_trader.markets import CONTRACTS
from tests.conftest import PROJECT_ROOT


def _params() -> dict:
    base = {}
    for name in ("parameters.yml", "parameters_phase2.yml", "parameters_phase3.yml", "parameters_evaluation.yml",
                 "parameters_advisor.yml"):
        base.update(yaml.safe_load((PROJECT_ROOT / "conf/base" / name).read_text()))
    tiny = yaml.safe_load((PROJECT_ROOT / "conf/test/parameters_phase2.yml").read_text())["phase2"]
    base["phase2"] = {**base["phase2"], **tiny}
    base["evaluation"] = {**base["evaluation"], "planted_edge": dataclasses.asdict(EDGE),
                          "apex_evaluation": {"attempts": 200, "outer_resamples": 5, "resample_attempts": 20}}
    return base


EDGE = PlantedEdge("time_of_day", 1.0, "12:45")


@pytest.fixture(scope="module")
def planted():
    bars, features = planted_frames(EDGE, n_days=8, test_days=3, seed=4)
    first_train_day = features.loc[features["split"] == "train", "session_date"].min()
    features.loc[features["session_date"] == first_train_day, "split"] = "validation"
    return bars, features


def test_a_phase2_trial_on_a_planted_market_is_measured_against_the_oracle(planted, tmp_path):
    bars, features = planted
    params = _params()
    spec = ExperimentSpec.from_params({"name": "planted", "seeds": [5], "configurations": {"phase2": {
        "agent": "phase2"}}}, params)
    [stage], [trial] = spec.trials(params, "planted-data")
    contract = CONTRACTS["MNQ"]
    data = TrialData(bars, features, pd.DataFrame(), dataclasses.asdict(contract), {}, None, {})

    stage_result = train_stage(stage, data, str(tmp_path))
    folder = tmp_path / "phase2" / stage.key
    # The stage is published whole, and its training folder is gone.
    assert sorted(p.name for p in folder.iterdir()) == ["best_policy.zip", "summary.json"]
    assert stage_result["summary"]["num_timesteps"] == params["phase2"]["ppo"]["total_timesteps"]
    assert train_stage(stage, data, str(tmp_path))["model"] == stage_result["model"]  # reused, not retrained

    sessions, figures, _, policy = train_and_backtest(trial, data, stage_result, ("test",), 1.0, str(tmp_path))
    assert len(sessions) == 3 and set(sessions["split"]) == {"test"}
    assert figures["test_net_pnl"] == pytest.approx(sessions["net_pnl"].sum())
    # Capture: the agent's net P&L over the oracle's on the same sessions, the oracle played as the
    # evaluation pipeline plays it.
    setup = BacktestSetup(bars, features, pd.DataFrame(), contract, params["environment"], None, None, 13, EDGE)
    oracle = run_agent("oracle", "test", 1.0, setup, None, None)[0]
    assert oracle["net_pnl"].sum() > 0
    assert figures["test_oracle_capture"] == pytest.approx(sessions["net_pnl"].sum() / oracle["net_pnl"].sum())
    assert 0.0 <= figures["test_direction_agreement"] <= 1.0
    for name in APEX_FIGURES[:3]:
        assert 0.0 <= figures[f"test_apex_{name}"] <= 1.0
    assert sum(figures[f"test_apex_{name}"] for name in APEX_FIGURES[:3]) == pytest.approx(1.0)
    assert policy is not None and np.isfinite(figures["test_mean_daily_pnl"])
