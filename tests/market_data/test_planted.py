"""The planted-edge markets: the drift is where it is said to be, and the oracle's side is exact."""

import numpy as np
import pandas as pd
import pytest

from hybrid_trader.market_data.synthetic import (
    PlantedEdge, SyntheticMarketConfig, check_planted_labels, generate_synthetic_bars, oracle_directions,
)


def _ny(times: list[str], day: str = "2024-03-05") -> pd.Series:
    return pd.Series(pd.to_datetime([f"{day} {t}" for t in times]).tz_localize("America/New_York").tz_convert("UTC"))


def test_time_of_day_drift_is_added_exactly_where_planted():
    """Same seed with and without the drift: the log prices differ by the cumulated drift."""
    config = dict(n_days=2, seed=5, start_date="2024-03-04")
    flat = generate_synthetic_bars(SyntheticMarketConfig(**config, planted={"kind": "time_of_day",
                                                                           "points_per_minute": 0.0}))
    drifted = generate_synthetic_bars(SyntheticMarketConfig(**config, planted={"kind": "time_of_day",
                                                                              "points_per_minute": 2.0}))
    local = pd.DatetimeIndex(flat["timestamp"]).tz_convert("America/New_York")
    day = local.date == local.date[0]
    gap = np.log(drifted["close"] / flat["close"]).to_numpy()[day] * 20_000.0  # points at the start price
    clock = (local.hour * 60 + local.minute)[day]
    at = {minutes: gap[clock == minutes][0] for minutes in (9 * 60 + 29, 12 * 60 + 44, 15 * 60 + 59)}
    assert at[9 * 60 + 29] == pytest.approx(0.0, abs=0.2)  # no drift before 09:30 (tick rounding only)
    assert at[12 * 60 + 44] == pytest.approx(2.0 * 195, abs=0.5)  # 195 up-minutes 09:30-12:44
    assert at[15 * 60 + 59] == pytest.approx(2.0 * (195 - 195), abs=0.5)  # then 195 down-minutes to 15:59
    assert set(flat["regime"]) == {"planted_time_of_day"}


def test_regime_days_are_up_or_down_and_drift_their_way():
    bars = generate_synthetic_bars(SyntheticMarketConfig(n_days=40, seed=3, planted={"kind": "regime",
                                                                                     "points_per_minute": 1.0}))
    day = pd.DatetimeIndex(bars["timestamp"]).tz_convert("America/New_York").date
    moves = bars.groupby(day).agg(first=("open", "first"), last=("close", "last"), regime=("regime", "first"))
    assert set(moves["regime"]) == {"planted_up", "planted_down"}
    up = (moves["last"] - moves["first"])[moves["regime"] == "planted_up"]
    down = (moves["last"] - moves["first"])[moves["regime"] == "planted_down"]
    assert up.mean() > 300 and down.mean() < -300  # 510 minutes x 1 point, give or take the noise


def test_no_edge_control_keeps_no_drift_and_default_market_is_unchanged():
    control = generate_synthetic_bars(SyntheticMarketConfig(n_days=2, seed=5, planted={"kind": "none"}))
    assert set(control["regime"]) == {"no_edge"}
    default = generate_synthetic_bars(SyntheticMarketConfig(n_days=2, seed=5))
    assert set(default["regime"]) <= {"trending_up", "trending_down", "ranging", "volatile"}


def test_oracle_direction_of_time_of_day_is_the_next_minutes_drift():
    times = ["09:28", "09:29", "12:43", "12:44", "15:58", "15:59", "16:30"]
    bars = pd.DataFrame({"timestamp": _ny(times), "session_date": pd.Timestamp("2024-03-05"),
                         "open": 100.0, "close": 100.0})
    directions = oracle_directions(bars, PlantedEdge("time_of_day", 1.0, "12:45"))
    # A decision at the close of 09:29 fills at 09:30: the first up-minute; 12:44 -> 12:45 turns down.
    assert directions.tolist() == [0, 1, 1, -1, -1, 0, 0]
    early_close = pd.DataFrame({"timestamp": _ny(["12:58", "12:59"], "2024-11-29"),
                                "session_date": pd.Timestamp("2024-11-29"), "open": 1.0, "close": 1.0})
    assert oracle_directions(early_close, PlantedEdge("time_of_day")).tolist() == [-1, 0]  # no bar after 12:59


def test_oracle_direction_of_regime_is_the_sign_of_the_move_since_the_first_open():
    bars = pd.DataFrame({"timestamp": _ny(["08:30", "08:31", "08:32"] * 2, "2024-03-05"),
                         "session_date": [pd.Timestamp("2024-03-05")] * 3 + [pd.Timestamp("2024-03-06")] * 3,
                         "open": [100.0, 101.0, 99.0, 50.0, 49.0, 51.0],
                         "close": [101.0, 99.0, 100.0, 49.0, 51.0, 49.5]})
    # Each session's last bar: 0, nothing fills after it.
    assert oracle_directions(bars, PlantedEdge("regime")).tolist() == [1, -1, 0, -1, 1, 0]
    assert oracle_directions(bars, PlantedEdge("none")).tolist() == [0] * 6


@pytest.mark.parametrize("params, message", [
    ({"kind": "trend"}, "planted.kind"),
    ({"points_per_minute": -1.0}, "points_per_minute"),
    ({"turn": "09:00"}, "planted.turn"),
    ({"turn": "16:00"}, "planted.turn"),
])
def test_bad_planted_edges_are_rejected(params, message):
    with pytest.raises(ValueError, match=message):
        SyntheticMarketConfig(planted=params)


def test_planted_markets_open_every_session_at_the_start_price():
    bars = generate_synthetic_bars(SyntheticMarketConfig(n_days=60, seed=7, overnight_vol=0.004,
                                                         planted={"kind": "time_of_day"}))
    day = pd.DatetimeIndex(bars["timestamp"]).tz_convert("America/New_York").date
    opens = bars.groupby(day)["open"].first()
    assert opens.iloc[0] == 20_000.0
    # The overnight gap only (sd 0.4%), never the accumulated moves of the earlier sessions.
    assert (np.abs(np.log(opens / 20_000.0)) < 6 * 0.004).all()


@pytest.mark.parametrize("edge, labels, message", [
    (PlantedEdge("regime"), ["planted_time_of_day"], "kind is 'regime' but the data holds time_of_day"),
    (PlantedEdge("time_of_day"), ["trending_up", "ranging"], "holds no planted edge"),
    (PlantedEdge("none"), ["planted_up", "planted_down"], "holds regime"),
    (None, ["no_edge"], "planted none edge but evaluation.planted_edge is null"),
])
def test_an_edge_that_the_data_was_not_generated_with_is_refused(edge, labels, message):
    with pytest.raises(ValueError, match=message):
        check_planted_labels(edge, pd.Series(labels))


@pytest.mark.parametrize("edge, labels", [
    (PlantedEdge("regime"), ["planted_up", "planted_down"]),
    (PlantedEdge("time_of_day"), ["planted_time_of_day"]),
    (None, ["trending_up", "volatile"]),
    (None, []),  # a user's file: no hidden labels
])
def test_an_edge_that_matches_the_data_passes(edge, labels):
    check_planted_labels(edge, pd.Series(labels, dtype=str))
