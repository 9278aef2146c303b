import numpy as np
import pandas as pd
import pytest

from hybrid_trader.market_data.synthetic import REGIMES, SyntheticMarketConfig, generate_synthetic_bars


@pytest.fixture(scope="module")
def year_of_bars() -> pd.DataFrame:
    return generate_synthetic_bars(SyntheticMarketConfig(n_days=250, seed=5))


def _daily(bars: pd.DataFrame) -> pd.DataFrame:
    day = bars["timestamp"].dt.tz_convert("America/New_York").dt.date
    return bars.groupby(day).agg(
        open=("open", "first"), close=("close", "last"), high=("high", "max"),
        low=("low", "min"), regime=("regime", "first"), n=("close", "size"),
    )


def test_same_seed_same_bars_other_seed_other_bars():
    cfg = SyntheticMarketConfig(n_days=3, seed=42)
    first, second = generate_synthetic_bars(cfg), generate_synthetic_bars(cfg)
    pd.testing.assert_frame_equal(first, second)
    other = generate_synthetic_bars(SyntheticMarketConfig(n_days=3, seed=43))
    assert not np.array_equal(first["close"].to_numpy(), other["close"].to_numpy())


def test_bars_are_valid_on_tick_and_at_a_realistic_level(year_of_bars):
    bars = year_of_bars
    assert (bars["high"] >= bars[["open", "close"]].max(axis=1)).all()
    assert (bars["low"] <= bars[["open", "close"]].min(axis=1)).all()
    for col in ("open", "high", "low", "close"):
        assert np.allclose(bars[col] / 0.25, np.round(bars[col] / 0.25))
    assert bars["timestamp"].iloc[0] == pd.Timestamp("2024-01-02 08:30", tz="America/New_York")
    assert 10_000 < bars["close"].median() < 30_000
    daily = _daily(bars)
    range_pct = (daily["high"] - daily["low"]) / daily["open"]
    assert 0.005 < range_pct.median() < 0.04  # NQ's daily range is ~1-2%
    assert bars["timestamp"].is_monotonic_increasing and bars["timestamp"].is_unique
    assert (bars["volume"] > 0).all()


def test_regimes_are_persistent_and_all_visited(year_of_bars):
    regimes = _daily(year_of_bars)["regime"]
    assert set(regimes) == set(REGIMES)
    stay_rate = (regimes.to_numpy()[1:] == regimes.to_numpy()[:-1]).mean()
    assert stay_rate > 0.6  # default persistence 0.8; an i.i.d. draw would stay ~0.25


def test_regimes_differ_measurably(year_of_bars):
    daily = _daily(year_of_bars)
    daily["abs_move"] = (daily["close"] - daily["open"]).abs() / daily["open"]
    daily["range"] = (daily["high"] - daily["low"]) / daily["open"]
    by = daily.groupby("regime")[["abs_move", "range"]].mean()
    for trend in ("trending_up", "trending_down"):
        assert by.loc[trend, "abs_move"] > 2 * by.loc["ranging", "abs_move"]
    for calmer in ("trending_up", "trending_down", "ranging"):
        assert by.loc["volatile", "range"] > by.loc[calmer, "range"]
    signed = (daily["close"] - daily["open"]).groupby(daily["regime"]).mean()
    assert signed["trending_up"] > 0 > signed["trending_down"]


def test_intraday_volatility_is_u_shaped_and_volume_follows_it(year_of_bars):
    bars = year_of_bars
    et = bars["timestamp"].dt.tz_convert("America/New_York")
    minute = et.dt.hour * 60 + et.dt.minute
    abs_ret = np.log(bars["close"] / bars["open"]).abs()
    open_hour = abs_ret[(minute >= 570) & (minute < 600)].mean()      # 09:30-10:00
    midday = abs_ret[(minute >= 750) & (minute < 810)].mean()         # 12:30-13:30
    close_hour = abs_ret[(minute >= 930) & (minute < 960)].mean()     # 15:30-16:00
    assert open_hour > 1.5 * midday and close_hour > 1.2 * midday
    vol_open = bars["volume"][(minute >= 570) & (minute < 600)].mean()
    vol_mid = bars["volume"][(minute >= 750) & (minute < 810)].mean()
    assert vol_open > 1.5 * vol_mid
    assert np.corrcoef(abs_ret, bars["volume"])[0, 1] > 0.2


def test_calendar_early_close_and_holidays_in_generated_data():
    bars = generate_synthetic_bars(SyntheticMarketConfig(n_days=6, start_date="2024-11-25"))
    et = bars["timestamp"].dt.tz_convert("America/New_York")
    per_day = et.groupby(et.dt.date).agg(["size", "max"])
    assert per_day["size"].tolist() == [510, 510, 510, 270, 270, 510]
    assert per_day["max"].iloc[4].strftime("%H:%M") == "12:59"


def test_rejects_bad_configuration():
    with pytest.raises(ValueError, match="n_days"):
        SyntheticMarketConfig(n_days=0)
    with pytest.raises(ValueError, match="regime_persistence"):
        SyntheticMarketConfig(regime_persistence=1.5)
