"""Backtests of every agent and baseline, metrics and reports."""

from hybrid_trader.pipelines.evaluation.pipeline import create_pipeline

__all__ = ["create_pipeline"]
