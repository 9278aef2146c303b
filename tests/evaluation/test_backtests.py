"""Baselines and the per-backtest metrics on hand-made sessions."""

import dataclasses
import math

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


def test_earlier_runs_trials_are_found_in_mlflow_once_each(tmp_path):
    import mlflow

    from hybrid_trader.evaluation.report import earlier_trials

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("trials")
    prefix = "backtest_mlflow_metrics."
    try:
        with mlflow.start_run():  # an earlier run, logged as kedro-mlflow names it
            mlflow.log_metric(prefix + "test_1x/hybrid/sharpe_daily", 0.25, step=0)
            mlflow.log_metric(prefix + "test_1x/hybrid/sharpe_daily", 0.3, step=1)  # logged again: the last counts
            mlflow.log_metrics({prefix + "test_1x/phase2/sharpe_daily": -0.1,
                                prefix + "test_2x/hybrid/sharpe_daily": 0.2,  # another cost level
                                prefix + "test_1x/random/sharpe_daily": 0.7,  # baselines are not trials
                                prefix + "test_1x/oracle/sharpe_daily": 5.0,
                                prefix + "test_1x/hybrid/net_pnl": 100.0})
        with mlflow.start_run():  # the table recomputed from the same backtests: the same two trials
            mlflow.log_metrics({prefix + "test_1x/hybrid/sharpe_daily": 0.3,
                                prefix + "test_1x/phase2/sharpe_daily": -0.1})
        with mlflow.start_run():  # an experiment's trial, without a dataset prefix, a dot in its name
            mlflow.log_metric("test_1x/lr.3e-4/sharpe_daily", 0.15)
        with mlflow.start_run():
            mlflow.log_metric(prefix + "test_1x/phase2/sharpe_daily", 0.9)  # this run: not earlier
            assert sorted(earlier_trials()) == [("hybrid", 0.3), ("lr.3e-4", 0.15), ("phase2", -0.1)]
            assert earlier_trials("test", 2.0) == [("hybrid", 0.2)] and earlier_trials("validation") == []
            assert sorted(sharpe for _, sharpe in earlier_trials()) == [-0.1, 0.15, 0.3]
        assert earlier_trials() == []  # no active run
    finally:
        mlflow.set_tracking_uri(previous)


def test_trials_are_counted_once():
    from hybrid_trader.evaluation.backtests import unique_trials

    assert unique_trials([("hybrid", 0.3), ("phase2", float("nan"))], [("hybrid", 0.3), ("hybrid", 0.31)],
                         [0.05, 0.05]) == [("hybrid", 0.3), ("hybrid", 0.31), ("", 0.05)]
    # The same value to 12 significant digits (e.g. through a store that rounds) is the same trial.
    assert len(unique_trials([("a", 0.123456789012345), ("a", 0.123456789012)])) == 1


def _result(agent, split, cost, returns):
    returns = np.asarray(returns, dtype=float)
    return {"agent": agent, "split": split, "cost_multiple": cost, "daily_returns": list(returns),
            "sharpe_daily": float(returns.mean() / returns.std(ddof=1))}


def test_deflated_sharpe_shares_one_benchmark_per_split_from_the_trials_at_base_costs():
    from hybrid_trader.evaluation.backtests import add_deflated_sharpe
    from hybrid_trader.evaluation.metrics import expected_max_sharpe, probabilistic_sharpe_ratio

    rng = np.random.default_rng(0)
    results = [_result(agent, split, cost, rng.normal(0.002 / cost, 0.01, 50))
               for split in ("validation", "test") for cost in (1.0, 2.0)
               for agent in ("phase2", "hybrid", "llm_only", "random", "buy_and_hold")]
    results.append(_result("oracle", "test", 1.0, rng.normal(0.05, 0.01, 50)))
    row = {(r["agent"], r["split"], r["cost_multiple"]): r for r in results}
    phase2_sharpe = row["phase2", "test", 1.0]["sharpe_daily"]
    add_deflated_sharpe(results, earlier_trials={"test": [("hybrid", 0.2), ("old_config", -0.05)]},
                        extra_trials={"test": [("lr_high", 0.12), ("phase2", phase2_sharpe)]})  # phase2: already in
    # Test days: this run's phase2, hybrid and llm_only at 1x, the two earlier and one new extra trial.
    test_trials = [row[a, "test", 1.0]["sharpe_daily"] for a in ("phase2", "hybrid", "llm_only")] + [0.2, -0.05, 0.12]
    sr0 = expected_max_sharpe(test_trials)
    for r in results:
        if r["split"] == "test":
            assert r["dsr_trials"] == 6 and r["dsr_sr0"] == pytest.approx(sr0)
            # 2x costs and baselines are judged against the 1x trials' SR0, not counted in it.
            assert r["dsr"] == pytest.approx(probabilistic_sharpe_ratio(r["daily_returns"], sr0))
    validation_sr0 = expected_max_sharpe([row[a, "validation", 1.0]["sharpe_daily"]
                                          for a in ("phase2", "hybrid", "llm_only")])
    assert row["random", "validation", 2.0]["dsr_trials"] == 3
    assert row["random", "validation", 2.0]["dsr_sr0"] == pytest.approx(validation_sr0)
    assert [r["dsr_is_trial"] for r in results[:5]] == [True, True, True, False, False]
    assert row["oracle", "test", 1.0]["dsr_is_trial"] is False


def test_deflated_sharpe_is_nan_with_fewer_than_two_trials():
    from hybrid_trader.evaluation.backtests import add_deflated_sharpe

    results = [_result("hybrid", "test", 1.0, [0.01, -0.01, 0.02, 0.0]),
               _result("random", "test", 1.0, [0.0, -0.01, 0.01, 0.0])]
    add_deflated_sharpe(results)
    assert results[0]["dsr_trials"] == 1 and math.isnan(results[0]["dsr"]) and math.isnan(results[1]["dsr"])


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
