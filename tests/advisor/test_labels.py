"""Outcome and oracle labels of flat-account prompts, their soft targets and the example table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hybrid_trader.advisor.labels import (
    LABEL_ACTIONS, LABEL_WORDS, advisor_examples, bar_labels, forward_moves, round_trip_cost_points, soft_targets,
)
from hybrid_trader.advisor.prompts import PromptBuilder, PromptTemplate
from hybrid_trader.env.actions import Action
from hybrid_trader.features.registry import RTH_MINUTES
from hybrid_trader.market_data.synthetic import PlantedEdge, oracle_directions
from hybrid_trader.markets import CONTRACTS

HOLD, BUY, SELL = 0, 1, 2
# Two sessions, New York clock: Friday 2024-03-08 (EST) 12:43-12:46 and Monday 2024-03-11 (EDT,
# after the DST change) 09:28-09:30. Each session's last bar ends its day.
CLOCKS = [("2024-03-08", "12:43"), ("2024-03-08", "12:44"), ("2024-03-08", "12:45"), ("2024-03-08", "12:46"),
          ("2024-03-11", "09:28"), ("2024-03-11", "09:29"), ("2024-03-11", "09:30")]
OPENS = [100.0, 101.0, 103.0, 102.0, 200.0, 198.0, 199.0]
CLOSES = [101.0, 103.0, 102.0, 106.0, 198.0, 199.0, 195.0]
# Horizon 2: close[min(t + 2, session's last)] - open[t + 1]:
#   12:43: close 12:45 - open 12:44 = 102 - 101 = 1      12:44: close 12:46 - open 12:45 = 106 - 103 = 3
#   12:45: close 12:46 (the session ends) - open 12:46 = 106 - 102 = 4
#   09:28: close 09:30 - open 09:29 = 195 - 198 = -3     09:29: close 09:30 (the end) - open 09:30 = 195 - 199 = -4
MOVES_H2 = [1.0, 3.0, 4.0, np.nan, -3.0, -4.0, np.nan]


def bars_frame() -> pd.DataFrame:
    stamps = [pd.Timestamp(f"{day} {clock}", tz="America/New_York") for day, clock in CLOCKS]
    return pd.DataFrame({
        "timestamp": pd.DatetimeIndex(stamps).tz_convert("UTC"),
        "session_date": pd.to_datetime([day for day, _ in CLOCKS]),
        "open": OPENS, "high": np.maximum(OPENS, CLOSES), "low": np.minimum(OPENS, CLOSES), "close": CLOSES,
    })


def test_forward_moves_stop_at_the_session_end_and_leave_its_last_bar_without_a_move():
    bars = bars_frame()
    np.testing.assert_array_equal(forward_moves(bars, 2), MOVES_H2)
    # One bar: the next bar's own move, close - open.
    np.testing.assert_array_equal(forward_moves(bars, 1), [2.0, -1.0, 4.0, np.nan, 1.0, -4.0, np.nan])
    # A horizon past both sessions' ends: every move runs from the next open to the session's last close.
    np.testing.assert_array_equal(forward_moves(bars, 100), [5.0, 3.0, 4.0, np.nan, -3.0, -4.0, np.nan])
    with pytest.raises(ValueError, match="at least one bar"):
        forward_moves(bars, 0)


def test_outcome_labels_compare_the_move_with_the_round_trip_cost():
    bars = bars_frame()
    labels, move = bar_labels(bars, 2, cost_points=1.12)
    np.testing.assert_array_equal(move, MOVES_H2)
    assert labels.tolist() == [HOLD, BUY, BUY, -1, SELL, SELL, -1] and labels.dtype == np.int64
    # The cost is a strict bound: a move of exactly the cost does not pay it.
    assert bar_labels(bars, 2, cost_points=1.0)[0].tolist() == [HOLD, BUY, BUY, -1, SELL, SELL, -1]
    assert bar_labels(bars, 2, cost_points=0.5)[0].tolist() == [BUY, BUY, BUY, -1, SELL, SELL, -1]
    assert bar_labels(bars, 2, cost_points=3.5)[0].tolist() == [HOLD, HOLD, BUY, -1, HOLD, SELL, -1]


def test_oracle_labels_follow_the_planted_clock_not_the_realised_move():
    bars = bars_frame()
    edge = PlantedEdge(kind="time_of_day", turn="12:45")
    # The side over the next minute: 12:44 is before the turn (+1), 12:45 and 12:46 after it (-1);
    # 09:29 is before the cash open (0), 09:30 inside it (+1); each session's last bar 0.
    assert oracle_directions(bars, edge).tolist() == [1, -1, -1, 0, 0, 1, 0]
    labels, move = bar_labels(bars, 2, cost_points=1.12, edge=edge)
    assert labels.tolist() == [BUY, SELL, SELL, -1, HOLD, BUY, -1]
    np.testing.assert_array_equal(move, MOVES_H2)  # the realised move is still reported (12:44: SELL on +3)
    control = bar_labels(bars, 2, cost_points=1.12, edge=PlantedEdge(kind="none"))[0]
    assert control.tolist() == [HOLD, HOLD, HOLD, -1, HOLD, HOLD, -1]


def test_round_trip_cost_of_micro_and_e_mini_nasdaq_in_points():
    # MNQ: 2 x ($0.62 / $2 per point + 1 tick of 0.25) = 2 x (0.31 + 0.25) = 1.12 points.
    assert round_trip_cost_points(CONTRACTS["MNQ"]) == pytest.approx(1.12)
    # NQ: 2 x ($2.25 / $20 per point + 0.25) = 2 x (0.1125 + 0.25) = 0.725 points.
    assert round_trip_cost_points(CONTRACTS["NQ"]) == pytest.approx(0.725)


def test_label_indices_name_the_flat_answers():
    assert LABEL_ACTIONS == (int(Action.HOLD), int(Action.BUY), int(Action.SELL))
    assert LABEL_WORDS == ("HOLD", "BUY", "SELL")


def test_soft_targets_share_each_prompts_outcomes_most_frequent_first():
    examples = pd.DataFrame({
        "prompt": ["b", "a", "a", "c", "d", "a", "c", "a"],
        "label": [SELL, BUY, BUY, HOLD, BUY, SELL, HOLD, HOLD],
    })
    targets = soft_targets(examples)
    # a: BUY, BUY, SELL, HOLD; c: HOLD, HOLD; b and d once each, b first seen first.
    assert targets["prompt"].tolist() == ["a", "c", "b", "d"]
    assert targets["count"].tolist() == [4, 2, 1, 1]
    np.testing.assert_allclose(targets[["p_hold", "p_buy", "p_sell"]].to_numpy(),
                               [[0.25, 0.5, 0.25], [1, 0, 0], [0, 0, 1], [0, 1, 0]])


# -- the example table ------------------------------------------------------------------------
# A template of the fields alone, so the rows read without the model's chat markup.
BUILDER = PromptBuilder(PromptTemplate("t", "", "{time}|{move}|{session_vol}|{strength}|{position}|{buffer}"))


def advisor_frame(bars: pd.DataFrame) -> pd.DataFrame:
    """The advisor's raw inputs of ``bars``: 12:44 is not valid for trading."""
    local = pd.DatetimeIndex(bars["timestamp"]).tz_convert("America/New_York")
    minutes = local.hour * 60 + local.minute - (9 * 60 + 30)
    n = len(bars)
    return pd.DataFrame({
        "timestamp": bars["timestamp"], "session_date": bars["session_date"],
        "valid_for_trading": [True, False, True, True, True, True, True],
        "sma50_slope": 0.0, "adx14": [30.0, 30.0, 20.0, 30.0, 30.0, 30.0, 30.0], "rsi14": 50.0, "momentum30": 0.0,
        "vwap_distance": 0.0, "volatility_percentile": 0.5, "atr14": 10.0,
        # As the bar features compute it: seconds / 60 / 390.
        "minutes_since_open": np.asarray(minutes * 60.0, dtype=float) / 60.0 / RTH_MINUTES,
        "session_move_atr": [6.0, 6.0, -5.0, 6.0, 0.0, 0.0, 0.0],
        "session_vol_ratio": [1.0, 1.0, 1.3, 1.0, np.nan, np.nan, np.nan],
        "minutes_to_flat": np.linspace(1.0, 0.5, n),
    })


