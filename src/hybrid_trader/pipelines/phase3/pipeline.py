"""Wiring of the ``phase3`` pipeline.

``build_advisor_examples`` (prompts and the answers that paid off) ->
``finetune_advisor`` (LoRA adapter on train days, skipped when unchanged) ->
``evaluate_advisor_skill`` (held-out skill against baselines) and
``prepare_advisor`` (load check, pre-scored answers) -> ``train_phase3_policy``
-> ``evaluate_phase3_policy`` (overfitting gap, RL-only comparison) ->
``register_phase3_policy`` and ``write_phase3_health_report``. Rerun one with
``kedro run --nodes=<name>`` (e.g. ``write_phase3_health_report`` alone reads
the saved training summary and evaluation).
"""

from kedro.pipeline import Node, Pipeline

from hybrid_trader.pipelines.phase3.nodes import (
    build_advisor_examples, check_phase3_health, evaluate_advisor_skill, evaluate_phase3_policy, finetune_advisor,
    prepare_advisor, register_phase3_policy, train_phase3_policy, write_phase3_health_report,
)

_FRAMES = ["clean_bars", "model_input_features", "advisor_bar_features", "market_spec"]


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=build_advisor_examples,
                inputs=["clean_bars", "advisor_bar_features", "day_splits", "market_spec", "params:advisor",
                        "params:environment", "params:evaluation"],
                outputs="advisor_examples",
                name="build_advisor_examples",
            ),
            Node(
                func=finetune_advisor,
                inputs=["advisor_examples", "params:advisor"],
                outputs="advisor_adapter",
                name="finetune_advisor",
            ),
            Node(
                func=evaluate_advisor_skill,
                inputs=["advisor_examples", "advisor_adapter", "advice_cache", "market_spec", "params:advisor",
                        "params:evaluation"],
                outputs=["advisor_skill", "advisor_skill_markdown", "advisor_skill_metrics"],
                name="evaluate_advisor_skill",
            ),
            Node(
                func=prepare_advisor,
                inputs=["advisor_bar_features", "day_splits", "advice_cache", "advisor_adapter", "params:advisor",
                        "params:environment"],
                outputs=["advisor_report", "advisor_responses"],
                name="prepare_advisor",
            ),
            Node(
                func=train_phase3_policy,
                inputs=["phase2_best_policy", *_FRAMES, "advice_cache", "advisor_report", "advisor_adapter", "params:environment",
                        "params:advisor", "params:phase3"],
                outputs=["phase3_policy", "phase3_best_policy", "phase3_training_summary",
                         "phase3_advisor_responses"],
                name="train_phase3_policy",
            ),
            Node(
                func=evaluate_phase3_policy,
                inputs=["phase3_policy", *_FRAMES, "advice_cache", "advisor_adapter", "params:environment", "params:advisor",
                        "params:phase3"],
                outputs="phase3_evaluation",
                name="evaluate_phase3_policy",
            ),
            Node(
                func=register_phase3_policy,
                inputs=["phase3_policy", "feature_scaler", "observation_layout", "phase3_evaluation", "clean_bars",
                        "model_input_features", "market_spec", "params:environment", "params:phase3"],
                outputs="phase3_registration",
                name="register_phase3_policy",
            ),
            Node(
                func=write_phase3_health_report,
                inputs=["phase3_training_summary", "phase3_evaluation"],
                outputs=["phase3_health_report", "phase3_health_report_markdown", "phase3_health_metrics"],
                name="write_phase3_health_report",
            ),
            Node(
                func=check_phase3_health,
                inputs=["phase3_health_report", "params:phase3"],
                outputs=None,
                name="check_phase3_health",
            ),
        ]
    )
