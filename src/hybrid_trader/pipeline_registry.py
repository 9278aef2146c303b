"""The project's pipelines, ``__default__`` (raw bars to reports) and ``experiments`` (sweeps)."""

from __future__ import annotations

import importlib

from kedro.pipeline import Pipeline

from hybrid_trader.pipelines.experiments.pipeline import OUTPUTS as EXPERIMENT_OUTPUTS

# Order of the end-to-end run; each name is a folder under ``pipelines/``.
PIPELINE_ORDER = (
    "data_ingestion",
    "feature_engineering",
    "data_split",
    "phase2",
    "phase3",
    "evaluation",
)


def register_pipelines() -> dict[str, Pipeline]:
    """Register every pipeline folder, the ``__default__`` composition and ``experiments``.

    Every pipeline is built here, whichever ``--pipelines`` were asked for (Kedro's
    ``find_pipelines`` would load only those): ``experiments`` is composed from the others.

    Returns:
        A mapping from pipeline names to ``Pipeline`` objects.
    """
    pipelines = {name: importlib.import_module(f"hybrid_trader.pipelines.{name}").create_pipeline()
                 for name in (*PIPELINE_ORDER, "experiments")}
    # start= keeps sum() working with kedro-mlflow's PipelineML objects.
    pipelines["__default__"] = sum((pipelines[name] for name in PIPELINE_ORDER), start=Pipeline([]))
    # Sweeps train many agents: not part of the default run. From a fresh clone they also need the
    # data, features, split and advisor nodes upstream of them, and only those.
    pipelines["experiments"] = (pipelines["__default__"] + pipelines["experiments"]).to_outputs(
        *EXPERIMENT_OUTPUTS)
    return pipelines
