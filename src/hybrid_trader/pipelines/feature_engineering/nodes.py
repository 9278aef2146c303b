"""Nodes of ``feature_engineering``: thin wrappers over :mod:`hybrid_trader.features`."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import pandas as pd

from hybrid_trader.features.bar_features import FEATURE_NAMES, compute_bar_features
from hybrid_trader.features.registry import OBSERVATION_COLUMNS, PHASE2_DIM, PHASE3_DIM

logger = logging.getLogger(__name__)


def compute_features(clean_bars: pd.DataFrame, trading_sessions: pd.DataFrame) -> pd.DataFrame:
    """Every per-bar feature of the registry, computed causally per session."""
    features = compute_bar_features(clean_bars, trading_sessions)
    logger.info("Computed %d features for %d bars; %.1f%% of bars valid for trading (after warm-up)",
                len(FEATURE_NAMES), len(features), 100 * features["valid_for_trading"].mean())
    return features


def describe_observation_layout() -> dict[str, Any]:
    """The observation layout (all 261 named columns) as a document for MLflow and the docs."""
    return {
        "phase2_dim": PHASE2_DIM,
        "phase3_dim": PHASE3_DIM,
        "columns": [dataclasses.asdict(column) for column in OBSERVATION_COLUMNS],
    }
