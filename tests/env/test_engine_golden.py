"""Golden tests: hand-computed dollars for every rule of the engine.

Costs: NQ $20/point, ES $50/point, tick 0.25, slippage 1 tick, $2.25 per side.
Default stops: 2 x ATR (ATR = 10 -> 20 points), target 2 x the stop distance.
"""

from __future__ import annotations

import numpy as np
import pytest

from hybrid_trader.env.actions import Action
from hybrid_trader.env.engine import END_REASONS, EngineConfig, TradingEngine
from tests.env.helpers import make_market

H, B, S = Action.HOLD, Action.BUY, Action.SELL
START = 50_000.0


def run(market, actions, config=None, start=0):
    engine = TradingEngine(market, config or EngineConfig(episode_mode="full_session", exit_action=True), n_envs=1)
    engine.reset(starts=np.array([start]))
    results = []
    for action in actions:
        results.append(engine.step(np.array([action])))
        if results[-1].terminated[0] or results[-1].truncated[0]:
            break
    return engine, results


def flat_session(n=8, price=20_000.0):
    return np.full(n, price)


def test_long_round_trip_nq_to_the_flat_deadline():
    opens = flat_session()
    opens[7] = 20_010.0
    closes = opens.copy()
    closes[1:7] = 20_005.0
    market = make_market(opens, closes=closes)
    engine, results = run(market, [B, H, H, H, H, H, H])
    # Entry 20000 + 0.25; exit at the 16:59 bar's open 20010 - 0.25: 9.5 points x $20 - 2 x $2.25.
    assert engine.cash[0] == pytest.approx(START + 9.5 * 20 - 4.5) == START + 185.5
    assert engine.realized_today[0] == pytest.approx(185.5)
    assert engine.fills[0] == 2 and engine.commission_paid[0] == pytest.approx(4.5)
    assert engine.side[0] == 0
    assert END_REASONS[results[-1].end_reason[0]] == "session_end" and results[-1].terminated[0]
    assert sum(r.reward[0] for r in results) == pytest.approx(185.5 * 0.001)
    # While open the position was marked at the close: 20005 - 20000.25 = 4.75 points.
    assert engine.exit_counts[0].tolist() == [0, 1, 0, 0, 0]


@pytest.mark.parametrize("side, last_open, points", [(B, 20_045.0, 20_045.0 - 20_000.25),
                                                     (S, 19_950.0, 19_999.75 - 19_950.0)])
def test_an_open_beyond_the_target_on_the_last_bar_fills_at_the_open(side, last_open, points):
    # Target 40 points from the fill; the 16:59 bar opens beyond it: the resting target fills at
    # that open, without slippage, as on any other bar (not at the deadline's open minus slippage).
    opens = flat_session()
    opens[7] = last_open
    engine, results = run(make_market(opens), [side] + [H] * 6)
    assert END_REASONS[results[-1].end_reason[0]] == "session_end" and len(results) == 7
    assert engine.cash[0] == pytest.approx(START + points * 20 - 4.5)
    assert engine.exit_counts[0].tolist() == [0, 0, 0, 1, 0]


def test_an_open_beyond_the_stop_on_the_last_bar_fills_at_the_open_minus_slippage():
    opens = flat_session()
    opens[7] = 19_970.0  # below the stop 19980.25
    engine, results = run(make_market(opens), [B] + [H] * 6)
    assert engine.cash[0] == pytest.approx(START - (20_000.25 - 19_969.75) * 20 - 4.5)
    assert engine.exit_counts[0].tolist() == [0, 0, 1, 0, 0]


def test_short_round_trip_es():
    opens = np.full(8, 5_000.0)
    opens[7] = 4_990.0
    market = make_market(opens, symbol="ES", atr=4.0)
    engine, _ = run(market, [S] + [H] * 6)
    # Entry 5000 - 0.25 = 4999.75; exit 4990 + 0.25 = 4990.25: 9.5 points x $50 - $4.50.
    assert engine.cash[0] == pytest.approx(START + 470.5)


