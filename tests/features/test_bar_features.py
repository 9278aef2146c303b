"""Bar features: causal, per session, warm-up marked and never back-filled."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hybrid_trader.features.bar_features import FEATURE_NAMES, PROFILE_INPUTS, compute_bar_features
from hybrid_trader.features.scaling import FeatureScaler
from hybrid_trader.market_data.clean import CleaningConfig, ingest_bars
from hybrid_trader.market_data.synthetic import SyntheticMarketConfig, generate_synthetic_bars


@pytest.fixture(scope="module")
def market():
    raw = generate_synthetic_bars(SyntheticMarketConfig(n_days=4, seed=21, start_date="2024-11-26"))
    result = ingest_bars(raw, CleaningConfig(), source="synthetic")
    return result.bars, result.sessions


@pytest.fixture(scope="module")
def features(market):
    bars, sessions = market
    return compute_bar_features(bars, sessions)


def test_no_look_ahead_truncate_and_compare(market, features):
    """Every feature, and the fitted scaler's output (session_vol_ratio included), of the bars cut at
    a point equals that of all bars."""
    bars, sessions = market
    rng = np.random.default_rng(0)
    cuts = sorted({int(c) for c in rng.integers(1, len(bars), 30)} | {59, 60, 510, 511, 780})
    scaler = FeatureScaler.fit(features)
    columns = list(FEATURE_NAMES) + ["atr14", *PROFILE_INPUTS, "valid_for_trading"]
    full = scaler.transform(features)[columns + ["session_vol_ratio"]]
    assert full["session_vol_ratio"].iloc[1:510].notna().all()
    for cut in cuts:
        partial = compute_bar_features(bars.iloc[:cut], sessions)
        pd.testing.assert_frame_equal(
            partial[columns].reset_index(drop=True), features[columns].iloc[:cut].reset_index(drop=True),
            check_exact=False, rtol=1e-12, atol=0, obj=f"features with bars cut at {cut}",
        )
        pd.testing.assert_frame_equal(
            scaler.transform(partial)[full.columns].reset_index(drop=True), full.iloc[:cut].reset_index(drop=True),
            check_exact=False, rtol=1e-12, atol=0, obj=f"scaled features with bars cut at {cut}",
        )


def test_windows_do_not_cross_sessions(market, features):
    bars, sessions = market
    second_day = bars["session_date"] == bars["session_date"].unique()[1]
    alone = compute_bar_features(bars.loc[second_day], sessions)
    pd.testing.assert_frame_equal(
        alone[list(FEATURE_NAMES)].reset_index(drop=True),
        features.loc[second_day.to_numpy(), list(FEATURE_NAMES)].reset_index(drop=True),
    )
    first_bars = features.groupby("session_date").head(1)
    assert first_bars["log_return"].isna().all()  # never a return across the overnight gap


def test_warm_up_is_marked_invalid_and_not_back_filled(features):
    first_day = features[features["session_date"] == features["session_date"].iloc[0]]
    valid = first_day["valid_for_trading"].to_numpy()
    first_valid = int(np.argmax(valid))
    assert not valid[:first_valid].any() and valid[first_valid:].all()
    assert first_day["timestamp"].iloc[first_valid].strftime("%H:%M") <= "09:45"
    assert first_day["momentum60"].iloc[:60].isna().all()  # undefined, not filled from later bars
    assert first_day["rsi14"].iloc[:14].isna().all() and first_day["rsi14"].iloc[14:].notna().all()
    assert features.loc[features["valid_for_trading"], list(FEATURE_NAMES)].notna().all().all()


def test_time_features_follow_the_session_table(market, features):
    bars, sessions = market
    by_time = features.set_index(features["timestamp"].dt.strftime("%Y-%m-%d %H:%M"))
    row = by_time.loc["2024-11-26 09:30"]
    assert row["minutes_since_open"] == 0.0
    assert row["minutes_to_flat"] == pytest.approx((16 * 60 + 59 - 570) / 390)
    assert "time_of_day" not in features.columns  # minutes_since_open up to a constant
    early = by_time.loc["2024-11-29 12:59"]  # day after Thanksgiving closes early
    assert early["minutes_to_flat"] == 0.0


def test_features_are_not_price_levels(features):
    """Doubling every price (same returns) leaves every feature unchanged."""
    raw = generate_synthetic_bars(SyntheticMarketConfig(n_days=2, seed=4))
    result = ingest_bars(raw, CleaningConfig(), source="a")
    doubled = result.bars.assign(**{c: result.bars[c] * 2 for c in ("open", "high", "low", "close")})
    base = compute_bar_features(result.bars, result.sessions)[list(FEATURE_NAMES)]
    scaled = compute_bar_features(doubled, result.sessions)[list(FEATURE_NAMES)]
    pd.testing.assert_frame_equal(base, scaled, check_exact=False, rtol=1e-9, atol=1e-9)


def test_pattern_flags_on_a_hand_made_session():
    times = pd.date_range("2024-11-26 08:30", periods=30, freq="1min", tz="America/New_York")
    close = np.r_[np.full(25, 100.0), [100.5, 101.0, 103.0, 98.0, 96.0]]
    bars = pd.DataFrame({
        "timestamp": times, "session_date": pd.Timestamp("2024-11-26"),
        "open": close, "high": close + 0.5, "low": close - 0.5, "close": close, "volume": 100.0,
    })
    sessions = pd.DataFrame({"session_date": [pd.Timestamp("2024-11-26")],
                             "rth_open": [pd.Timestamp("2024-11-26 09:30", tz="America/New_York")],
                             "last_bar": [pd.Timestamp("2024-11-26 16:59", tz="America/New_York")]})
    f = compute_bar_features(bars, sessions)
    # Close must exceed the previous 20 bars' highest high: 100.5 and 101.0 only touch it.
    assert f["breakout"].iloc[25:28].tolist() == [0.0, 0.0, 1.0]
    assert f["breakdown"].iloc[28:30].tolist() == [1.0, 1.0]
    assert f["higher_high"].iloc[27] == 1.0 and f["lower_high"].iloc[27] == 0.0
    assert np.isnan(f["breakout"].iloc[19])  # needs 20 earlier bars


def hand_made_session(day: str, closes: list[float], first_open: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A session of ``len(closes)`` bars from 08:30, each opening at the previous close."""
    times = pd.date_range(f"{day} 08:30", periods=len(closes), freq="1min", tz="America/New_York")
    close = np.asarray(closes, dtype=float)
    open_ = np.r_[first_open, close[:-1]]
    bars = pd.DataFrame({"timestamp": times, "session_date": pd.Timestamp(day), "open": open_,
                         "high": np.maximum(open_, close) + 0.25, "low": np.minimum(open_, close) - 0.25,
                         "close": close, "volume": 100.0})
    sessions = pd.DataFrame({"session_date": [pd.Timestamp(day)],
                             "rth_open": [pd.Timestamp(f"{day} 09:30", tz="America/New_York")],
                             "last_bar": [pd.Timestamp(f"{day} 16:59", tz="America/New_York")]})
    return bars, sessions


def test_session_efficiency_and_the_profile_inputs_on_a_hand_made_session():
    # Path from the first open 100: |101-100| + |103-101| + |102-103| + |104-102| = 1, 3, 4, 6.
    f = compute_bar_features(*hand_made_session("2024-11-26", [101.0, 103.0, 102.0, 104.0], first_open=100.0))
    assert f["session_efficiency"].tolist() == pytest.approx([1 / 1, 3 / 3, 2 / 4, 4 / 6], rel=1e-12)
    assert f["session_move_atr"].isna().all()  # ATR-14 needs 14 bars
    assert f["session_minute"].tolist() == [0, 1, 2, 3]
    r = np.log([103 / 101, 102 / 103, 104 / 102])
    assert f["session_sum_r2"].tolist() == pytest.approx([0.0, *np.cumsum(r ** 2)], rel=1e-12)
    # No move since the first open: undefined until the price leaves it.
    flat = compute_bar_features(*hand_made_session("2024-11-26", [100.0, 100.0, 101.0], first_open=100.0))
    assert flat["session_efficiency"].isna().tolist() == [True, True, False]
    assert flat["session_efficiency"].iloc[2] == 1.0
