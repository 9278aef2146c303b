"""The Apex drawdown along one held path (hybrid_trader.evaluation.risk), on hand-computed paths.

Account: $50,000, $2,500 trailing drawdown, the threshold locks at $50,100 (the engine's defaults).
"""

import pytest

from hybrid_trader.env.engine import EngineConfig
from hybrid_trader.evaluation.risk import apex_path, round_trip_cost
from hybrid_trader.markets import CONTRACTS, ContractSpec

FREE = ContractSpec("FREE", multiplier=20.0, tick_size=0.25, commission_per_side=0.0, slippage_ticks=0.0)
ONE = EngineConfig(contracts=1)


def test_the_floor_trails_the_peak_and_touching_it_is_a_breach():
    # Long 20000: bar 0's high 20001 makes the peak $50,020, so the floor is $47,520.
    # Bar 1's low 19876.25 is -123.75 points = -$2,475: equity $47,525, above the floor.
    survives = apex_path(1, 20000.0, [20001.0, 20000.5], [19990.0, 19876.25], 19950.0, FREE, ONE)
    assert not survives.breached and survives.breach_bar == -1
    assert survives.net_pnl == pytest.approx(-1000.0)  # -50 points x $20 at the exit
    # One tick lower, 19876.0 = -$2,480: equity $47,520 touches the floor, liquidated there.
    touched = apex_path(1, 20000.0, [20001.0, 20000.5], [19990.0, 19876.0], 19950.0, FREE, ONE)
    assert touched.breached and touched.breach_bar == 1
    assert touched.net_pnl == pytest.approx(-2480.0)


def test_a_bar_raises_the_peak_with_its_favourable_extreme_before_its_adverse_one_is_judged():
    # One bar: high 20050 (peak $51,000, floor $48,500), low 19924 (-$1,520: $48,480).
    # Judged against the starting floor of $47,500 it would survive.
    outcome = apex_path(1, 20000.0, [20050.0], [19924.0], 20000.0, FREE, ONE)
    assert outcome.breach_bar == 0 and outcome.net_pnl == pytest.approx(-1520.0)


def test_the_floor_stops_trailing_at_the_starting_balance_plus_the_lock_offset():
    # Bar 0's high 20140 makes the peak $52,800: peak - $2,500 = $50,300, locked at $50,100.
    # Bar 1's low 20006 leaves $50,120: above the locked floor (the unlocked $50,300 would breach).
    locked = apex_path(1, 20000.0, [20140.0, 20100.0], [20010.0, 20006.0], 20050.0, FREE, ONE)
    assert not locked.breached and locked.net_pnl == pytest.approx(1000.0)
    # Low 20005 leaves exactly $50,100: the locked floor is touched, the account keeps +$100.
    touched = apex_path(1, 20000.0, [20140.0, 20100.0], [20010.0, 20005.0], 20050.0, FREE, ONE)
    assert touched.breach_bar == 1 and touched.net_pnl == pytest.approx(100.0)


def test_a_short_pays_the_round_trip_from_the_entry_and_is_judged_on_the_highs():
    # 1 NQ: 2 fills x ($2.25 + 1 tick x $5) = $14.50.
    assert round_trip_cost(CONTRACTS["NQ"], 1) == pytest.approx(14.5)
    # Short 20000, low at the entry (the peak stays $50,000), high 20124.25: -$2,485 - $14.50
    # = $47,500.50, above $47,500.
    survives = apex_path(-1, 20000.0, [20124.25], [20000.0], 20100.0, CONTRACTS["NQ"], ONE)
    assert not survives.breached and survives.net_pnl == pytest.approx(-2014.5)
    touched = apex_path(-1, 20000.0, [20124.5], [20000.0], 20100.0, CONTRACTS["NQ"], ONE)
    assert touched.breach_bar == 0 and touched.net_pnl == pytest.approx(-2504.5)


def test_contracts_scale_the_point_value_and_the_costs():
    # 3 MNQ: $6 a point; 2 fills x 3 x ($0.62 + 1 tick x $0.50) = $6.72.
    three = EngineConfig(contracts=3)
    assert round_trip_cost(CONTRACTS["MNQ"], 3) == pytest.approx(6.72)
    # Short 20000, low at the entry: high 20415.50 = -$2,493 - $6.72 = $47,500.28 survives;
    # 20415.75 = -$2,494.50 - $6.72 = $47,498.78 breaches.
    assert not apex_path(-1, 20000.0, [20415.5], [20000.0], 20000.0, CONTRACTS["MNQ"], three).breached
    assert apex_path(-1, 20000.0, [20415.75], [20000.0], 20000.0, CONTRACTS["MNQ"], three).breach_bar == 0