def test_stop_hit_fills_at_the_stop_minus_slippage():
    opens = flat_session()
    lows = opens.copy()
    lows[3] = 19_975.0  # below the stop 20000.25 - 20 = 19980.25
    market = make_market(opens, lows=lows)
    engine, results = run(market, [B, H, H, H])
    assert engine.side[0] == 0
    # Exit 19980.25 - 0.25 = 19980.00: -20.25 points x $20 - $4.50.
    assert engine.cash[0] == pytest.approx(START - 405.0 - 4.5)
    assert engine.exit_counts[0].tolist() == [0, 0, 1, 0, 0]
    assert not results[-1].terminated[0]  # a closed trade never ends the episode


def test_target_hit_fills_at_the_target():
    opens = flat_session()
    highs = opens.copy()
    highs[4] = 20_045.0  # above the target 20000.25 + 40
    market = make_market(opens, highs=highs)
    engine, _ = run(market, [B, H, H, H, H])
    assert engine.cash[0] == pytest.approx(START + 40 * 20 - 4.5)
    assert engine.exit_counts[0].tolist() == [0, 0, 0, 1, 0]


def test_stop_and_target_in_one_bar_assume_the_stop():
    opens = flat_session()
    highs, lows = opens.copy(), opens.copy()
    highs[3], lows[3] = 20_045.0, 19_975.0
    market = make_market(opens, highs=highs, lows=lows)
    engine, _ = run(market, [B, H, H, H])
    assert engine.cash[0] == pytest.approx(START - 409.5)


def test_gap_through_the_stop_fills_at_the_open():
    opens = flat_session()
    opens[3] = 19_970.0
    market = make_market(opens)
    engine, _ = run(market, [B, H, H])
    # Exit at the open 19970 - 0.25: -30.5 points.
    assert engine.cash[0] == pytest.approx(START - 30.5 * 20 - 4.5)


def test_break_even_move():
    opens = np.array([20_000, 20_000, 20_000, 20_015, 20_000, 20_000, 20_000, 20_000.0])
    closes = np.array([20_000, 20_000, 20_015, 20_000, 20_000, 20_000, 20_000, 20_000.0])
    lows = np.minimum(opens, closes)
    lows[3] = 19_995.0
    market = make_market(opens, closes=closes, lows=lows)
    engine = TradingEngine(market, EngineConfig(episode_mode="full_session"), 1)
    engine.reset(starts=np.array([0]))
    engine.step(np.array([B]))  # entry 20000.25 at bar 1's open
    engine.step(np.array([H]))  # bar 2 closes 20015: in profit
    assert engine.action_masks()[0, Action.MOVE_SL_TO_BREAKEVEN]
    engine.step(np.array([Action.MOVE_SL_TO_BREAKEVEN]))
    # Stop at the entry 20000.25, hit by bar 3's low 19995: exit 20000.25 - 0.25.
    assert engine.side[0] == 0
    assert engine.cash[0] == pytest.approx(START - 0.25 * 20 - 4.5)


def _trending_market():
    opens = np.array([20_000, 20_000, 20_000, 20_015, 20_030, 20_020, 20_020, 20_020, 20_020.0])
    closes = np.array([20_000, 20_000, 20_015, 20_030, 20_020, 20_020, 20_020, 20_020, 20_020.0])
    lows, highs = np.minimum(opens, closes), np.maximum(opens, closes)
    lows[2] = 19_996.0
    lows[5] = 20_005.0
    return make_market(opens, highs=highs, lows=lows, closes=closes)


def test_trailing_stop_ratchets_with_closes_and_never_loosens():
    engine = TradingEngine(_trending_market(), EngineConfig(episode_mode="full_session"), 1)
    engine.reset(starts=np.array([0]))
    engine.step(np.array([B]))  # entry 20000.25, stop 19980.25
    engine.step(np.array([Action.ENABLE_TRAILING_STOP]))  # distance 2 x ATR = 20; bar 2 closes 20015
    assert engine.stop[0] == pytest.approx(19_995.0)
    engine.step(np.array([H]))  # bar 3 closes 20030
    assert engine.stop[0] == pytest.approx(20_010.0)
    engine.step(np.array([H]))  # bar 4 closes 20020: 20000 would loosen it
    assert engine.stop[0] == pytest.approx(20_010.0)
    engine.step(np.array([H]))  # bar 5's low 20005 hits 20010
    assert engine.side[0] == 0
    assert engine.cash[0] == pytest.approx(START + (20_009.75 - 20_000.25) * 20 - 4.5)


