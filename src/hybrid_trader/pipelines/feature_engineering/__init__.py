"""Indicators and the named 261-column feature layout (filled by the features work)."""

from hybrid_trader.pipelines.feature_engineering.pipeline import create_pipeline

__all__ = ["create_pipeline"]
