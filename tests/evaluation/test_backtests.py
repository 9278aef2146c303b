"""Baselines and the per-backtest metrics on hand-made sessions."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from hybrid_trader.agents.backtest import run_backtest
from hybrid_trader.env.engine import EngineConfig
from hybrid_trader.env.vec_env import TradingVecEnv
from hybrid_trader.evaluation.backtests import backtest_metrics, buy_and_hold_policy, llm_only_policy, with_costs
from hybrid_trader.features.registry import HYBRID_DIM
from tests.env.helpers import make_market

NO_STOP = EngineConfig(episode_mode="full_session", stop_atr_multiple=1e6)
ENV_PARAMS = {"entry_window": {"start": "09:30", "end": "16:00"}, "engine": {}}


def dipping_session():
    """30 bars; decisions from bar 19 (a full observation window) to bar 28; flat at bar 29's open."""
    opens = np.full(30, 20_000.0)
    opens[29] = 20_010.0
    lows = opens.copy()
    lows[25] = 19_975.0  # would hit a 2 x ATR stop (19,980.25); buy-and-hold has none
    market = make_market(opens, lows=lows)
    rows = np.arange(30)
    return dataclasses.replace(market, episode_start=market.episode_start & (rows >= 19),
                               entry_allowed=market.entry_allowed & (rows >= 19))


def test_buy_and_hold_pnl_equals_its_hand_computed_value():
    market = dipping_session()
    episodes, steps = run_backtest(TradingVecEnv(market, NO_STOP, phase=2), buy_and_hold_policy, trace=True)
    # Long at 20,000 + 0.25, flat at the last bar's open 20,010 - 0.25: 9.5 points x $20 - 2 x $2.25.
    assert episodes["net_pnl"].tolist() == [pytest.approx(185.5)]
    assert episodes["trades"].tolist() == [1] and episodes["end_reason"].tolist() == ["session_end"]
    assert steps["action"].tolist() == [1] + [0] * 9  # bought once, then held
    assert steps["trade_pnl"].iloc[-1] == pytest.approx(185.5) and steps["trade_pnl"].iloc[:-1].isna().all()
    # Marked at the closes meanwhile (close = open = 20,000: -0.25 point and the entry commission).
    assert steps["equity"].iloc[1] == pytest.approx(50_000 - 5.0 - 2.25)


def test_double_costs_double_commission_and_slippage():
    market = dataclasses.replace(dipping_session(), contract=with_costs(dipping_session().contract, 2.0))
    episodes = run_backtest(TradingVecEnv(market, NO_STOP, phase=2), buy_and_hold_policy)
    # Entry 20,000.50, exit 20,009.50: 9 points x $20 - 2 x $4.50.
    assert episodes["net_pnl"].tolist() == [pytest.approx(171.0)]


def test_the_advisor_alone_takes_its_most_probable_allowed_action():
    obs = np.zeros((4, HYBRID_DIM), dtype=np.float32)
    obs[0, 261:268] = [0.2, 0.1, 0.7, 0, 0, 0, 0]
    obs[0, 270] = 1  # advice present
    obs[1, 261:268] = [0.2, 0.1, 0.7, 0, 0, 0, 0]  # SELL preferred but masked below: BUY
    obs[1, 270] = 1
    obs[3, 261:268] = [0.3, 0, 0, 0, 0.2, 0, 0.5]  # in a position: EXIT preferred
    obs[3, 270] = 1
    masks = np.array([[1, 1, 1, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0, 0], [1, 0, 0, 0, 1, 0, 1]],
                     dtype=bool)
    # Row 1: HOLD (0.2) beats BUY (0.1); row 2: no advice; row 3: EXIT.
    assert llm_only_policy(obs, masks).tolist() == [2, 0, 0, 6]