def test_trailing_stop_is_not_tested_against_the_bar_that_set_it():
    opens = np.array([20_000, 20_000, 20_000, 20_030, 20_030, 20_030.0])
    closes = np.array([20_000, 20_000, 20_030, 20_030, 20_030, 20_030.0])
    lows, highs = np.minimum(opens, closes), np.maximum(opens, closes)
    lows[2] = 20_001.0  # bar 2's own low is under the level its close sets (20010)
    market = make_market(opens, highs=highs, lows=lows, closes=closes)
    engine = TradingEngine(market, EngineConfig(episode_mode="full_session"), 1)
    engine.reset(starts=np.array([0]))
    engine.step(np.array([B]))
    engine.step(np.array([Action.ENABLE_TRAILING_STOP]))
    assert engine.side[0] == 1 and engine.stop[0] == pytest.approx(20_010.0)
    engine.step(np.array([H]))
    assert engine.side[0] == 1


def test_drawdown_breach_on_the_bars_adverse_extreme_mid_trade():
    opens = flat_session()
    lows = opens.copy()
    lows[2] = 19_870.0  # stop is 200 points away (ATR 100), far below
    market = make_market(opens, lows=lows, atr=100.0)
    engine, results = run(market, [B, H, H])
    last = results[-1]
    # Equity at the low: 50000 - 2.25 + (19870 - 20000.25) x 20 = 47392.75 <= floor 47500.
    assert last.terminated[0] and END_REASONS[last.end_reason[0]] == "drawdown_breach"
    # Liquidated at the low minus slippage: 19869.75.
    assert engine.cash[0] == pytest.approx(START - 2.25 - 130.5 * 20 - 2.25)
    assert last.reward[0] == pytest.approx((engine.cash[0] - (START - 2.25 - 0.25 * 20)) * 0.001 - 1.0)


def test_favourable_extreme_first_raises_the_floor_in_the_same_bar():
    opens = flat_session()
    highs, lows = opens.copy(), opens.copy()
    highs[2], lows[2] = 20_100.0, 19_975.0
    market = make_market(opens, highs=highs, lows=lows, atr=100.0)
    engine, results = run(market, [B, H, H])
    # Peak at the high: 50000 - 2.25 + 99.75 x 20 = 51992.75 -> floor 49492.75;
    # equity at the low: 50000 - 2.25 - 25.25 x 20 = 49492.75: touches it -> breach.
    assert engine.peak[0] == pytest.approx(51_992.75)
    assert END_REASONS[results[-1].end_reason[0]] == "drawdown_breach"


def test_floor_locks_at_the_starting_balance_plus_the_lock_offset():
    opens = flat_session(10)
    highs = opens.copy()
    highs[2] = 20_200.0
    market = make_market(opens, highs=highs, atr=100.0)  # target 400 points away
    engine, _ = run(market, [B, H, H, H])
    assert engine.peak[0] > START + 2_600
    assert engine.floor[0] == START + 100  # Apex 50K: the threshold stops trailing at $50,100
    engine, _ = run(market, [B, H, H, H], EngineConfig(episode_mode="full_session", threshold_lock_offset=0.0))
    assert engine.floor[0] == START


def _peak_then_low_market(low):
    # ATR 100: stop 200 points, target 400 points away. Entry at bar 1's open 20000; from bar 2
    # on the market trades at 20100, with bar 2's high setting the peak and bar 3's low the low.
    opens = flat_session(10)
    opens[2:] = 20_100.0
    highs, lows = opens.copy(), opens.copy()
    highs[2] = 20_135.0
    lows[3] = low
    return make_market(opens, highs=highs, lows=lows, atr=100.0)


def test_a_low_under_the_locked_threshold_breaches():
    # Peak at bar 2's high: 50000 - 2.25 + (20135 - 20000.25) x 20 = 52692.75; the trailing
    # threshold 52692.75 - 2500 = 50192.75 is capped at the lock 50000 + 100 = 50100.
    # Bar 3's low 20003: 50000 - 2.25 + 2.75 x 20 = 50052.75 <= 50100 -> breach.
    engine, results = run(_peak_then_low_market(20_003.0), [B, H, H, H])
    assert engine.peak[0] == pytest.approx(52_692.75) and engine.floor[0] == pytest.approx(50_100.0)
    assert END_REASONS[results[-1].end_reason[0]] == "drawdown_breach" and len(results) == 3
    # Liquidated at the low minus slippage, 20002.75: 2.5 points x $20 - 2 x $2.25.
    assert engine.cash[0] == pytest.approx(START + 50.0 - 4.5)
    assert engine.exit_counts[0].tolist() == [1, 0, 0, 0, 0]


