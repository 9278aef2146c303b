"""Raw bars (synthetic by default, or a CSV) to validated, session-aligned bars."""

from hybrid_trader.pipelines.data_ingestion.pipeline import create_pipeline

__all__ = ["create_pipeline"]
