"""``reward_unit``: rewards in dollars (x ``reward_scale``) or in R, the position's dollar risk at entry.

The default contract: 3 MNQ, $2/point each ($6/point), tick 0.25, slippage 1 tick, $0.62 per
contract per side ($1.86 a fill). ATR 10 gives a 20-point stop (R = 20 x $6 = $120) and a 40-point
target; ATR 7.3 gives 2 x 7.3 = 14.6 points, rounded to 14.5 (R = $87), and a 29-point target.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hybrid_trader.env.actions import Action
from hybrid_trader.env.engine import END_REASONS, EngineConfig, TradingEngine
from tests.env.helpers import make_market

H, B, S, BE = Action.HOLD, Action.BUY, Action.SELL, Action.MOVE_SL_TO_BREAKEVEN
DOLLARS = EngineConfig(contracts=3, episode_mode="full_session")
RISK = dataclasses.replace(DOLLARS, reward_unit="risk")


def two_trades():
    """A long that reaches its target (R = $120), then a short held to the flat deadline (R = $87)."""
    opens = [20_000, 20_000, 20_010, 20_030, 20_030, 20_025, 20_025, 20_020]
    closes = [20_000, 20_010, 20_030, 20_030, 20_025, 20_025, 20_025, 20_020]
    highs = np.maximum(opens, closes)
    highs[2] = 20_045  # touches the long's target 20040.25
    atr = [10, 10, 10, 7.3, 7.3, 7.3, 7.3, 7.3]
    return make_market(opens, highs, closes=closes, symbol="MNQ", atr=atr)


def play(config, market, actions, start=0):
    engine = TradingEngine(market, config, n_envs=1)
    engine.reset(starts=np.array([start]))
    results = [engine.step(np.array([a])) for a in actions]
    return engine, results


# Long: fill 20000.25, target 20040.25. Step 1 marks at 20010: -1.86 + 9.75 x 6 = 56.64;
# step 2 fills the target: 6 x (20040.25 - 20010) - 1.86 = 179.64; the trade nets 236.28.
# Short (decided at the close of bar 3, ATR 7.3): fill 20029.75, stop 20044.25 (break-even at
# the close of bar 4 moves it to 20029.75; R stays $87). Step 4 marks at 20025: -1.86 + 4.75 x 6
# = 26.64; the deadline closes at 20020 + 0.25: 6 x 4.75 - 1.86 = 26.64; the trade nets 53.28.
TWO_TRADES_DOLLARS = [56.64, 179.64, 0.0, 26.64, 0.0, 0.0, 26.64]
TWO_TRADES_ACTIONS = [B, H, H, S, BE, H, H]


def test_risk_rewards_are_each_steps_dollars_over_its_positions_risk_at_entry():
    engine, results = play(RISK, two_trades(), TWO_TRADES_ACTIONS)
    rewards = [r.reward[0] for r in results]
    expected = [56.64 / 120, 179.64 / 120, 0.0, 26.64 / 87, 0.0, 0.0, 26.64 / 87]
    assert rewards == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert engine.cash[0] == pytest.approx(50_000 + 236.28 + 53.28)
    assert engine.exit_counts[0].tolist() == [0, 1, 0, 1, 0]  # the target, then the deadline
    assert END_REASONS[results[-1].end_reason[0]] == "session_end"
    # Each trade's summed reward is its R-multiple net of costs: (240 - 3.72) / 120 and 53.28 / 87.
    assert sum(rewards[:2]) == pytest.approx(1.969, rel=1e-12)
    assert sum(rewards[3:]) == pytest.approx(53.28 / 87, rel=1e-12)


def test_dollar_rewards_are_the_default_and_unchanged():
    assert EngineConfig().reward_unit == "dollars"
    _, results = play(DOLLARS, two_trades(), TWO_TRADES_ACTIONS)
    assert [r.reward[0] for r in results] == pytest.approx([d * 0.001 for d in TWO_TRADES_DOLLARS],
                                                           rel=1e-12, abs=1e-12)


def test_each_environment_divides_by_its_own_positions_risk():
    engine = TradingEngine(two_trades(), RISK, n_envs=2)
    engine.reset(starts=np.array([0, 3]))
    result = engine.step(np.array([B, S]))
    assert result.reward == pytest.approx([56.64 / 120, 26.64 / 87], rel=1e-12)


# The long of a $100-drawdown account: fill 20000.25 on a flat bar (-1.86 - 0.25 x 6 = -3.36,
# floor 49900); the next bar's low 19980.5 (above the stop) takes equity to 49879.64: a breach,
# liquidated at 19980.5 - 0.25: -20 points x 6 - 1.86 = -121.86, from the marked 49996.64 -120.36.
@pytest.mark.parametrize("reward_scale, breach_penalty, penalty_dollars", [(0.001, 1.0, 1_000.0),
                                                                          (0.01, 2.0, 200.0)])
def test_the_breach_penalty_is_its_dollars_in_r_of_the_breaching_position(reward_scale, breach_penalty,
                                                                           penalty_dollars):
    market = make_market([20_000, 20_000, 20_000, 20_000], [20_000, 20_000, 20_000, 20_000],
                         [20_000, 20_000, 19_980.5, 20_000], [20_000, 20_000, 19_990, 20_000],
                         symbol="MNQ", atr=10.0)
    accounts = {unit: dataclasses.replace(DOLLARS, drawdown_limit=100.0, reward_scale=reward_scale,
                                          breach_penalty=breach_penalty, reward_unit=unit)
                for unit in ("dollars", "risk")}
    engine, risk = play(accounts["risk"], market, [B, H])
    _, dollars = play(accounts["dollars"], market, [B, H])
    assert END_REASONS[risk[1].end_reason[0]] == "drawdown_breach" and engine.cash[0] == pytest.approx(49_876.28)
    assert [r.reward[0] for r in risk] == pytest.approx([-3.36 / 120, (-120.36 - penalty_dollars) / 120],
                                                         rel=1e-12)
    assert [r.reward[0] for r in dollars] == pytest.approx(
        [-3.36 * reward_scale, -120.36 * reward_scale - breach_penalty], rel=1e-12)


@pytest.mark.parametrize("unit", ["R", "Dollars", "", None])
def test_an_unknown_reward_unit_is_refused(unit):
    with pytest.raises(ValueError, match=r"environment\.reward_unit must be one of \('dollars', 'risk'\)"):
        EngineConfig(reward_unit=unit)
