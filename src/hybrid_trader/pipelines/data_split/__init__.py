"""Regime labels per day and the train / validation / test split."""

from hybrid_trader.pipelines.data_split.pipeline import create_pipeline

__all__ = ["create_pipeline"]
