"""The engine at its edges: exact touches, minimum distances, per-environment state, episode bookkeeping.

Same costs as the golden tests: NQ $20/point, tick 0.25, slippage 1 tick, $2.25 per side; ATR 10
gives a 20-point stop and a 40-point target. A long entered at an open of 20000 fills at 20000.25:
stop 19980.25, target 20040.25. The flags and counters checked here (break-even, trailing, bars in
position, trades today, MAE/MFE, realised P&L) are columns of the agent's observation.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest

from hybrid_trader.env.actions import Action
from hybrid_trader.env.engine import END_REASONS, EngineConfig, TradingEngine
from tests.env.helpers import make_market

H, B, S = Action.HOLD, Action.BUY, Action.SELL
BE, ON, OFF = Action.MOVE_SL_TO_BREAKEVEN, Action.ENABLE_TRAILING_STOP, Action.DISABLE_TRAILING_STOP
X = Action.EXIT
START = 50_000.0
FULL = EngineConfig(episode_mode="full_session", exit_action=True)


@pytest.fixture(autouse=True)
def warnings_are_errors():
    # A price exactly at a level must be judged without dividing by zero.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def started(market, config=FULL, n_envs=1, starts=None) -> TradingEngine:
    engine = TradingEngine(market, config, n_envs)
    engine.reset(starts=np.zeros(n_envs, dtype=np.int64) if starts is None else np.asarray(starts))
    return engine


def play(engine, *actions):
    """One step per entry; an entry is one action for every environment or a list of them."""
    result = None
    for action in actions:
        result = engine.step(np.array(action if isinstance(action, list) else [action] * engine.n_envs))
    return result


def bars(n=8, price=20_000.0, **overrides):
    """``n`` flat bars at ``price``; overrides like ``high={3: 20_045.0}`` set single bars. A bar's
    range spans its open and close, and reaches further where ``high`` or ``low`` says so."""
    columns = {"open": np.full(n, price), "close": np.full(n, price), "high": np.full(n, -np.inf),
               "low": np.full(n, np.inf)}
    for name, values in overrides.items():
        for row, value in values.items():
            columns[name][row] = value
    high = np.maximum.reduce([columns["high"], columns["open"], columns["close"]])
    low = np.minimum.reduce([columns["low"], columns["open"], columns["close"]])
    return columns["open"], high, low, columns["close"]


def market_of(n=8, price=20_000.0, atr=10.0, **overrides):
    opens, highs, lows, closes = bars(n, price, **overrides)
    return make_market(opens, highs=highs, lows=lows, closes=closes, atr=atr)


# -- settings ---------------------------------------------------------------------------------
@pytest.mark.parametrize("settings, message", [
    ({"contracts": 0}, "environment.contracts must be >= 1"),
    ({"starting_balance": 0.0}, "environment.starting_balance must be > 0"),
    ({"threshold_lock_offset": -1.0}, "environment.threshold_lock_offset must be >= 0"),
    ({"breach_penalty": -0.5}, "environment.breach_penalty must be >= 0"),
    ({"max_episode_steps": 0}, "environment.max_episode_steps must be >= 1"),
    ({"episode_mode": "forever"}, "environment.episode_mode must be one of ('random_start', 'full_session')"),
    ({"exit_action": "false"}, "environment.exit_action must be true or false"),
])
def test_each_bad_setting_is_named(settings, message):
    with pytest.raises(ValueError) as error:
        EngineConfig(**settings)
    assert str(error.value) == message


def test_settings_at_their_limits_are_accepted():
    EngineConfig(contracts=1, threshold_lock_offset=0.0, breach_penalty=0.0, max_episode_steps=1)


def test_engine_arguments_are_checked():
    market = market_of()
    with pytest.raises(ValueError) as error:
        TradingEngine(market, FULL, n_envs=0)
    assert str(error.value) == "n_envs must be >= 1"
    assert TradingEngine(market, FULL).t.shape == (1,)  # one environment by default
    closed = make_market(np.full(8, 20_000.0), entry_allowed=np.zeros(8, dtype=bool))
    with pytest.raises(ValueError) as error:
        TradingEngine(closed, EngineConfig(), 1)
    assert str(error.value) == "no bar allows an episode to start (check the entry window and the data)"
    TradingEngine(closed, FULL, 1)  # full sessions start at each session's first valid bar regardless
    with pytest.raises(ValueError) as error:
        TradingEngine(market, FULL, 1).reset(starts=np.array([7]))  # the session's last bar
    assert str(error.value) == "an episode may only start where the observation window is valid"


# -- episode starts ---------------------------------------------------------------------------
def test_random_starts_are_reproducible_and_only_where_entries_are_allowed():
    allowed = np.zeros(40, dtype=bool)
    allowed[5:31] = True
    market = make_market(np.full(40, 20_000.0), entry_allowed=allowed)
    one_allowed = np.zeros(40, dtype=bool)
    one_allowed[12] = True
    single = TradingEngine(make_market(np.full(40, 20_000.0), entry_allowed=one_allowed), EngineConfig(), 2)
    single.reset()
    assert single.t.tolist() == [12, 12]  # one allowed bar is enough
    starts = TradingEngine(market, EngineConfig(), 1, seed=7).sample_starts(200)
    assert starts.shape == (200,) and set(starts.tolist()) <= set(range(5, 31))
    assert len(set(starts.tolist())) > 10
    np.testing.assert_array_equal(TradingEngine(market, EngineConfig(), 1, seed=7).sample_starts(200), starts)


def test_full_session_episodes_take_the_sessions_in_order_and_wrap_around():
    # Sessions of 5, 1, 5 and 5 bars: the one-bar session has no valid start. First valid rows: 0, 6, 11.
    market = make_market(np.full(16, 20_000.0), sessions=[5, 1, 5, 5])
    engine = TradingEngine(market, FULL, 2)
    engine.reset(np.array([1]))  # a fresh engine begins with the first session
    assert engine.t[1] == 0
    engine.reset()  # resetting all starts over from the first session
    assert engine.t.tolist() == [0, 6]
    engine.reset(np.array([1]))
    assert engine.t.tolist() == [0, 11]
    engine.reset(np.array([0]))
    assert engine.t.tolist() == [0, 11]  # wrapped around to the first session


def test_full_session_episodes_never_truncate_on_the_step_budget():
    engine = started(market_of(), EngineConfig(episode_mode="full_session", max_episode_steps=2))
    results = [play(engine, H) for _ in range(7)]
    assert not any(r.truncated[0] for r in results)
    assert [END_REASONS[r.end_reason[0]] for r in results] == ["none"] * 6 + ["session_end"]


def test_a_partial_reset_leaves_the_other_accounts_alone():
    engine = started(market_of(), n_envs=2)
    play(engine, B)
    engine.reset(np.array([1]), starts=np.array([2]))
    assert engine.side.tolist() == [1, 0] and engine.t.tolist() == [1, 2] and engine.steps.tolist() == [1, 0]
    assert engine.cash.tolist() == [START - 2.25, START]


def test_reset_clears_the_flags_of_a_position_left_open_by_truncation():
    # In profit at bar 2's close (20015): break-even, then the trailing stop; the budget of 4 steps ends
    # the episode with the position open.
    market = market_of(12, open={3: 20_015.0, 4: 20_015.0}, close={2: 20_015.0, 3: 20_015.0, 4: 20_015.0})
    engine = started(market, EngineConfig(max_episode_steps=4))
    result = play(engine, B, H, BE, ON)
    assert result.truncated[0] and END_REASONS[result.end_reason[0]] == "max_steps"
    assert engine.side[0] == 1 and engine.at_breakeven[0] and engine.trailing[0]
    engine.reset(np.array([0]), starts=np.array([0]))
    assert engine.side[0] == 0 and not engine.at_breakeven[0] and not engine.trailing[0]
    assert engine.bars_in_position[0] == 0 and engine.mae[0] == 0.0 and engine.mfe[0] == 0.0


# -- masks ------------------------------------------------------------------------------------
def test_break_even_needs_a_profit():
    at_entry = started(market_of(close={1: 20_000.25}))
    play(at_entry, B)
    assert not at_entry.action_masks()[0, BE]  # the close equals the entry: no profit
    half_point = started(market_of(close={1: 20_000.75}))
    play(half_point, B)
    assert half_point.action_masks()[0, BE]


def test_break_even_needs_a_stop_worse_than_the_entry():
    market = market_of(open={2: 20_015.0, 3: 20_015.0}, close={1: 20_015.0, 2: 20_015.0, 3: 20_020.0})
    engine = started(market)
    play(engine, B, BE)
    assert engine.stop[0] == 20_000.25
    play(engine, H)  # further in profit, the stop already at the entry
    assert engine.action_masks()[0].tolist() == [True, False, False, False, True, False, True]


def test_break_even_with_a_stop_half_a_point_under_the_entry():
    # Trailing 20 points under closes of 20019.75: the stop 19999.75 is 0.5 under the entry.
    market = market_of(open={2: 20_019.75}, close={1: 20_019.75, 2: 20_019.75})
    engine = started(market)
    play(engine, B, ON)
    assert engine.stop[0] == 19_999.75
    assert engine.action_masks()[0].tolist() == [True, False, False, True, False, True, True]


# -- levels and exact touches -----------------------------------------------------------------
def test_stop_and_target_are_at_least_one_tick_away():
    # ATR 0.05: a stop of 0.1 points rounds to no tick and is raised to one; the target is 2 ticks.
    # (Bar 1's low then takes the stop at once; the levels stay readable.)
    engine = started(market_of(atr=0.05))
    play(engine, B)
    assert (engine.entry[0], engine.stop[0], engine.target[0]) == (20_000.25, 20_000.0, 20_000.75)


def test_the_entry_bar_is_never_a_gap_even_with_a_one_tick_stop():
    # ATR 0.05: the stop (20000.00) is the entry bar's own open. That bar is played as a range, not as
    # an exit at its open: first its high 20000.50 (raising the peak), then its low takes the stop.
    engine = started(market_of(atr=0.05, high={1: 20_000.5}))
    play(engine, B)
    assert engine.side[0] == 0 and engine.exit_counts[0].tolist() == [0, 0, 1, 0, 0]
    assert engine.cash[0] == pytest.approx(START - 0.5 * 20 - 4.5)  # out at 19999.75
    assert engine.peak[0] == pytest.approx(START - 2.25 + 0.25 * 20) and engine.mfe[0] == pytest.approx(0.25)


def test_enabling_the_trailing_stop_moves_it_at_once_with_that_close():
    # Bar 1 closes at 20030: enabling there puts the stop at 20010, which bar 2's low 20005 takes,
    # though bar 2 closes lower (20020).
    engine = started(market_of(open={2: 20_030.0}, close={1: 20_030.0, 2: 20_020.0}, low={2: 20_005.0}))
    play(engine, B, ON)
    assert engine.side[0] == 0 and engine.exit_counts[0].tolist() == [0, 0, 1, 0, 0]
    assert engine.cash[0] == pytest.approx(START + (20_009.75 - 20_000.25) * 20 - 4.5)


@pytest.mark.parametrize("bar3, cash, exits", [
    # Opens at or beyond the target fill there at the open, before the bar's fall through the stop.
    ({"open": {3: 20_040.25}, "low": {3: 19_900.0}}, START + 40.0 * 20 - 4.5, [0, 0, 0, 1, 0]),
    ({"open": {3: 20_040.75}, "low": {3: 19_900.0}}, START + 40.5 * 20 - 4.5, [0, 0, 0, 1, 0]),
    # A range reaching the target exactly, or half a point beyond, fills at the target.
    ({"high": {3: 20_040.25}}, START + 40.0 * 20 - 4.5, [0, 0, 0, 1, 0]),
    ({"high": {3: 20_040.75}}, START + 40.0 * 20 - 4.5, [0, 0, 0, 1, 0]),
    # A low exactly at the stop fills at the stop minus slippage; half a point above, nothing happens.
    ({"low": {3: 19_980.25}}, START - 20.25 * 20 - 4.5, [0, 0, 1, 0, 0]),
    ({"low": {3: 19_980.75}}, START - 2.25, [0, 0, 0, 0, 0]),
    # An open half a point above the stop is not a gap through it.
    ({"open": {3: 19_980.75}, "high": {3: 19_990.0}}, START - 2.25, [0, 0, 0, 0, 0]),
])
def test_prices_at_and_just_beyond_the_levels(bar3, cash, exits):
    engine = started(market_of(**bar3))
    play(engine, B, H, H)
    assert engine.cash[0] == pytest.approx(cash)
    assert engine.exit_counts[0].tolist() == exits


def test_an_open_exactly_at_the_stop_exits_there_and_sees_nothing_of_the_bar():
    # The bar then rallies to 20035, short of the target: a gap exit never raises the peak.
    engine = started(market_of(open={3: 19_980.25}, high={3: 20_035.0}))
    play(engine, B, H, H)
    assert engine.cash[0] == pytest.approx(START - 20.25 * 20 - 4.5)
    assert engine.peak[0] == START and engine.mfe[0] == 0.0 and engine.mae[0] == pytest.approx(20.25)


def test_a_gap_through_the_stop_sees_only_its_fill_even_if_the_bar_rallies():
    engine = started(market_of(open={3: 19_970.0}, high={3: 20_035.0}))
    play(engine, B, H, H)
    # Exit 19969.75: 30.5 points lost. The rally to 20035 does not count.
    assert engine.cash[0] == pytest.approx(START - 30.5 * 20 - 4.5)
    assert engine.peak[0] == START and engine.mfe[0] == 0.0 and engine.mae[0] == pytest.approx(30.5)


def test_the_deadline_exit_sees_only_its_fill_not_the_last_bars_range():
    # The last bar opens at 20010, then spikes to 20100 and crashes to 19000 (a breach if it counted).
    engine = started(market_of(open={7: 20_010.0}, high={7: 20_100.0}, low={7: 19_000.0}))
    result = play(engine, B, H, H, H, H, H, H)
    assert END_REASONS[result.end_reason[0]] == "session_end"
    # Fill 20009.75: 9.5 points. The peak is the equity at that fill before its exit commission.
    assert engine.cash[0] == pytest.approx(START + 190.0 - 4.5)
    assert engine.peak[0] == pytest.approx(START - 2.25 + 190.0)
    assert engine.mae[0] == pytest.approx(0.25) and engine.mfe[0] == pytest.approx(9.5)


def test_an_open_beyond_the_target_sees_no_adverse_extreme():
    engine = started(market_of(open={3: 20_045.0}, low={3: 19_000.0}))
    play(engine, B, H, H)
    assert engine.mae[0] == pytest.approx(0.25)  # the entry's slippage, not the bar's low
    assert engine.exit_counts[0].tolist() == [0, 0, 0, 1, 0]


def test_a_breach_at_the_stop_is_liquidated_at_the_stop_fill_without_more_slippage():
    # ATR 100: stop 19800.25. Bar 2 falls to 19700: the stop fills at 19800.00, where the equity
    # 50000 - 2.25 - 200.25 x 20 = 45992.75 is under the floor 47500: a breach, at that fill.
    engine = started(market_of(atr=100.0, low={2: 19_700.0}))
    result = play(engine, B, H)
    assert END_REASONS[result.end_reason[0]] == "drawdown_breach"
    assert engine.cash[0] == pytest.approx(START - 4.5 - 200.25 * 20)
    assert engine.exit_counts[0].tolist() == [1, 0, 0, 0, 0]


def test_an_exit_whose_fill_is_under_the_floor_is_a_breach_liquidated_at_that_fill():
    # ATR 100: stop 19800.25. EXIT for bar 3, which opens at 19870: out at 19869.75, where the equity
    # 50000 - 2.25 - 130.5 x 20 = 47387.75 is under the floor 47500: a breach, at the fill (no more
    # slippage), though the bar then recovers to 20100.
    engine = started(market_of(atr=100.0, open={3: 19_870.0}, high={3: 20_100.0}))
    result = play(engine, B, H, X)
    assert END_REASONS[result.end_reason[0]] == "drawdown_breach" and result.terminated[0]
    assert engine.cash[0] == pytest.approx(START - 4.5 - 130.5 * 20)
    assert engine.exit_counts[0].tolist() == [1, 0, 0, 0, 0] and engine.peak[0] == START


# -- per-environment state --------------------------------------------------------------------
def _in_profit_market(**overrides):
    # Bar 1 closes at 20015 (in profit for a long from 20000.25); bars 2-4 stay there.
    return market_of(open={2: 20_015.0, 3: 20_015.0, 4: 20_015.0},
                     close={1: 20_015.0, 2: 20_015.0, 3: 20_015.0, 4: 20_015.0}, **overrides)


def _profit_then_target_market():
    return _in_profit_market(high={4: 20_045.0})  # bar 4 reaches the target 20040.25


def test_a_closed_trade_updates_only_its_own_account():
    engine = started(_profit_then_target_market(), n_envs=2)
    assert np.isnan(engine.step_trade_net).all()
    play(engine, [B, H], [BE, H], [ON, H])
    assert engine.at_breakeven.tolist() == [True, False] and engine.trailing.tolist() == [True, False]
    assert engine.bars_in_position.tolist() == [3, 0]
    assert engine.unrealized().tolist() == [pytest.approx(14.75 * 20), 0.0]
    result = play(engine, H)  # env 0's target: 40 points
    assert END_REASONS[result.end_reason[0]] == "none" and END_REASONS[result.end_reason[1]] == "none"
    np.testing.assert_array_equal(engine.step_trade_net, [795.5, np.nan])
    assert engine.cash.tolist() == [START + 795.5, START]
    assert engine.realized_today.tolist() == [795.5, 0.0]
    assert engine.fills.tolist() == [2, 0] and engine.closed_trades.tolist() == [1, 0]
    assert engine.exit_counts.tolist() == [[0, 0, 0, 1, 0], [0, 0, 0, 0, 0]]
    assert engine.recent_win_rate().tolist() == [1.0, 0.5] and engine.consecutive_losses.tolist() == [0, 0]
    assert engine.at_breakeven.tolist() == [False, False] and engine.trailing.tolist() == [False, False]
    assert engine.mfe.tolist() == [40.0, 0.0] and engine.mae.tolist() == [0.25, 0.0]
    assert engine.peak.tolist() == [START + 795.5, START] and engine.bars_in_position.tolist() == [0, 0]
    play(engine, H)
    assert np.isnan(engine.step_trade_net).all()  # only the step that closed it reports it


def test_an_exit_closes_only_its_own_account_and_a_new_trade_may_follow():
    # Both long from 20000.25; env 0 exits into bar 3's open 20010 (out at 20009.75: 9.5 points), then
    # buys again at bar 3's close (in at bar 4's open 20000.25), while env 1 holds throughout.
    engine = started(market_of(open={3: 20_010.0}, close={3: 20_010.0}), n_envs=2)
    play(engine, B, H, [X, H])
    np.testing.assert_array_equal(engine.step_trade_net, [9.5 * 20 - 4.5, np.nan])
    assert engine.side.tolist() == [0, 1] and engine.exit_counts[:, 4].tolist() == [1, 0]
    assert engine.action_masks()[:, X].tolist() == [False, True] and engine.action_masks()[0, B]
    assert engine.bars_in_position.tolist() == [0, 3]
    play(engine, [B, H])
    assert engine.side.tolist() == [1, 1] and engine.trades_today.tolist() == [2, 1]
    assert engine.cash.tolist() == [pytest.approx(START + 185.5 - 2.25), START - 2.25]


def test_flags_change_only_for_the_environment_that_acts():
    engine = started(_in_profit_market(), n_envs=2)
    play(engine, [B, B], [BE, H])
    assert engine.at_breakeven.tolist() == [True, False]
    play(engine, [ON, BE])
    assert engine.at_breakeven.tolist() == [True, True] and engine.trailing.tolist() == [True, False]
    play(engine, [H, ON])
    assert engine.trailing.tolist() == [True, True]


def test_disabling_the_trailing_stop_leaves_the_other_environments_trailing():
    engine = started(market_of(), n_envs=3)
    play(engine, [B, B, H], [ON, ON, H], [OFF, H, H])
    assert engine.trailing.tolist() == [False, True, False]


def test_an_entry_leaves_the_other_environments_flags_alone():
    engine = started(_in_profit_market(), n_envs=2)
    play(engine, [B, H], [BE, H], [ON, B])
    assert engine.at_breakeven.tolist() == [True, False] and engine.trailing.tolist() == [True, False]


def test_invalid_actions_accumulate_and_hold_only_their_own_environment():
    engine = started(market_of(), n_envs=2)
    result = play(engine, [B, H], [B, B])  # env 0 is already long: its BUY is invalid
    assert result.invalid_action.tolist() == [True, False]
    play(engine, [S, H])
    assert engine.invalid_actions.tolist() == [2, 0]
    assert engine.side.tolist() == [1, 1] and engine.fills.tolist() == [1, 1]


def test_unrealized_pnl_by_side():
    engine = started(market_of(close={1: 20_005.0}), n_envs=3)
    assert engine.unrealized().tolist() == [0.0, 0.0, 0.0]
    play(engine, [B, S, H])
    # Long from 20000.25 and short from 19999.75, both marked at 20005.
    assert engine.unrealized().tolist() == [pytest.approx(95.0), pytest.approx(-105.0), 0.0]


# -- trade bookkeeping ------------------------------------------------------------------------
def test_a_new_trade_starts_its_own_excursions_and_bar_count():
    # Trade 1: bar 1 reaches 20010, bar 2 stops it out (19980.00). Trade 2 enters on a flat bar 3.
    engine = started(market_of(high={1: 20_010.0}, low={2: 19_975.0}))
    play(engine, B)
    assert engine.bars_in_position[0] == 1 and engine.mfe[0] == pytest.approx(9.75)
    play(engine, H)
    assert engine.side[0] == 0 and engine.bars_in_position[0] == 0 and engine.mae[0] == pytest.approx(20.25)
    play(engine, B)
    assert engine.bars_in_position[0] == 1 and engine.trades_today[0] == 2
    assert engine.mae[0] == pytest.approx(0.25) and engine.mfe[0] == 0.0
    play(engine, H)
    assert engine.bars_in_position[0] == 2


def test_exits_and_realised_pnl_add_up_over_the_episode():
    # A target (+795.50), two stops in their entry bars (-409.50 each), then the deadline at the last
    # bar's open 20000 - 0.25 (-0.5 points: -14.50).
    engine = started(market_of(12, high={2: 20_045.0}, low={3: 19_975.0, 4: 19_975.0}))
    result = play(engine, B, H, B, B, B, H, H, H, H, H, H)
    assert END_REASONS[result.end_reason[0]] == "session_end"
    assert engine.exit_counts[0].tolist() == [0, 1, 2, 1, 0]
    assert engine.realized_today[0] == pytest.approx(795.5 - 2 * 409.5 - 14.5)
    assert engine.trades_today[0] == 4 and engine.closed_trades[0] == 4
    assert engine.consecutive_losses[0] == 3 and engine.recent_win_rate()[0] == 0.25


def test_a_trade_netting_fifty_cents_is_a_win():
    # Exit at the last bar's open 20000.75 - 0.25 = 20000.50: one tick ($5) less $4.50 commission.
    engine = started(market_of(open={7: 20_000.75}))
    play(engine, B, H, H, H, H, H)
    assert engine.side[0] == 1
    play(engine, H)
    assert engine.step_trade_net[0] == pytest.approx(0.5)
    assert engine.recent_win_rate()[0] == 1.0 and engine.consecutive_losses[0] == 0


# -- how episodes end -------------------------------------------------------------------------
def test_one_environment_reaches_its_step_budget_while_the_other_runs_on():
    engine = started(market_of(20), EngineConfig(max_episode_steps=3), n_envs=2, starts=[0, 0])
    result = play(engine, H)
    assert END_REASONS[result.end_reason[0]] == "none"
    engine.reset(np.array([1]), starts=np.array([1]))
    result = play(engine, H, H)
    assert result.truncated.tolist() == [True, False]
    assert [END_REASONS[reason] for reason in result.end_reason] == ["max_steps", "none"]


def test_data_that_stops_mid_session_truncates_with_data_end():
    # A session cut short by the end of the data: its last bar is past the data's last row.
    complete = market_of(10)
    cut = dataclasses.replace(complete, session_last=np.full(10, 10))
    engine = started(cut, EngineConfig(max_episode_steps=50), starts=[7])
    assert not play(engine, H).truncated[0]
    result = play(engine, H)
    assert result.truncated[0] and not result.terminated[0]
    assert END_REASONS[result.end_reason[0]] == "data_end"
