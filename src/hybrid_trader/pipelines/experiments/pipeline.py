"""Wiring of the ``experiments`` pipeline.

``run_experiment`` (every configuration x seed as a Ray task, each an MLflow child run)
-> ``summarize_experiment`` (interquartile means, paired differences and probabilities of
improvement with bootstrap intervals). Registered as ``experiments`` together with the
upstream nodes it needs (data, features, split, the advisor's fine-tuning and
pre-scoring); ``kedro run --pipelines=experiments --nodes=summarize_experiment``
recomputes the summary alone.
"""

from kedro.pipeline import Node, Pipeline

from hybrid_trader.pipelines.experiments.nodes import run_experiment, summarize_experiment

OUTPUTS = ("experiment_summary", "experiment_summary_markdown", "experiment_plot", "experiment_mlflow_metrics")
_PARAMS = ["params:environment", "params:phase2", "params:phase3", "params:advisor", "params:evaluation",
           "params:experiments"]


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=run_experiment,
                inputs=["clean_bars", "model_input_features", "advisor_bar_features", "market_spec", "day_splits",
                        "synthetic_day_regimes", "advice_cache", "advisor_adapter", "advisor_report", *_PARAMS],
                outputs="experiment_trials",
                name="run_experiment",
            ),
            Node(
                func=summarize_experiment,
                inputs=["experiment_trials", *_PARAMS],
                outputs=list(OUTPUTS),
                name="summarize_experiment",
            ),
        ]
    )