def test_backtest_metrics_of_two_hand_made_sessions():
    episodes = pd.DataFrame({"session_date": ["2024-01-02", "2024-01-03"], "net_pnl": [500.0, -250.0],
                             "steps": [100, 40], "end_reason": ["session_end", "drawdown_breach"],
                             "trades": [2, 1]})
    steps = pd.DataFrame({"session_date": ["2024-01-02"] * 3 + ["2024-01-03"] * 2,
                          "equity": [50_100.0, 49_900.0, 50_500.0, 50_200.0, 49_750.0],
                          "trade_pnl": [np.nan, 300.0, 200.0, np.nan, -250.0]})
    m = backtest_metrics(episodes, steps, 50_000.0, {"2024-01-02": "low_vol_up"})
    assert m["net_pnl"] == 250.0 and m["mean_daily_pnl"] == 125.0
    # Path: 50,000, 50,100, 49,900, 50,500, then day 2 from 50,500: 50,700, 50,250 -> the worst fall
    # is 50,700 -> 50,250 = 450 (0.888% of 50,700).
    assert m["max_drawdown"] == pytest.approx(450.0) and m["max_drawdown_pct"] == pytest.approx(450 / 50_700)
    assert m["win_rate"] == pytest.approx(2 / 3) and m["profit_factor"] == pytest.approx(2.0)
    assert m["apex_breaches"] == 1 and m["trades_per_day"] == 1.5 and m["mean_episode_length"] == 70
    assert m["by_regime"] == {"low_vol_up": {"mean_daily_pnl": 500.0, "sessions": 1},
                              "unknown": {"mean_daily_pnl": -250.0, "sessions": 1}}
    daily = np.array([0.01, -0.005])
    assert m["sharpe_daily"] == pytest.approx(daily.mean() / daily.std(ddof=1))


def test_earlier_runs_sharpe_ratios_are_found_in_mlflow(tmp_path):
    import mlflow

    from hybrid_trader.evaluation.report import earlier_trial_sharpes

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("trials")
    try:
        with mlflow.start_run():  # an earlier run, logged as kedro-mlflow names it
            mlflow.log_metrics({"backtest_mlflow_metrics.test_1x/hybrid/sharpe_daily": 0.3,
                                "backtest_mlflow_metrics.test_1x/phase2/sharpe_daily": -0.1,
                                "backtest_mlflow_metrics.test_2x/hybrid/sharpe_daily": 0.2,
                                "backtest_mlflow_metrics.test_1x/oracle/sharpe_daily": 5.0,  # not a trial
                                "backtest_mlflow_metrics.test_1x/hybrid/net_pnl": 100.0})
        with mlflow.start_run():
            mlflow.log_metric("backtest_mlflow_metrics.test_1x/flat/sharpe_daily", 0.9)  # this run: not earlier
            assert sorted(earlier_trial_sharpes()) == [-0.1, 0.3]
        assert earlier_trial_sharpes() == []  # no active run
    finally:
        mlflow.set_tracking_uri(previous)


def test_deflated_sharpe_counts_every_agent_but_the_oracle_as_a_trial():
    from hybrid_trader.evaluation.backtests import add_deflated_sharpe
    from hybrid_trader.evaluation.metrics import deflated_sharpe_ratio

    rng = np.random.default_rng(0)
    results = [{"agent": agent, "split": "test", "cost_multiple": 1.0, "daily_returns": list(returns),
                "sharpe_daily": float(returns.mean() / returns.std(ddof=1))}
               for agent, returns in (("phase2", rng.normal(0.001, 0.01, 50)), ("flat", rng.normal(0, 0.01, 50)),
                                      ("oracle", rng.normal(0.05, 0.01, 50)))]
    add_deflated_sharpe(results, earlier_trials=[0.2])
    trials = [results[0]["sharpe_daily"], results[1]["sharpe_daily"], 0.2]
    assert [r["dsr_trials"] for r in results] == [3, 3, 3]
    assert results[0]["dsr"] == pytest.approx(deflated_sharpe_ratio(results[0]["daily_returns"], trials))


