import numpy as np
import pandas as pd
import pytest

from hybrid_trader.features.scaling import SCALED_FEATURES, FeatureScaler
from hybrid_trader.pipelines.data_split.nodes import fit_feature_scaler, scale_features


def _features(n_days: int = 5, rows: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    days = np.repeat(pd.date_range("2024-01-02", periods=n_days, freq="D"), rows)
    frame = pd.DataFrame(rng.normal(size=(len(days), len(SCALED_FEATURES))), columns=list(SCALED_FEATURES))
    frame.insert(0, "session_date", days)
    frame["breakout"] = rng.integers(0, 2, len(days)).astype(float)
    frame["valid_for_trading"] = True
    return frame


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
    fitted = fit_feature_scaler(poisoned, splits, {"clip": 5.0})
    reference = FeatureScaler.fit(features.loc[~held_out], clip=5.0)
    assert fitted["center"] == reference.center and fitted["scale"] == reference.scale
    assert fitted["fitted_on"] == {"rows": 120, "train_days": 3}

    scaled = scale_features(poisoned, splits, fitted)
    assert (scaled.loc[held_out, list(SCALED_FEATURES)] == 5.0).all().all()  # applied to every split
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
    reference = FeatureScaler.fit(features.loc[train_rows & ~warm_up], clip=5.0)
    assert fitted["center"] == reference.center and fitted["scale"] == reference.scale
    assert fitted["fitted_on"] == {"rows": 3 * 25, "train_days": 3}
    assert max(abs(v) for v in fitted["center"].values()) < 1.0
    with pytest.raises(ValueError, match="lacks"):
        FeatureScaler.from_dict({"center": {}})
