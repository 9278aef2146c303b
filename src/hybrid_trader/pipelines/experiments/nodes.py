"""Nodes of ``experiments``: thin wrappers over :mod:`hybrid_trader.experiments`."""

from __future__ import annotations

import copy
import dataclasses
import logging
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd

from hybrid_trader.advisor.advisor import Advisor
from hybrid_trader.advisor.cache import AdviceCache
from hybrid_trader.advisor.finetune import with_adapter
from hybrid_trader.advisor.prescore import prescore_days
from hybrid_trader.evaluation.seed_stats import summarize_trials, summary_figure, summary_markdown
from hybrid_trader.experiments.runner import connect_ray, run_trials
from hybrid_trader.experiments.spec import ExperimentSpec, fingerprint
from hybrid_trader.experiments.trials import Tracking, TrialData
from hybrid_trader.market_data.synthetic import PlantedEdge, check_planted_labels

logger = logging.getLogger(__name__)


# The columns of the trials table that name a trial; every other column is a figure.
IDENTITY_COLUMNS = ("configuration", "seed", "status", "agent", "key", "run_id", "node_id", "resumed", "error")


def _sections(environment: dict[str, Any], phase2: dict[str, Any], phase3: dict[str, Any], advisor: dict[str, Any],
              evaluation: dict[str, Any]) -> dict[str, Any]:
    """The parameter sections a configuration may override (``PARAMETER_SECTIONS`` of
    :mod:`hybrid_trader.experiments.spec`)."""
    return {"environment": environment, "phase2": phase2, "phase3": phase3, "advisor": advisor,
            "evaluation": evaluation}


def _tracking(experiment: str) -> Tracking:
    """The active MLflow run (kedro-mlflow's) as the trials' parent; no tracking without one."""
    run = mlflow.active_run()
    if run is None:
        return Tracking(experiment_name=experiment)
    uri = mlflow.get_tracking_uri()
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not Path(uri[len(prefix):]).is_absolute():
        uri = prefix + str(Path(uri[len(prefix):]).resolve())  # Ray workers need not share this directory
    return Tracking(uri, run.info.experiment_id, run.info.run_id, experiment)


def _absolute(path: str | None) -> str | None:
    return str(Path(path).resolve()) if path else path


def _absolute_model_paths(advisor_params: dict[str, Any]) -> dict[str, Any]:
    model = advisor_params["model"]
    return {**advisor_params, "model": {**model, **{key: _absolute(model.get(key))
                                                    for key in ("model_path", "adapter_path", "cache_dir")}}}


def _data_fingerprint(*frames: pd.DataFrame, market_spec: dict[str, Any]) -> str:
    """A hash of everything the trials read: bars, split, scaled features (the scaler's settings
    included), the advisor's inputs, and the contract."""
    hashes = [int(pd.util.hash_pandas_object(frame, index=False).sum()) for frame in frames]
    return fingerprint({"frames": hashes, "shapes": [list(frame.shape) for frame in frames], "market": market_spec})


def run_experiment(
    clean_bars: pd.DataFrame,
    model_input_features: pd.DataFrame,
    advisor_bar_features: pd.DataFrame,
    market_spec: dict[str, Any],
    day_splits: pd.DataFrame,
    synthetic_day_regimes: pd.DataFrame,
    advice_cache: AdviceCache,
    advisor_adapter: dict[str, Any],
    advisor_report: dict[str, Any],
    environment_params: dict[str, Any],
    phase2_params: dict[str, Any],
    phase3_params: dict[str, Any],
    advisor_params: dict[str, Any],
    evaluation_params: dict[str, Any],
    experiments_params: dict[str, Any],
) -> list[dict[str, Any]]:
    """Every trial (configuration x seed) of the experiment, trained and backtested on held-out
    days as Ray tasks, each an MLflow child run of this run; trials already complete in MLflow
    are read back, not rerun. ``advisor_report`` orders this after the advisor's pre-scoring.

    Returns:
        One record per trial (``status`` finished or failed, figures, held-out sessions).
    """
    base = _sections(environment_params, phase2_params, phase3_params, advisor_params, evaluation_params)
    spec = ExperimentSpec.from_params(experiments_params, base)
    check_planted_labels(PlantedEdge.from_params(evaluation_params.get("planted_edge")),
                         synthetic_day_regimes["regime"])
    data_fingerprint = _data_fingerprint(clean_bars, day_splits.astype(str), model_input_features,
                                         advisor_bar_features, market_spec=market_spec)
    stages, trials = spec.trials(base, data_fingerprint,
                                 fingerprint(advisor_adapter.get("key") or advisor_adapter.get("adapter_path")))
    # Ray workers need not run in this directory: they get absolute paths (trial keys keep the configured ones).
    trials = [dataclasses.replace(t, params={**t.params, "advisor": _absolute_model_paths(t.params["advisor"])})
              for t in trials]
    advisor_adapter = {**advisor_adapter, "adapter_path": _absolute(advisor_adapter.get("adapter_path"))}
    # Hybrid backtests read the cache only: score the evaluated days' flat prompts for every advisor
    # setting and drawdown limit (part of the prompt) the hybrid trials use.
    settings = {fingerprint([t.params["advisor"], t.params["environment"]["engine"]["drawdown_limit"]]): t.params
                for t in trials if t.evaluated_agent == "hybrid"}
    for params in settings.values():
        _prescore_days(advice_cache, advisor_bar_features, day_splits, spec.splits, params["advisor"],
                       advisor_adapter, params["environment"])
    offline_cache = copy.copy(advice_cache)
    offline_cache.path = None  # trials read the answers; only this node writes the cache file
    data = TrialData(clean_bars, model_input_features, advisor_bar_features, market_spec,
                     dict(zip(day_splits["session_date"].astype(str).str[:10], day_splits["regime"])),
                     offline_cache, advisor_adapter)
    ray_settings = experiments_params.get("ray") or {}
    started_here = connect_ray(experiments_params.get("ray_address"), ray_settings.get("num_cpus"))
    try:
        records = run_trials(stages, trials, data, _tracking(spec.name), experiment=spec.name, splits=spec.splits,
                             cost_multiple=spec.cost_multiple, work_dir=_absolute(experiments_params["work_dir"]),
                             cpus_per_trial=float(ray_settings.get("cpus_per_trial", 1)),
                             max_retries=int(ray_settings.get("max_retries", 2)),
                             progress_bar=bool(experiments_params.get("progress_bar", True)))
    finally:
        if started_here:
            import ray

            ray.shutdown()
    failed = [r for r in records if r["status"] == "failed"]
    logger.info("Experiment %s: %d trials, %d finished, %d failed", spec.name, len(records),
                len(records) - len(failed), len(failed))
    return records


