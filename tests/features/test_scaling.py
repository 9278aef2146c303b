import numpy as np
import pandas as pd
import pytest

from hybrid_trader.features.bar_features import compute_bar_features
from hybrid_trader.features.scaling import SCALED_FEATURES, FeatureScaler, fit_vol_profile, session_vol_ratio
from hybrid_trader.pipelines.data_split.nodes import fit_feature_scaler, scale_features
from tests.features.test_bar_features import hand_made_session


def _features(n_days: int = 5, rows: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    days = np.repeat(pd.date_range("2024-01-02", periods=n_days, freq="D"), rows)
    frame = pd.DataFrame(rng.normal(size=(len(days), len(SCALED_FEATURES))), columns=list(SCALED_FEATURES))
    frame.insert(0, "session_date", days)
    frame["breakout"] = rng.integers(0, 2, len(days)).astype(float)
    # The volatility profile's inputs, as compute_bar_features gives them.
    frame["session_minute"] = np.tile(np.arange(rows), n_days)
    frame["log_return"] = frame["log_return"].where(frame["session_minute"] > 0) / 100.0
    frame["session_sum_r2"] = (frame["log_return"] ** 2).fillna(0.0).groupby(frame["session_date"]).cumsum()
    frame["valid_for_trading"] = True
    return frame


def _refit(frame: pd.DataFrame) -> pd.DataFrame:
    """session_sum_r2 recomputed from the frame's returns (after a test changed them)."""
    return frame.assign(session_sum_r2=(frame["log_return"] ** 2).fillna(0.0).groupby(frame["session_date"]).cumsum())


def test_scaler_is_median_iqr_clipped_and_leaves_flags_alone():
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0, 5.0, 100.0], "flag": [0.0, 1.0, 0.0, 1.0, 1.0, 0.0]})
    scaler = FeatureScaler.fit(frame, columns=("a",), clip=3.0)
    median, iqr = np.median(frame["a"]), np.subtract(*np.percentile(frame["a"], [75, 25]))
    assert scaler.center["a"] == median and scaler.scale["a"] == pytest.approx(iqr)
    out = scaler.transform(frame)
    assert out["a"].iloc[0] == pytest.approx((1.0 - median) / iqr)
    assert out["a"].iloc[-1] == 3.0  # clipped
    assert out["flag"].equals(frame["flag"])
    assert FeatureScaler.from_dict(scaler.to_dict()) == scaler


def test_scaler_sees_no_validation_or_test_row():
    features = _features()
    day = features["session_date"]
    splits = pd.DataFrame({"session_date": day.unique(),
                           "split": ["train", "train", "validation", "train", "test"]})
    poisoned = features.copy()
    held_out = day.isin(splits.loc[splits["split"] != "train", "session_date"])
    poisoned.loc[held_out, list(SCALED_FEATURES)] = 1e9  # would move any statistic that saw them
    poisoned.loc[held_out & (features["session_minute"] > 0), "log_return"] = 1.0  # and the volatility profile
    poisoned = _refit(poisoned)
    fitted = fit_feature_scaler(poisoned, splits, {"clip": 5.0})
    reference = FeatureScaler.fit(features.loc[~held_out], clip=5.0)
    assert fitted["center"] == reference.center and fitted["scale"] == reference.scale
    assert fitted["vol_profile"] == list(reference.vol_profile) and len(reference.vol_profile) == 40
    assert fitted["fitted_on"] == {"rows": 120, "train_days": 3}
    # A train day's return does move the profile.
    moved = _refit(poisoned.assign(log_return=np.where(~held_out & (features["session_minute"] == 7), 1.0,
                                                       poisoned["log_return"])))
    assert fit_feature_scaler(moved, splits, {"clip": 5.0})["vol_profile"][7] == 1.0

    scaled = scale_features(poisoned, splits, fitted)
    later = held_out & (features["session_minute"] > 0)  # a session's first bar has no session_vol_ratio
    assert (scaled.loc[later, list(SCALED_FEATURES)] == 5.0).all().all()  # applied to every split
    assert scaled["split"].tolist() == list(np.repeat(splits["split"], 40))