def test_a_low_above_the_locked_threshold_does_not_breach():
    # Bar 3's low 20008: 50000 - 2.25 + 7.75 x 20 = 50152.75 > 50100.
    engine, results = run(_peak_then_low_market(20_008.0), [B, H, H])
    assert not results[-1].terminated[0] and engine.side[0] == 1
    # With the lock at the starting balance itself, the first low would not breach either.
    engine, results = run(_peak_then_low_market(20_003.0), [B, H, H],
                          EngineConfig(episode_mode="full_session", threshold_lock_offset=0.0))
    assert not results[-1].terminated[0] and engine.floor[0] == START


def test_no_position_carried_into_the_next_session():
    opens = np.full(12, 20_000.0)
    market = make_market(opens, sessions=[6, 6])
    engine = TradingEngine(market, EngineConfig(episode_mode="full_session"), 1)
    engine.reset()
    assert engine.t[0] == 0
    result = None
    for action in [B, H, H, H, H]:
        result = engine.step(np.array([action]))
    assert result.terminated[0] and END_REASONS[result.end_reason[0]] == "session_end"
    assert engine.side[0] == 0 and engine.t[0] == 5
    engine.reset(np.array([0]))
    assert engine.t[0] == 6 and engine.side[0] == 0 and engine.cash[0] == START


def test_masks_are_exact():
    opens = flat_session()
    closes = opens.copy()
    closes[1] = 20_010.0
    allowed = np.array([True, False, True, True, True, True, False, False])
    market = make_market(opens, closes=closes, entry_allowed=allowed)
    engine = TradingEngine(market, EngineConfig(episode_mode="full_session", exit_action=True), 1)
    engine.reset(starts=np.array([0]))
    assert engine.action_masks()[0].tolist() == [True, True, True, False, False, False, False]
    engine.step(np.array([B]))  # long from 20000.25, close 20010: in profit
    assert engine.action_masks()[0].tolist() == [True, False, False, True, True, False, True]
    engine.step(np.array([Action.ENABLE_TRAILING_STOP]))  # close 20000: stop ratchets to 19980 (< entry)
    assert engine.action_masks()[0].tolist() == [True, False, False, False, False, True, True]


def test_forced_invalid_action_is_a_counted_no_op():
    market = make_market(flat_session(), entry_allowed=np.zeros(8, dtype=bool))
    engine = TradingEngine(market, EngineConfig(episode_mode="full_session"), 1)
    engine.reset(starts=np.array([0]))
    result = engine.step(np.array([B]))
    assert result.invalid_action[0] and engine.invalid_actions[0] == 1
    assert engine.side[0] == 0 and engine.fills[0] == 0 and engine.cash[0] == START


def test_random_start_episodes_truncate_at_max_steps():
    market = make_market(np.full(40, 20_000.0))
    engine = TradingEngine(market, EngineConfig(max_episode_steps=5), 1, seed=1)
    engine.reset(starts=np.array([3]))
    results = [engine.step(np.array([H])) for _ in range(5)]
    assert results[-1].truncated[0] and not results[-1].terminated[0]
    assert END_REASONS[results[-1].end_reason[0]] == "max_steps"
    assert not any(r.truncated[0] for r in results[:-1])


def test_rejected_engine_configs():
    with pytest.raises(ValueError, match="drawdown_limit"):
        EngineConfig(drawdown_limit=0)
    with pytest.raises(ValueError, match="episode_mode"):
        EngineConfig(episode_mode="forever")
    with pytest.raises(ValueError, match="threshold_lock_offset"):
        EngineConfig(threshold_lock_offset=-1.0)


# ----------------------------------------------------------------- short side
def _short_market(**bar3):
    opens = flat_session()
    highs, lows = opens.copy(), opens.copy()
    for name, value in bar3.items():
        {"open": opens, "high": highs, "low": lows}[name][3] = value
    highs, lows = np.maximum(highs, opens), np.minimum(lows, opens)
    return make_market(opens, highs=highs, lows=lows)


