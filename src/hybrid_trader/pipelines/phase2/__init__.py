"""Phase 2: MaskablePPO on the 228-dim view: train, evaluate on validation, register."""

from hybrid_trader.pipelines.phase2.pipeline import create_pipeline

__all__ = ["create_pipeline"]