def test_scaler_ignores_warm_up_rows_and_rejects_bad_files():
    features = _features()
    warm_up = features.index % 40 < 15  # each day's first 15 of 40 bars: too many for a median to shrug off
    features.loc[warm_up, "valid_for_trading"] = False
    features.loc[warm_up, list(SCALED_FEATURES)] = 1e9
    splits = pd.DataFrame({"session_date": features["session_date"].unique(),
                           "split": ["train", "train", "train", "validation", "test"]})
    fitted = fit_feature_scaler(features, splits, {"clip": 5.0})
    train_rows = features["session_date"].isin(splits.loc[splits["split"] == "train", "session_date"])
    reference = FeatureScaler.fit(features.loc[train_rows].assign(valid_for_trading=True), clip=5.0)
    robust_only = FeatureScaler.fit(features.loc[train_rows & ~warm_up], clip=5.0, columns=tuple(
        c for c in SCALED_FEATURES if c != "session_vol_ratio"))
    assert fitted["vol_profile"] == list(reference.vol_profile)  # the profile reads the warm-up bars too
    assert {k: v for k, v in fitted["center"].items() if k != "session_vol_ratio"} == robust_only.center
    assert {k: v for k, v in fitted["scale"].items() if k != "session_vol_ratio"} == robust_only.scale
    assert fitted["fitted_on"] == {"rows": 3 * 25, "train_days": 3}
    assert max(abs(v) for v in fitted["center"].values()) < 1.0
    with pytest.raises(ValueError, match="lacks"):
        FeatureScaler.from_dict({"center": {}})
    with pytest.raises(ValueError, match="lacks its vol_profile"):
        FeatureScaler.from_dict({**fitted, "vol_profile": []})
    # Only the valid rows: the profile would miss each session's first minutes.
    with pytest.raises(ValueError, match=r"no bar at minute 1"):
        FeatureScaler.fit(features.loc[train_rows & ~warm_up])
    assert FeatureScaler.from_dict(fitted).to_dict() == fitted


def test_profile_interpolates_a_minute_no_session_has():
    """Every session before June 2021 halted 16:15-16:30: those minutes are bridged, not an error."""
    rows = pd.DataFrame({"session_minute": [0, 1, 2, 4, 5, 0, 1, 2, 4],
                         "log_return": [np.nan, 0.01, 0.02, 0.04, 0.01, np.nan, 0.03, 0.02, 0.02]})
    profile = fit_vol_profile(rows)
    p2, p4 = 0.02 ** 2, (0.04 ** 2 + 0.02 ** 2) / 2
    assert profile == pytest.approx((0.0, (0.01 ** 2 + 0.03 ** 2) / 2, p2, (p2 + p4) / 2, p4, 0.01 ** 2))


def test_session_vol_ratio_on_hand_made_sessions():
    """Profile from two train sessions; the ratio of a third session (not in the fit) against it."""
    def session(day: str, returns: list[float]) -> pd.DataFrame:
        return compute_bar_features(*hand_made_session(day, list(100.0 * np.exp(np.cumsum(returns))), 100.0))

    train = pd.concat([session("2024-11-25", [0.0, 0.01, -0.02, 0.03]),
                       session("2024-11-26", [0.0, 0.03, 0.0, -0.01])], ignore_index=True)
    other = session("2024-11-27", [0.0, 0.02, 0.02, 0.02])
    # Too few bars for any row to be valid for trading: the robust statistics read every row here.
    scaler = FeatureScaler.fit(train.drop(columns="valid_for_trading"), columns=("session_vol_ratio",))
    # Mean squared return by minute: (1e-4 + 9e-4) / 2, (4e-4 + 0) / 2, (9e-4 + 1e-4) / 2.
    assert scaler.vol_profile == pytest.approx((0.0, 5e-4, 2e-4, 5e-4), rel=1e-9, abs=1e-18)
    ratio = session_vol_ratio(other, scaler.vol_profile)
    assert np.isnan(ratio[0])  # no return at the first bar
    assert ratio[1:].tolist() == pytest.approx([np.sqrt(4 / 5), np.sqrt(8 / 7), 1.0], rel=1e-9)
    assert session_vol_ratio(train, scaler.vol_profile)[3] == pytest.approx(np.sqrt(14 / 12), rel=1e-9)
    scaled = scaler.transform(other)["session_vol_ratio"].to_numpy()
    np.testing.assert_allclose(scaled[1:], np.clip((ratio[1:] - scaler.center["session_vol_ratio"])
                                                   / scaler.scale["session_vol_ratio"], -5, 5), rtol=1e-12)
    # Past the profile's last minute the ratio is undefined, not extrapolated.
    assert np.isnan(session_vol_ratio(other.assign(session_minute=4), scaler.vol_profile)).all()
