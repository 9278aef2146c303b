"""Nodes of ``data_split``: thin wrappers over :mod:`hybrid_trader.splitting` and scaling."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from hybrid_trader.advisor.prescore import advisor_bar_features
from hybrid_trader.features.bar_features import FEATURE_LOOKBACK_SESSIONS
from hybrid_trader.features.scaling import FeatureScaler
from hybrid_trader.splitting import SplitConfig, daily_statistics, split_days, split_summary

logger = logging.getLogger(__name__)


def split_trading_days(
    clean_bars: pd.DataFrame, split_params: dict[str, Any]
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Label each day's regime and assign it to train, validation, test (or embargoed)."""
    config = SplitConfig(**split_params)
    if config.embargo_days < FEATURE_LOOKBACK_SESSIONS:
        raise ValueError(
            f"data_split.embargo_days={config.embargo_days} is shorter than the features' "
            f"look-back of {FEATURE_LOOKBACK_SESSIONS} session(s)"
        )
    splits, thresholds = split_days(daily_statistics(clean_bars), config)
    logger.info("Split days: %s", splits["split"].value_counts().to_dict())
    return splits, thresholds


def summarize_split(day_splits: pd.DataFrame, synthetic_day_regimes: pd.DataFrame) -> tuple[dict[str, Any], str]:
    """Days per regime per split, as JSON and as a Markdown table."""
    summary = split_summary(day_splits, synthetic_day_regimes)
    splits = list(summary["days"])
    lines = ["| regime | " + " | ".join(splits) + " |", "|---" * (len(splits) + 1) + "|"]
    for regime, counts in summary["days_per_regime"].items():
        lines.append(f"| {regime} | " + " | ".join(str(counts[s]) for s in splits) + " |")
    lines.append("| **all** | " + " | ".join(str(summary["days"][s]) for s in splits) + " |")
    markdown = "# Split summary\n\nDays per regime (ex-post label) per split.\n\n" + "\n".join(lines) + "\n"
    return summary, markdown


def fit_feature_scaler(
    bar_features: pd.DataFrame, day_splits: pd.DataFrame, scaling_params: dict[str, Any]
) -> dict[str, Any]:
    """Fit the scaler on train days' bars, and nothing else: the volatility profile on all of them,
    the robust statistics on those valid for trading."""
    train_days = day_splits.loc[day_splits["split"] == "train", "session_date"]
    rows = bar_features.loc[bar_features["session_date"].isin(train_days)]
    scaler = FeatureScaler.fit(rows, clip=scaling_params["clip"], fitted_on={"train_days": int(len(train_days))})
    return scaler.to_dict()


def add_advisor_inputs(bar_features: pd.DataFrame, feature_scaler: dict[str, Any]) -> pd.DataFrame:
    """The bar features with the advisor prompt's raw ``session_vol_ratio`` (train-fitted profile)."""
    return advisor_bar_features(bar_features, FeatureScaler.from_dict(feature_scaler))


def scale_features(bar_features: pd.DataFrame, day_splits: pd.DataFrame,
                   feature_scaler: dict[str, Any]) -> pd.DataFrame:
    """Apply the train-fitted scaler to every split (computing ``session_vol_ratio``); add each bar's ``split``."""
    scaled = FeatureScaler.from_dict(feature_scaler).transform(bar_features)
    split_of_day = day_splits.set_index("session_date")["split"]
    scaled.insert(2, "split", scaled["session_date"].map(split_of_day).to_numpy())
    if scaled["split"].isna().any():
        raise ValueError("some bars belong to days that the split does not know")
    return scaled