def test_short_entry_levels_and_stop_hit_above():
    engine, _ = run(_short_market(high=20_025.0), [S])
    assert (engine.entry[0], engine.stop[0], engine.target[0]) == (19_999.75, 20_019.75, 19_959.75)
    engine, _ = run(_short_market(high=20_025.0), [S, H, H])
    # Exit 20019.75 + 0.25 = 20020.00: -20.25 points.
    assert engine.side[0] == 0 and engine.cash[0] == pytest.approx(START - 405.0 - 4.5)
    assert engine.mae[0] == pytest.approx(20.25)


def test_short_target_hit_below():
    engine, _ = run(_short_market(low=19_955.0), [S, H, H])
    assert engine.cash[0] == pytest.approx(START + 800.0 - 4.5)
    assert engine.mfe[0] == pytest.approx(40.0)


def test_short_gaps_through_stop_and_target_fill_at_the_open():
    engine, _ = run(_short_market(open=20_030.0), [S, H, H])
    assert engine.cash[0] == pytest.approx(START - (20_030.25 - 19_999.75) * 20 - 4.5)
    engine, _ = run(_short_market(open=19_950.0), [S, H, H])
    assert engine.cash[0] == pytest.approx(START + (19_999.75 - 19_950.0) * 20 - 4.5)


def test_open_beyond_the_target_fills_the_target_even_if_the_bar_later_hits_the_stop():
    opens = flat_session()
    opens[3] = 20_045.0
    lows = opens.copy()
    lows[3] = 19_975.0
    engine, results = run(make_market(opens, lows=lows), [B, H, H])
    assert engine.cash[0] == pytest.approx(START + (20_045.0 - 20_000.25) * 20 - 4.5)
    assert not results[-1].terminated[0]


def test_a_stop_assumed_over_a_touched_target_does_not_raise_the_peak():
    opens = flat_session()
    highs, lows = opens.copy(), opens.copy()
    highs[3], lows[3] = 20_045.0, 19_975.0
    engine, _ = run(make_market(opens, highs=highs, lows=lows), [B, H, H])
    assert engine.cash[0] == pytest.approx(START - 409.5)
    assert engine.peak[0] == START and engine.floor[0] == START - 2_500
    assert engine.mfe[0] == 0.0


def test_target_bar_judges_the_adverse_extreme_before_the_target():
    # ATR 50: stop 100 points, target 200 points away.
    opens = flat_session()
    highs, lows = opens.copy(), opens.copy()
    highs[3], lows[3] = 20_210.0, 19_905.0
    engine, results = run(make_market(opens, highs=highs, lows=lows, atr=50.0), [B, H, H])
    # Low first: 50000 - 2.25 - 95.25 x 20 = 48092.75 > floor 47500 -> no breach; then the target.
    assert not results[-1].terminated[0]
    assert engine.cash[0] == pytest.approx(START + 200 * 20 - 4.5)
    assert engine.peak[0] == pytest.approx(START + 3_995.5) and engine.floor[0] == START + 100
    assert engine.mfe[0] == pytest.approx(200.0) and engine.mae[0] == pytest.approx(95.25)


# ------------------------------------------------------- trade history, size, penalty
def test_recent_win_rate_and_consecutive_losses_over_the_last_ten_trades():
    # One trade per bar: entered at the bar's open 20000 (fill 20000.25), then its range hits the
    # target 20040.25 (a win, high 20045) or the stop 19980.25 (a loss, low 19975).
    outcomes = "WLLWLLLLLLLLLL"
    opens = np.full(len(outcomes) + 3, 20_000.0)
    highs, lows = opens.copy(), opens.copy()
    for bar, outcome in enumerate(outcomes, start=1):
        if outcome == "W":
            highs[bar] = 20_045.0
        else:
            lows[bar] = 19_975.0
    config = EngineConfig(episode_mode="full_session", drawdown_limit=10_000.0)
    engine = TradingEngine(make_market(opens, highs=highs, lows=lows), config, 1)
    engine.reset(starts=np.array([0]))
    assert engine.recent_win_rate()[0] == 0.5 and engine.consecutive_losses[0] == 0  # before any trade
    # After each trade: wins among the last (at most) ten, and the losing streak. Trade 11 drops
    # trade 1's win from the window; trade 14 drops trade 4's.
    expected = [(1, 1, 0), (1, 2, 1), (1, 3, 2), (2, 4, 0), (2, 5, 1), (2, 6, 2), (2, 7, 3), (2, 8, 4),
                (2, 9, 5), (2, 10, 6), (1, 10, 7), (1, 10, 8), (1, 10, 9), (0, 10, 10)]
    for k, (wins, counted, losses) in enumerate(expected):
        engine.step(np.array([B]))
        assert engine.side[0] == 0 and engine.closed_trades[0] == k + 1
        assert engine.recent_win_rate()[0] == pytest.approx(wins / counted)
        assert engine.consecutive_losses[0] == losses
    assert engine.cash[0] == pytest.approx(START + 2 * 795.5 - 12 * 409.5)


