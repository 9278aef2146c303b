"""Wiring of the ``data_ingestion`` pipeline."""

from kedro.pipeline import Node, Pipeline

from hybrid_trader.pipelines.data_ingestion.nodes import (
    describe_market,
    require_clean_bars,
    validate_and_clean_bars,
)

_INGESTED = ["ingested_bars", "ingested_sessions", "ingested_day_regimes"]


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=validate_and_clean_bars,
                inputs=["raw_bars", "params:data_ingestion", "params:market"],
                outputs=[*_INGESTED, "data_quality_report"],
                name="validate_and_clean_bars",
            ),
            # A separate check, so that the report is saved even when no bar is left.
            Node(
                func=require_clean_bars,
                inputs=[*_INGESTED, "data_quality_report"],
                outputs=["clean_bars", "trading_sessions", "synthetic_day_regimes"],
                name="require_clean_bars",
            ),
            Node(
                func=describe_market,
                inputs="params:market",
                outputs="market_spec",
                name="describe_market",
            ),
        ]
    )
