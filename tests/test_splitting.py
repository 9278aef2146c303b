"""The day split: disjoint, test latest, regime-stratified, embargoed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hybrid_trader.market_data.clean import CleaningConfig, ingest_bars
from hybrid_trader.market_data.synthetic import SyntheticMarketConfig, generate_synthetic_bars
from hybrid_trader.splitting import SplitConfig, daily_statistics, split_days, split_summary


@pytest.fixture(scope="module")
def stats() -> pd.DataFrame:
    raw = generate_synthetic_bars(SyntheticMarketConfig(n_days=90, seed=9))
    return daily_statistics(ingest_bars(raw, CleaningConfig(), source="synthetic").bars)


def test_daily_statistics_by_hand():
    times = pd.date_range("2024-11-26 09:29", periods=4, freq="1min", tz="America/New_York")
    bars = pd.DataFrame({"timestamp": times, "session_date": pd.Timestamp("2024-11-26"),
                         "open": [90.0, 100.0, 101.0, 99.0], "high": [95.0, 102.0, 103.0, 100.0],
                         "low": [80.0, 99.0, 100.0, 97.0], "close": [100.0, 101.0, 99.0, 98.0]})
    row = daily_statistics(bars).iloc[0]
    assert row["rth_return"] == pytest.approx(np.log(98.0 / 100.0))  # the 09:29 bar is not RTH
    assert row["realized_vol"] == pytest.approx(np.sqrt(np.log(99 / 101) ** 2 + np.log(98 / 99) ** 2))
    assert row["range_pct"] == pytest.approx((103.0 - 97.0) / 100.0)


def test_split_is_disjoint_test_is_latest_and_regimes_are_balanced(stats):
    splits, thresholds = split_days(stats, SplitConfig())
    assert splits["session_date"].is_unique and len(splits) == 90
    test = splits[splits["split"] == "test"]
    assert len(test) == 18 and test["session_date"].min() > splits.loc[splits["split"] != "test", "session_date"].max()
    dev = splits[splits["split"] != "test"]
    assert (dev["split"] == "validation").sum() == round(0.2 * 72)
    for regime, group in dev.groupby("regime"):
        n_val = (group["split"] == "validation").sum()
        assert abs(n_val - 0.2 * len(group)) <= 1, regime
    assert thresholds["fitted_on_days"] == 72  # the test days do not shape the labels
    assert set(splits["regime"]) <= {f"{v}_vol_{d}" for v in ("low", "mid", "high") for d in ("up", "down")}


def test_seed_changes_validation_days_but_not_the_test_set(stats):
    a, _ = split_days(stats, SplitConfig(seed=1))
    b, _ = split_days(stats, SplitConfig(seed=2))
    assert not a["split"].equals(b["split"])
    assert (a["split"] == "test").equals(b["split"] == "test")


def test_embargo_keeps_train_days_away_from_validation_and_test(stats):
    splits, _ = split_days(stats, SplitConfig(embargo_days=1))
    labels = splits["split"].to_numpy()
    for i, label in enumerate(labels):
        if label == "train":
            neighbours = labels[max(i - 1, 0): i + 2]
            assert "validation" not in neighbours and "test" not in neighbours
    assert (labels == "embargoed").sum() > 0
    assert split_summary(splits)["days"]["embargoed"] == (labels == "embargoed").sum()


def test_rejected_configs(stats):
    with pytest.raises(ValueError, match="test_fraction"):
        SplitConfig(test_fraction=0.0)
    with pytest.raises(ValueError, match="embargo_days"):
        SplitConfig(embargo_days=-1)
    with pytest.raises(ValueError, match="too few"):
        split_days(stats.iloc[:2], SplitConfig())
