"""Phase 2 MaskablePPO training on the 228-dim view."""

from hybrid_trader.pipelines.phase2.pipeline import create_pipeline

__all__ = ["create_pipeline"]
