"""Wiring of the ``feature_engineering`` pipeline."""

from kedro.pipeline import Node, Pipeline

from hybrid_trader.pipelines.feature_engineering.nodes import compute_features, describe_observation_layout


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=compute_features,
                inputs=["clean_bars", "trading_sessions"],
                outputs="bar_features",
                name="compute_features",
            ),
            Node(
                func=describe_observation_layout,
                inputs=None,
                outputs="observation_layout",
                name="describe_observation_layout",
            ),
        ]
    )