def test_several_contracts_scale_pnl_commission_and_drawdown():
    opens = flat_session()
    opens[7] = 20_010.0
    closes = opens.copy()
    closes[1:7] = 20_005.0
    config = EngineConfig(episode_mode="full_session", contracts=3)
    engine = TradingEngine(make_market(opens, closes=closes), config, 1)
    engine.reset(starts=np.array([0]))
    engine.step(np.array([B]))
    # Marked at 20005: 3 x $20 x 4.75 points, less one commission of 3 x $2.25.
    assert engine.equity[0] == pytest.approx(START - 6.75 + 285.0)
    engine, results = run(make_market(opens, closes=closes), [B] + [H] * 6, config)
    # 9.5 points x $20 x 3 contracts - 2 sides x $2.25 x 3 contracts.
    assert engine.cash[0] == pytest.approx(START + 570.0 - 13.5)
    assert engine.commission_paid[0] == pytest.approx(13.5) and engine.fills[0] == 2
    assert sum(r.reward[0] for r in results) == pytest.approx(556.5 * 0.001)


@pytest.mark.parametrize("low, breach", [(19_960.0, False), (19_958.0, True)])
def test_several_contracts_reach_the_drawdown_limit_sooner(low, breach):
    opens = flat_session()
    lows = opens.copy()
    lows[2] = low
    config = EngineConfig(episode_mode="full_session", contracts=3)
    _, results = run(make_market(opens, lows=lows, atr=100.0), [B, H], config)
    # 50000 - 6.75 + 3 x 20 x (19960 - 20000.25) = 47578.25 > 47500; at 19958: 47458.25 <= 47500.
    assert bool(results[-1].terminated[0]) is breach


@pytest.mark.parametrize("penalty", [0.0, 2.5])
def test_breach_penalty_is_subtracted_on_the_breaching_step_only(penalty):
    opens = flat_session()
    lows = opens.copy()
    lows[2] = 19_870.0
    config = EngineConfig(episode_mode="full_session", breach_penalty=penalty, reward_scale=0.002)
    _, results = run(make_market(opens, lows=lows, atr=100.0), [B, H, H], config)
    assert END_REASONS[results[-1].end_reason[0]] == "drawdown_breach" and len(results) == 2
    # Step 1: entry, marked at 20000: -2.25 - 0.25 x 20 = -$7.25. Step 2: liquidated at 19869.75,
    # cash 50000 - 2.25 - 130.5 x 20 - 2.25 = 47385.50: a change of -$2607.25.
    assert results[0].reward[0] == pytest.approx(-7.25 * 0.002)
    assert results[1].reward[0] == pytest.approx(-2_607.25 * 0.002 - penalty)


# ------------------------------------------------------------- the agent's EXIT
X = Action.EXIT