DAY_SPLITS = pd.DataFrame({"session_date": pd.to_datetime(["2024-03-08", "2024-03-11"]),
                           "split": ["train", "validation"]})


def examples_of(bars, frame, day_splits=DAY_SPLITS, start="09:29", end="13:00", edge=None):
    return advisor_examples(bars, frame, day_splits, BUILDER, horizon_bars=2, cost_points=1.12, drawdown_limit=2500.0,
                            entry_window={"start": start, "end": end}, edge=edge)


def test_examples_are_the_flat_tradable_labelled_bars_inside_the_entry_window():
    bars = bars_frame()
    out = examples_of(bars, advisor_frame(bars))
    # 12:44 is not tradable, 09:28 is before the window, 12:46 and 09:30 end their sessions (no label).
    assert out["session_date"].tolist() == list(pd.to_datetime(["2024-03-08", "2024-03-08", "2024-03-11"]))
    assert out["split"].tolist() == ["train", "train", "validation"]
    assert out["prompt"].tolist() == ["12:30|up 5-15 ATR|usual|strong|Flat|2500",
                                      "12:30|down 5-15 ATR|above usual|weak|Flat|2500",
                                      "09:00|up 0-5 ATR|unknown|strong|Flat|2500"]
    assert out["time"].tolist() == ["12:30", "12:30", "09:00"]
    assert out["move"].tolist() == ["up 5-15 ATR", "down 5-15 ATR", "up 0-5 ATR"]
    assert out["session_vol"].tolist() == ["usual", "above usual", "unknown"]
    assert out["strength"].tolist() == ["strong", "weak", "strong"]
    assert out["label"].tolist() == [HOLD, BUY, SELL]
    np.testing.assert_array_equal(out["forward_points"], [1.0, 4.0, -4.0])
    oracle = examples_of(bars, advisor_frame(bars), edge=PlantedEdge(kind="time_of_day", turn="12:45"))
    assert oracle["label"].tolist() == [BUY, SELL, BUY]


