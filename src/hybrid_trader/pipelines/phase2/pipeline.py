"""Wiring of the ``phase2`` pipeline."""

from kedro.pipeline import Node, Pipeline

from hybrid_trader.pipelines.phase2.nodes import evaluate_phase2_policy, register_phase2_policy, train_phase2_policy

_MARKET = ["clean_bars", "model_input_features", "market_spec", "params:environment"]


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=train_phase2_policy,
                inputs=[*_MARKET, "params:phase2"],
                outputs=["phase2_policy", "phase2_best_policy", "phase2_training_summary"],
                name="train_phase2_policy",
            ),
            Node(
                func=evaluate_phase2_policy,
                inputs=["phase2_policy", *_MARKET, "params:phase2"],
                outputs=["phase2_validation_report", "phase2_validation_metrics"],
                name="evaluate_phase2_policy",
            ),
            Node(
                func=register_phase2_policy,
                inputs=["phase2_policy", "feature_scaler", "observation_layout", "phase2_validation_report",
                        "clean_bars", "model_input_features", "market_spec", "params:environment",
                        "params:phase2"],
                outputs="phase2_registration",
                name="register_phase2_policy",
            ),
        ]
    )