def _prescore_days(advice_cache: AdviceCache, advisor_bar_features: pd.DataFrame, day_splits: pd.DataFrame,
                   splits: tuple[str, ...], advisor_params: dict[str, Any], advisor_adapter: dict[str, Any],
                   environment_params: dict[str, Any]) -> None:
    """Score the evaluated days' flat-account prompts once, here, so the trials' backtests read the cache."""
    advisor = Advisor.from_params(with_adapter(advisor_params, advisor_adapter), cache=advice_cache)
    try:
        days = day_splits.loc[day_splits["split"].isin(splits), "session_date"]
        counts = prescore_days(advisor, advisor_bar_features, days, environment_params["engine"]["drawdown_limit"],
                               advisor_params["prescore"])
        logger.info("Experiment: %d new flat prompts of %s days scored in %.1f s", counts["scored"],
                    "/".join(splits), counts["seconds"])
    finally:
        advisor.close()


def trials_table(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per trial: identity, status and figures (the columns the summary reads)."""
    return pd.DataFrame([{"configuration": r["configuration"], "seed": r["seed"], "status": r["status"],
                          "agent": r.get("evaluated_agent"), "key": r["key"], "run_id": r.get("run_id"),
                          "node_id": r.get("node_id"), "resumed": bool(r.get("resumed", False)),
                          "error": r.get("error"), **r.get("figures", {})} for r in records])


def summarize_experiment(experiment_trials: list[dict[str, Any]], environment_params: dict[str, Any],
                         phase2_params: dict[str, Any], phase3_params: dict[str, Any], advisor_params: dict[str, Any],
                         evaluation_params: dict[str, Any], experiments_params: dict[str, Any]):
    """Statistics across seeds (:mod:`hybrid_trader.evaluation.seed_stats`): JSON, Markdown, a plot of
    the headline figure, and the IQMs and paired differences as MLflow metrics."""
    base = _sections(environment_params, phase2_params, phase3_params, advisor_params, evaluation_params)
    spec = ExperimentSpec.from_params(experiments_params, base)
    table = trials_table(experiment_trials)
    finished = table.loc[table["status"] == "finished"]
    if finished.empty:
        failures = "; ".join(f"{r['configuration']}/seed{r['seed']}: {r.get('error')}" for r in experiment_trials)
        raise RuntimeError(f"Experiment {spec.name}: no trial finished, nothing to summarize ({failures})")
    metrics = [c for c in table.columns if c not in IDENTITY_COLUMNS]
    stats = experiments_params.get("statistics") or {}
    summary = summarize_trials(finished, metrics, spec.comparisons(), confidence=float(stats.get("confidence", 0.95)),
                               n_resamples=int(stats.get("n_resamples", 2000)), seed=int(stats.get("seed", 0)))
    summary["experiment"] = spec.name
    summary["trials"] = {"total": int(len(table)), "finished": int(len(finished)),
                         "failed": table.loc[table["status"] == "failed", ["configuration", "seed", "error"]]
                         .to_dict(orient="records"),
                         "resumed": int(table["resumed"].sum()), "nodes": int(finished["node_id"].nunique())}
    headline = f"{spec.splits[-1]}_mean_daily_pnl"
    markdown = summary_markdown(summary, title=f"Experiment {spec.name}")
    logger.info("\n%s", markdown)
    figure = summary_figure(summary, headline) if headline in metrics else summary_figure(summary, metrics[0])
    mlflow_metrics = _summary_metrics(summary)
    return summary, markdown, figure, mlflow_metrics


def _summary_metrics(summary: dict[str, Any]) -> dict[str, Any]:
    """``experiment/<configuration>/<figure>_iqm`` and ``experiment/<configuration>-<baseline>/<figure>_diff``."""
    metrics = {}
    for configuration, figures in summary.get("configurations", {}).items():
        for name, values in figures.items():
            if isinstance(values, dict) and pd.notna(values.get("iqm")):
                metrics[f"experiment/{configuration}/{name}_iqm"] = {"value": float(values["iqm"]), "step": 0}
    for comparison in summary.get("comparisons", []):
        for name, values in comparison.get("metrics", {}).items():
            difference = values.get("mean_difference", {}).get("value")
            if difference is not None and pd.notna(difference):
                metrics[f"experiment/{comparison['configuration']}-{comparison['baseline']}/{name}_diff"] = {
                    "value": float(difference), "step": 0}
    return metrics