def test_the_entry_window_holds_its_start_and_not_its_end():
    bars = bars_frame()
    frame = advisor_frame(bars)
    # The window ends at 12:45: the 12:45 bar is out, 12:43 and 09:29 stay.
    assert examples_of(bars, frame, end="12:45")["time"].tolist() == ["12:30", "09:00"]
    # A window from 12:43 on: 09:29 is out, 12:43 (its first minute) is in.
    assert examples_of(bars, frame, start="12:43")["forward_points"].tolist() == [1.0, 4.0]


def test_examples_refuse_frames_of_other_bars_and_days_the_split_does_not_know():
    bars = bars_frame()
    frame = advisor_frame(bars)
    with pytest.raises(ValueError, match="same bars in the same order"):
        examples_of(bars, frame.iloc[:-1])
    with pytest.raises(ValueError, match="same bars in the same order"):
        examples_of(bars, frame.iloc[[1, 0, 2, 3, 4, 5, 6]].reset_index(drop=True))
    with pytest.raises(ValueError, match="split does not know"):
        examples_of(bars, frame, day_splits=DAY_SPLITS.iloc[:1])


def test_a_window_starting_off_the_half_hour_holds_its_first_bar():
    """09:55 is 25 minutes after the open; 25 * 60 / 60 / 390 * 390 is 24.999999999999996 in
    floating point, which must not move the 09:55 bar out of a window that starts at 09:55."""
    stamps = pd.date_range("2024-03-11 09:53", periods=5, freq="min", tz="America/New_York")
    bars = pd.DataFrame({"timestamp": stamps.tz_convert("UTC"), "session_date": pd.Timestamp("2024-03-11"),
                         "open": 100.0, "high": 100.0, "low": 100.0, "close": 100.0})
    frame = pd.DataFrame({
        "timestamp": bars["timestamp"], "session_date": bars["session_date"], "valid_for_trading": True,
        "sma50_slope": 0.0, "adx14": 30.0, "rsi14": 50.0, "momentum30": 0.0, "vwap_distance": 0.0,
        "volatility_percentile": 0.5, "atr14": 10.0, "minutes_since_open": np.arange(23, 28) * 60.0 / 60.0 / RTH_MINUTES,
        "session_move_atr": 1.0, "session_vol_ratio": 1.0, "minutes_to_flat": 0.9})
    out = examples_of(bars, frame, day_splits=DAY_SPLITS, start="09:55")
    # 09:53 and 09:54 are before the window, 09:57 ends the session: 09:55 and 09:56 remain.
    assert len(out) == 2 and out["forward_points"].tolist() == [0.0, 0.0]
