"""Wiring of the ``data_ingestion`` pipeline."""

from kedro.pipeline import Node, Pipeline

from hybrid_trader.pipelines.data_ingestion.nodes import describe_market, validate_and_clean_bars


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=validate_and_clean_bars,
                inputs=["raw_bars", "params:data_ingestion"],
                outputs=["clean_bars", "trading_sessions", "synthetic_day_regimes", "data_quality_report"],
                name="validate_and_clean_bars",
            ),
            Node(
                func=describe_market,
                inputs="params:market",
                outputs="market_spec",
                name="describe_market",
            ),
        ]
    )
