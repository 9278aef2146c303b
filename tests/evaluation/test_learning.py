"""The learning figures, hand-computed, and the oracle agent's decisions."""

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from hybrid_trader.env.actions import Action
from hybrid_trader.env.factory import make_vec_env
from hybrid_trader.evaluation.learning import learning_figures, learning_markdown, learning_report, oracle_policy
from hybrid_trader.market_data.synthetic import PlantedEdge
from tests.conftest import PROJECT_ROOT

BUY, SELL, HOLD = int(Action.BUY), int(Action.SELL), int(Action.HOLD)


def _backtest(net: list[float], actions: list[tuple[str, int, int]]):
    days = ["2024-01-02", "2024-01-03", "2024-01-04"]
    episodes = pd.DataFrame({"session_date": days, "net_pnl": net})
    steps = pd.DataFrame(actions, columns=["session_date", "row", "action"])
    return episodes, steps


def test_figures_by_hand():
    directions = np.array([1, 1, 1, 0, 0, 0, -1, -1])
    agent, steps = _backtest([100.0, -50.0, 200.0], [
        ("2024-01-02", 0, BUY), ("2024-01-02", 1, SELL), ("2024-01-02", 2, HOLD),  # agrees, disagrees
        ("2024-01-03", 4, BUY),  # the oracle has no side there: not scored
        ("2024-01-04", 6, SELL), ("2024-01-04", 7, HOLD)])  # agrees
    oracle, _ = _backtest([200.0, 100.0, 100.0], [])
    figures = learning_figures(agent, steps, directions, oracle, draws=500, seed=1)
    assert figures["entries"] == 4 and figures["entries_with_oracle_side"] == 3
    assert figures["direction_agreement"] == pytest.approx(2 / 3)
    assert figures["oracle_capture"] == pytest.approx(250 / 400)
    assert figures["oracle_net_pnl"] == 400.0
    assert figures["mean_daily_pnl"] == pytest.approx(250 / 3)
    se = np.std([100.0, -50.0, 200.0], ddof=1) / math.sqrt(3)
    assert figures["mean_daily_pnl_se"] == pytest.approx(se)
    from scipy import stats
    assert figures["p_value_positive"] == pytest.approx(stats.t.sf((250 / 3) / se, df=2))
    assert not figures["significantly_positive"]
    for name in ("direction_agreement", "oracle_capture"):
        assert figures[f"{name}_se"] > 0
        assert figures[f"{name}_lower95"] <= figures[name]


def test_control_has_no_capture_and_a_report_without_plant_says_so():
    agent, steps = _backtest([-10.0, -20.0, 5.0], [("2024-01-02", 0, BUY)])
    figures = learning_figures(agent, steps, np.zeros(4, dtype=int), None)
    assert "oracle_capture" not in figures and figures["entries_with_oracle_side"] == 0
    assert math.isnan(figures["direction_agreement"])
    report = learning_report(agent.assign(agent="phase2", split="test", cost_multiple=1.0),
                             steps.assign(agent="phase2", split="test", cost_multiple=1.0),
                             {"test": np.zeros(4, dtype=int)}, PlantedEdge("none"))
    assert report["control"] and report["splits"]["test"]["phase2"]["p_value_positive"] > 0.5
    assert "| phase2 | 3 | 1 | n/a |" in learning_markdown(report)
    unplanted = learning_report(agent, steps, {}, None)
    assert unplanted["planted"] is None and "not planted" in learning_markdown(unplanted)


def test_capture_rejects_an_oracle_missing_sessions():
    agent, steps = _backtest([1.0, 2.0, 3.0], [])
    oracle = pd.DataFrame({"session_date": ["2024-01-02"], "net_pnl": [5.0]})
    with pytest.raises(ValueError, match="lacks sessions"):
        learning_figures(agent, steps, np.zeros(1, dtype=int), oracle)


@pytest.mark.parametrize("exit_action", [True, False])
def test_oracle_enters_on_its_side_and_holds_without_one(synthetic_market, exit_action):
    environment = OmegaConf.to_container(OmegaConf.load(PROJECT_ROOT / "conf/base/parameters.yml"))["environment"]
    env = make_vec_env(synthetic_market, environment, n_envs=1, phase=2, episode_mode="full_session",
                       exit_action=exit_action)
    env.reset()
    directions = np.zeros(synthetic_market.n_bars, dtype=np.int64)
    policy = oracle_policy(env, directions)
    t = int(env.engine.t[0])
    masks = env.action_masks()
    assert policy(None, masks).tolist() == [HOLD]  # no side: stay flat, though entries are allowed
    assert masks[0, SELL]
    directions[t] = -1
    assert policy(None, env.action_masks()).tolist() == [SELL]
    env.step(np.array([SELL]))
    assert env.engine.side[0] == -1
    assert policy(None, env.action_masks()).tolist() == [HOLD]  # on its side: hold
    directions[:] = 1  # against its side: exit where the engine offers it, else hold
    assert policy(None, env.action_masks()).tolist() == [int(Action.EXIT) if exit_action else HOLD]
    with pytest.raises(ValueError, match="oracle directions"):
        oracle_policy(env, directions[:-1])


def test_oracle_backtest_and_learning_report_through_the_pipeline_nodes():
    """The oracle joins a planted market's backtests; the report's rows line up with the market's."""
    from hybrid_trader.evaluation.backtests import BacktestSetup, run_agent
    from hybrid_trader.evaluation.learning import planted_frames
    from hybrid_trader.markets import CONTRACTS
    from hybrid_trader.pipelines.evaluation.nodes import write_learning_report

    edge = PlantedEdge("time_of_day", points_per_minute=3.0)
    bars, features = planted_frames(edge, n_days=6, test_days=3, seed=4)
    environment = OmegaConf.to_container(OmegaConf.load(PROJECT_ROOT / "conf/base/parameters.yml"))["environment"]
    setup = BacktestSetup(bars, features, features, CONTRACTS["NQ"], environment, None, None, 1, edge)
    runs = {agent: run_agent(agent, "test", 1.0, setup, None, None) for agent in ("oracle", "flat", "random")}
    episodes = pd.concat([e.assign(agent=a, split="test", cost_multiple=1.0) for a, (e, _) in runs.items()])
    steps = pd.concat([s.assign(agent=a, split="test", cost_multiple=1.0) for a, (_, s) in runs.items()])
    report, markdown, metrics = write_learning_report(episodes, steps, bars, features,
                                                      {"planted_edge": {"kind": "time_of_day",
                                                                        "points_per_minute": 3.0}}, environment)
    oracle, flat = report["splits"]["test"]["oracle"], report["splits"]["test"]["flat"]
    # Every oracle entry is on its own side only if the directions and the market rows line up.
    assert oracle["entries"] > 0 and oracle["direction_agreement"] == 1.0 and oracle["oracle_capture"] == 1.0
    assert oracle["net_pnl"] > 0  # 3 points a minute is far above the costs
    assert flat["entries"] == 0 and flat["oracle_capture"] == 0.0
    assert report["exit_action"] is False and "EXIT action off" in markdown
    assert metrics["test/oracle/oracle_capture"]["value"] == 1.0
    with pytest.raises(ValueError, match="needs a planted market"):
        run_agent("oracle", "test", 1.0, dataclasses.replace(setup, planted_edge=None), None, None)