@pytest.mark.parametrize("side, bar3_open, points", [
    (B, 20_012.0, 11.5),  # long from 20000.25, out at 20012 - 0.25 = 20011.75
    (S, 19_990.0, 9.5),  # short from 19999.75, out at 19990 + 0.25 = 19990.25
])
def test_exit_fills_at_the_next_open_with_adverse_slippage_and_one_more_commission(side, bar3_open, points):
    # EXIT at bar 2's close fills at bar 3's open. Bar 3 then spans 19000-21000: through the stop,
    # the target and the drawdown floor alike; an exit at the open sees only its fill.
    opens = flat_session()
    opens[3] = bar3_open
    highs, lows = opens.copy(), opens.copy()
    highs[3], lows[3] = 21_000.0, 19_000.0
    engine, results = run(make_market(opens, highs=highs, lows=lows), [side, H, X])
    net = points * 20 - 2 * 2.25
    assert engine.side[0] == 0 and engine.cash[0] == pytest.approx(START + net)
    assert engine.equity[0] == engine.cash[0]
    assert engine.fills[0] == 2 and engine.commission_paid[0] == pytest.approx(4.5)
    assert engine.step_trade_net[0] == pytest.approx(net) and engine.realized_today[0] == pytest.approx(net)
    assert engine.closed_trades[0] == 1 and engine.recent_win_rate()[0] == 1.0
    assert engine.exit_counts[0].tolist() == [0, 0, 0, 0, 1]
    # Marked at bar 2's close 20000 before: 50000 - 2.25 - 0.25 x 20 = 49992.75.
    assert results[-1].reward[0] == pytest.approx((START + net - 49_992.75) * 0.001)
    assert not results[-1].terminated[0] and END_REASONS[results[-1].end_reason[0]] == "none"
    # The peak is the equity at the fill before the exit's commission; the bar's extremes do not count.
    assert engine.peak[0] == pytest.approx(START - 2.25 + points * 20)
    assert engine.mfe[0] == pytest.approx(points) and engine.mae[0] == pytest.approx(0.25)
    assert engine.action_masks()[0].tolist() == [True, True, True, False, False, False, False]


def test_exit_masks_are_exact_and_follow_the_switch():
    opens = flat_session()
    for exit_action, in_position in ((True, True), (False, False)):
        config = EngineConfig(episode_mode="full_session", exit_action=exit_action)
        engine = TradingEngine(make_market(opens), config, 1)
        engine.reset(starts=np.array([0]))
        assert engine.action_masks()[0].tolist() == [True, True, True, False, False, False, False]  # flat
        engine.step(np.array([B]))
        # In a position at the entry price: no break-even, trailing may be enabled; EXIT by the switch.
        assert engine.action_masks()[0].tolist() == [True, False, False, False, True, False, in_position]
    # Flat, or with the switch off, EXIT is an invalid action: counted and played as HOLD.
    engine = TradingEngine(make_market(opens), EngineConfig(episode_mode="full_session", exit_action=True), 1)
    engine.reset(starts=np.array([0]))
    assert engine.step(np.array([X])).invalid_action[0] and engine.fills[0] == 0
    engine = TradingEngine(make_market(opens), EngineConfig(episode_mode="full_session", exit_action=False), 1)
    engine.reset(starts=np.array([0]))
    engine.step(np.array([B]))
    result = engine.step(np.array([X]))
    assert result.invalid_action[0] and engine.invalid_actions[0] == 1 and engine.side[0] == 1


@pytest.mark.parametrize("bar3_open, net, exits", [
    # Open 19970 is beyond the stop 19980.25: the stop fills at the open minus slippage, 19969.75
    # (the exit's own price), and is counted as a stop.
    (19_970.0, -(20_000.25 - 19_969.75) * 20 - 4.5, [0, 0, 1, 0, 0]),
    # Open 20045 is beyond the target 20040.25: the target fills at that open, without slippage.
    (20_045.0, (20_045.0 - 20_000.25) * 20 - 4.5, [0, 0, 0, 1, 0]),
])
def test_an_exit_into_an_open_beyond_the_stop_or_target_fills_as_the_gap(bar3_open, net, exits):
    opens = flat_session()
    opens[3] = bar3_open
    engine, _ = run(make_market(opens), [B, H, X])
    assert engine.side[0] == 0 and engine.cash[0] == pytest.approx(START + net)
    assert engine.step_trade_net[0] == pytest.approx(net)
    assert engine.exit_counts[0].tolist() == exits


@pytest.mark.parametrize("last, exits", [(X, [0, 0, 0, 0, 1]), (H, [0, 1, 0, 0, 0])])
def test_an_exit_for_the_sessions_last_bar_fills_as_the_deadline_and_counts_as_an_exit(last, exits):
    # Decided at bar 6's close; bar 7 is the session's last: both fill at 20010 - 0.25.
    opens = flat_session()
    opens[7] = 20_010.0
    engine, results = run(make_market(opens), [B, H, H, H, H, H, last])
    assert len(results) == 7 and results[-1].terminated[0]
    assert END_REASONS[results[-1].end_reason[0]] == "session_end"
    assert engine.cash[0] == pytest.approx(START + 9.5 * 20 - 4.5)
    assert engine.exit_counts[0].tolist() == exits