def _observation_policy(obs: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Deterministic and trading: a valid action picked from each observation's own values."""
    pick = (np.abs(obs[:, :8]).sum(axis=1) * 1e3).astype(np.int64)
    valid = masks.cumsum(axis=1)
    return (valid > (pick % masks.sum(axis=1))[:, None]).argmax(axis=1)


@pytest.mark.parametrize("n_envs", [3, 64])
def test_sessions_played_side_by_side_give_the_one_environment_result(n_envs):
    from hybrid_trader.env.factory import make_vec_env, market_for_split
    from hybrid_trader.evaluation.learning import planted_frames
    from hybrid_trader.markets import CONTRACTS

    bars, features = planted_frames(None, 12, 5)
    market = market_for_split(bars, features, CONTRACTS["MNQ"], ENV_PARAMS, "test")
    alone = run_backtest(make_vec_env(market, ENV_PARAMS, n_envs=1, phase=2, episode_mode="full_session"),
                         _observation_policy, trace=True)
    together = run_backtest(make_vec_env(market, ENV_PARAMS, n_envs=n_envs, phase=2,
                                         episode_mode="full_session"), _observation_policy, trace=True)
    assert len(alone[0]) == 5 and alone[0]["trades"].sum() > 5  # every session once, and it trades
    pd.testing.assert_frame_equal(together[0], alone[0])
    pd.testing.assert_frame_equal(together[1], alone[1])


def test_the_comparison_carries_each_agents_chance_to_pass_an_apex_evaluation():
    from hybrid_trader.pipelines.evaluation.nodes import compute_backtest_metrics

    # Two agents, three sessions each: "steady" makes +1,100 to +1,200 a day (any three days pass, on
    # day 3: 3,300 or more, two days at most 2,400), "dipper" dips to -2,600 every day (a breach on day 1).
    days = ["2024-01-02", "2024-01-03", "2024-01-04"]
    paths = {("steady", i): [300.0, 1_100.0 + 50 * i] for i in range(3)}
    paths.update({("dipper", i): [-2_600.0, 500.0 + 50 * i] for i in range(3)})
    episodes = pd.DataFrame([{"agent": agent, "split": "test", "cost_multiple": 1.0, "session_date": days[i],
                              "net_pnl": path[-1], "steps": 2, "trades": 1,
                              "end_reason": "drawdown_breach" if agent == "dipper" else "session_end"}
                             for (agent, i), path in paths.items()])
    steps = pd.DataFrame([{"agent": agent, "split": "test", "cost_multiple": 1.0, "session_date": days[i],
                           "step": k + 1, "equity": 50_000.0 + x, "trade_pnl": np.nan}
                          for (agent, i), path in paths.items() for k, x in enumerate(path)])
    day_splits = pd.DataFrame({"session_date": days, "regime": ["calm"] * 3})
    evaluation = {"apex_evaluation": {"attempts": 50, "outer_resamples": 10, "resample_attempts": 20}}
    table, markdown, metrics = compute_backtest_metrics(episodes, steps, day_splits, {"engine": {
        "starting_balance": 50_000.0, "drawdown_limit": 2_500.0, "threshold_lock_offset": 100.0}}, evaluation)
    rows = {row["agent"]: row for row in table["rows"]}
    assert rows["steady"]["apex_pass_probability"] == 1 and rows["steady"]["apex_median_days_to_pass"] == 3
    assert rows["dipper"]["apex_breach_probability"] == 1 and rows["dipper"]["apex_pass_probability_high"] == 0
    assert "apex_pass_probability" in markdown and "| steady |" in markdown and "100.0% (100.0-100.0%)" in markdown
    assert metrics["test_1x/steady/apex_pass_probability"]["value"] == 1.0
    assert metrics["test_1x/dipper/apex_breach_probability_low"]["value"] == 1.0
    assert "test_1x/dipper/apex_median_days_to_pass" not in metrics  # NaN: no pass
