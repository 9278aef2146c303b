"""Wiring of the ``data_split`` pipeline."""

from kedro.pipeline import Node, Pipeline

from hybrid_trader.pipelines.data_split.nodes import (
    add_advisor_inputs,
    fit_feature_scaler,
    scale_features,
    split_trading_days,
    summarize_split,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=split_trading_days,
                inputs=["clean_bars", "params:data_split"],
                outputs=["day_splits", "regime_thresholds"],
                name="split_trading_days",
            ),
            Node(
                func=summarize_split,
                inputs=["day_splits", "synthetic_day_regimes"],
                outputs=["split_summary", "split_summary_markdown"],
                name="summarize_split",
            ),
            Node(
                func=fit_feature_scaler,
                inputs=["bar_features", "day_splits", "params:scaling"],
                outputs="feature_scaler",
                name="fit_feature_scaler",
            ),
            Node(
                func=scale_features,
                inputs=["bar_features", "day_splits", "feature_scaler"],
                outputs="model_input_features",
                name="scale_features",
            ),
            Node(
                func=add_advisor_inputs,
                inputs=["bar_features", "feature_scaler"],
                outputs="advisor_bar_features",
                name="add_advisor_inputs",
            ),
        ]
    )
