"""Phase 3 hybrid: adapter, LLM advisor, fusion."""

from hybrid_trader.pipelines.phase3.pipeline import create_pipeline

__all__ = ["create_pipeline"]
