"""Wiring of the ``evaluation`` pipeline.

``backtest_agents`` -> ``compute_backtest_metrics`` (comparison table),
``write_learning_report`` (each agent against a planted market's oracle) and
``plot_evaluation`` (Plotly JSON for kedro-viz, PNG for MLflow).
"""

from kedro.pipeline import Node, Pipeline

from hybrid_trader.pipelines.evaluation.nodes import (
    backtest_agents, compute_backtest_metrics, plot_evaluation, write_learning_report,
)

_PLOTS = ["equity_curves", "action_distribution", "phase3_training_curves", "end_reasons"]


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=backtest_agents,
                inputs=["phase2_best_policy", "phase3_policy", "clean_bars", "model_input_features",
                        "advisor_bar_features", "market_spec", "advice_cache", "advisor_adapter", "synthetic_day_regimes", "params:environment",
                        "params:advisor", "params:phase3", "params:evaluation"],
                outputs=["backtest_episodes", "backtest_steps"],
                name="backtest_agents",
            ),
            Node(
                func=compute_backtest_metrics,
                inputs=["backtest_episodes", "backtest_steps", "day_splits", "params:environment",
                        "params:evaluation"],
                outputs=["backtest_metrics", "backtest_metrics_markdown", "backtest_mlflow_metrics"],
                name="compute_backtest_metrics",
            ),
            Node(
                func=write_learning_report,
                inputs=["backtest_episodes", "backtest_steps", "clean_bars", "model_input_features",
                        "params:evaluation", "params:environment"],
                outputs=["learning_report", "learning_report_markdown", "learning_mlflow_metrics"],
                name="write_learning_report",
            ),
            Node(
                func=plot_evaluation,
                inputs=["backtest_episodes", "backtest_steps", "phase3_training_summary", "params:environment"],
                outputs=[f"{p}_plot" for p in _PLOTS] + [f"{p}_png" for p in _PLOTS],
                name="plot_evaluation",
            ),
        ]
    )
