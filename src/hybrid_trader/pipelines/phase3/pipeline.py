"""Wiring of the ``phase3`` pipeline.

Today it prepares the LLM advisor (load check and pre-scored answer cache);
the hybrid agent's training nodes build on it.
"""

from kedro.pipeline import Node, Pipeline

from hybrid_trader.pipelines.phase3.nodes import prepare_advisor


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=prepare_advisor,
                inputs=["bar_features", "day_splits", "advice_cache", "params:advisor", "params:environment"],
                outputs=["advisor_report", "advisor_responses"],
                name="prepare_advisor",
            ),
        ]
    )
