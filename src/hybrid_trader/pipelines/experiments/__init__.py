"""The ``experiments`` pipeline: seeds x configurations as Ray tasks, statistics across seeds."""

from hybrid_trader.pipelines.experiments.pipeline import create_pipeline

__all__ = ["create_pipeline"]
