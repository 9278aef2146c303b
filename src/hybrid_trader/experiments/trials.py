"""One trial, as it runs on a Ray worker: train, backtest on held-out days, log an MLflow child run.

A trial reuses the pipeline's own nodes (``train_phase2_policy``,
``train_phase3_policy``) and backtests (:func:`hybrid_trader.evaluation.backtests.run_agent`)
with its configuration's parameters, so a trial's agent is exactly the one
``kedro run`` would train with those parameters.

Figures of a trial (per evaluated split ``<split>``; definitions in
:func:`hybrid_trader.evaluation.backtests.backtest_metrics` and docs/experiments.md):
``<split>_mean_daily_pnl``, ``<split>_net_pnl``, ``<split>_sharpe_daily``,
``<split>_max_drawdown``, ``<split>_apex_breaches`` (sessions the drawdown rule ended),
``<split>_trades_per_day``, the Apex evaluation figures
(:func:`hybrid_trader.evaluation.apex.estimate_apex`: ``<split>_apex_pass_probability``,
``_breach_probability``, ``_expiry_probability``, ``_median_days_to_pass``) and, on a planted market,
``<split>_oracle_capture`` and ``<split>_direction_agreement``.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import mlflow
import numpy as np
import pandas as pd

from hybrid_trader.experiments.spec import Stage, Trial

__all__ = ["TrialData", "Tracking", "train_stage", "train_and_backtest", "run_trial", "TRIAL_TAGS", "trial_figures",
           "trial_identity"]

logger = logging.getLogger(__name__)

# MLflow tags that identify a trial's child run (resume looks them up).
TRIAL_TAGS = {"experiment": "hybrid_trader.experiment", "key": "hybrid_trader.trial_key",
              "configuration": "hybrid_trader.configuration", "seed": "hybrid_trader.seed"}


@dataclass
class TrialData:
    """Everything a trial reads, put once into Ray's object store and shared by all trials."""

    clean_bars: pd.DataFrame
    model_input_features: pd.DataFrame
    advisor_bar_features: pd.DataFrame
    market_spec: dict[str, Any]
    regimes: dict[str, str]  # session date (YYYY-MM-DD) -> regime label of the split
    advice_cache: Any  # an AdviceCache without a file: trials read it and never write it back
    advisor_adapter: dict[str, Any]


@dataclass(frozen=True)
class Tracking:
    """Where trials log: the tracking URI, the MLflow experiment and the parent run (``None``: no
    logging); ``experiment_name`` is the sweep's name, tagged on every trial run."""

    tracking_uri: str | None = None
    experiment_id: str | None = None
    parent_run_id: str | None = None
    experiment_name: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.tracking_uri and self.experiment_id)


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)  # one core per trial: small MLPs gain nothing from more, and trials share the machine


def train_stage(stage: Stage, data: TrialData, work_dir: str) -> dict[str, Any]:
    """Train one seed's Phase 2 policy (or reuse the one an earlier attempt saved under ``work_dir``).

    Each attempt trains in its own folder (removed afterwards) and publishes the policy and its
    summary by atomic renames, so concurrent attempts with the same key never see a half-written file.

    Returns:
        ``{"model": <zip bytes of the best-on-validation policy>, "summary": <training summary>}``.
    """
    from hybrid_trader.pipelines.phase2.nodes import train_phase2_policy

    _one_thread()
    folder = Path(work_dir) / "phase2" / stage.key
    saved, summary_file = folder / "best_policy.zip", folder / "summary.json"
    if saved.exists() and summary_file.exists():
        return {"model": saved.read_bytes(), "summary": json.loads(summary_file.read_text())}
    attempt = folder / f"work-{uuid.uuid4().hex}"
    phase2 = {**stage.params["phase2"], "work_dir": str(attempt), "resume": False, "progress_bar": False}
    try:
        _, best, summary = train_phase2_policy(data.clean_bars, data.model_input_features, data.market_spec,
                                               stage.params["environment"], phase2)
        buffer = io.BytesIO()
        best.save(buffer)
        _publish(summary_file, json.dumps(summary, default=str).encode())
        _publish(saved, buffer.getvalue())  # last: its presence says the stage is complete
    finally:
        shutil.rmtree(attempt, ignore_errors=True)  # checkpoints: a retried stage starts over
    return {"model": buffer.getvalue(), "summary": summary}


def _publish(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    temporary.write_bytes(content)
    os.replace(temporary, path)


def _load_policy(blob: bytes) -> Any:
    from sb3_contrib import MaskablePPO

    return MaskablePPO.load(io.BytesIO(blob), device="cpu")


def trial_figures(agent_episodes: pd.DataFrame, agent_steps: pd.DataFrame, split: str, params: dict[str, Any],
                  data: TrialData, oracle_episodes: pd.DataFrame | None = None) -> dict[str, float]:
    """The trial's figures on one split (see the module docstring), from its backtest (and, on a planted
    market, the oracle's backtest of the same sessions)."""
    from hybrid_trader.evaluation.apex import FIGURES as APEX_FIGURES, apex_settings
    from hybrid_trader.evaluation.backtests import backtest_metrics
    from hybrid_trader.evaluation.learning import learning_figures, split_directions
    from hybrid_trader.market_data.synthetic import PlantedEdge

    engine = params["environment"]["engine"]
    metrics = backtest_metrics(agent_episodes, agent_steps, float(engine["starting_balance"]), data.regimes,
                               apex=apex_settings(params["evaluation"].get("apex_evaluation"), engine))
    names = ("mean_daily_pnl", "net_pnl", "sharpe_daily", "max_drawdown", "apex_breaches", "trades_per_day",
             *(f"apex_{name}" for name in APEX_FIGURES))
    figures = {f"{split}_{name}": float(metrics[name]) for name in names}
    edge = PlantedEdge.from_params(params["evaluation"].get("planted_edge"))
    if edge is not None:
        directions = split_directions(data.clean_bars, data.model_input_features, split, edge)
        learned = learning_figures(agent_episodes, agent_steps, directions,
                                   None if edge.kind == "none" else oracle_episodes)
        figures.update({f"{split}_{name}": float(learned[name])
                        for name in ("oracle_capture", "direction_agreement") if name in learned})
    return figures


def _backtest(trial: Trial, data: TrialData, phase2: Any, phase3: Any, splits: tuple[str, ...],
              cost_multiple: float) -> tuple[pd.DataFrame, dict[str, float]]:
    from hybrid_trader.advisor.advisor import Advisor
    from hybrid_trader.advisor.finetune import with_adapter
    from hybrid_trader.agents.phase3 import Phase3Config
    from hybrid_trader.evaluation.backtests import BacktestSetup, run_agent
    from hybrid_trader.market_data.synthetic import PlantedEdge
    from hybrid_trader.pipelines.phase2.nodes import contract_from_spec

    params = trial.params
    agent = trial.evaluated_agent
    advisor = (Advisor.from_params(with_adapter(params["advisor"], data.advisor_adapter), cache=data.advice_cache)
               if agent == "hybrid" else None)
    setup = BacktestSetup(data.clean_bars, data.model_input_features, data.advisor_bar_features,
                          contract_from_spec(data.market_spec), params["environment"],
                          Phase3Config.from_params(params["phase3"]), advisor,
                          int(params["evaluation"]["random_seed"]),
                          PlantedEdge.from_params(params["evaluation"].get("planted_edge")))
    sessions, figures = [], {}
    for split in splits:
        episodes, steps = run_agent(agent, split, cost_multiple, setup, phase2, phase3)
        oracle = run_agent("oracle", split, cost_multiple, setup, None, None)[0] if setup.planted_edge else None
        figures.update(trial_figures(episodes, steps, split, params, data, oracle))
        sessions.append(episodes.assign(split=split)[["split", "session_date", "net_pnl", "end_reason", "trades",
                                                      "steps"]])
    return pd.concat(sessions, ignore_index=True), figures


def _flat_params(params: dict[str, Any], prefix: str = "") -> dict[str, str]:
    flat = {}
    for key, value in params.items():
        if isinstance(value, dict):
            flat.update(_flat_params(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = str(value)[:500]
    return flat


def train_and_backtest(trial: Trial, data: TrialData, stage_result: dict[str, Any], splits: tuple[str, ...],
                       cost_multiple: float,
                       work_dir: str) -> tuple[pd.DataFrame, dict[str, float], dict[str, Any], Any]:
    """The trial's work: its agent trained (Phase 3 from the stage's Phase 2 policy) and backtested.

    Returns:
        Held-out sessions, figures, a training summary and the trained policy.
    """
    phase2 = _load_policy(stage_result["model"])
    phase3, training = None, {"phase2": stage_result["summary"]}
    if trial.configuration.agent == "phase3":
        from hybrid_trader.pipelines.phase3.nodes import train_phase3_policy

        attempt = Path(work_dir) / "phase3" / f"{trial.key}-{uuid.uuid4().hex}"
        phase3_params = {**trial.params["phase3"], "phase2_source": "catalog", "resume": False,
                         "progress_bar": False, "work_dir": str(attempt)}
        try:
            phase3, _, summary, _ = train_phase3_policy(
                phase2, data.clean_bars, data.model_input_features, data.advisor_bar_features, data.market_spec,
                data.advice_cache, {}, data.advisor_adapter, trial.params["environment"], trial.params["advisor"],
                phase3_params)
        finally:
            shutil.rmtree(attempt, ignore_errors=True)  # checkpoints: a retried trial starts over
        training["phase3"] = {k: summary[k] for k in ("num_timesteps", "telemetry", "llm_weight", "clean_exit")}
    sessions, figures = _backtest(trial, data, phase2, phase3, splits, cost_multiple)
    return sessions, figures, training, phase3 if phase3 is not None else phase2


def run_trial(trial: Trial, data: TrialData, stage_result: dict[str, Any], tracking: Tracking,
              splits: tuple[str, ...], cost_multiple: float, work_dir: str, board: Any = None,
              execute: Callable[..., tuple] = train_and_backtest) -> dict[str, Any]:
    """Run one trial (``execute``: :func:`train_and_backtest`) as an MLflow child run of the experiment's run.

    Returns a JSON-serialisable record: the trial's identity, ``status`` (``finished``), its
    figures, its held-out sessions (``sessions``: split, date, net P&L, end reason), the
    MLflow run id, the Ray node and process that ran it, and its seconds. A trial that raises
    ends its run FAILED and re-raises.
    """
    import ray

    started = time.perf_counter()
    node_id = ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    _one_thread()
    run = _start_run(trial, tracking)
    try:
        # After the run exists: a trial seen running has a run to close if its worker dies. Not waited on
        # (an actor runs one caller's calls in order): a task blocked in ray.get lends its CPU to another.
        if board is not None:
            board.started.remote(trial.key, os.getpid(), node_id, trial.name)
        sessions, figures, training, policy = execute(trial, data, stage_result, splits, cost_multiple, work_dir)
        record = {
            **trial_identity(trial), "status": "finished", "figures": figures,
            "sessions": json.loads(sessions.to_json(orient="records", date_format="iso")),
            "run_id": run.info.run_id if run else None, "node_id": node_id, "pid": os.getpid(),
            "seconds": time.perf_counter() - started,
        }
        if run is not None:
            _log_trial(record, trial, training, policy, cost_multiple)
            mlflow.end_run("FINISHED")
        return record
    except BaseException:
        if run is not None:
            mlflow.end_run("FAILED")
        raise
    finally:
        if board is not None:
            board.finished.remote(trial.key)


def trial_identity(trial: Trial) -> dict[str, Any]:
    """The fields that name a trial in its record (finished or failed)."""
    return {"key": trial.key, "configuration": trial.configuration.name, "agent": trial.configuration.agent,
            "evaluated_agent": trial.evaluated_agent, "seed": trial.seed}


def _start_run(trial: Trial, tracking: Tracking):
    if not tracking.enabled:
        return None
    mlflow.set_tracking_uri(tracking.tracking_uri)
    tags = {TRIAL_TAGS["experiment"]: tracking.experiment_name, TRIAL_TAGS["key"]: trial.key,
            TRIAL_TAGS["configuration"]: trial.configuration.name, TRIAL_TAGS["seed"]: str(trial.seed)}
    if tracking.parent_run_id:
        tags["mlflow.parentRunId"] = tracking.parent_run_id
    return mlflow.start_run(experiment_id=tracking.experiment_id, run_name=trial.name, tags=tags)


def _log_trial(record: dict[str, Any], trial: Trial, training: dict[str, Any], policy: Any,
               cost_multiple: float) -> None:
    from hybrid_trader.evaluation.report import metric_key

    mlflow.log_params({"configuration": trial.configuration.name, "agent": trial.configuration.agent,
                       "seed": trial.seed, **_flat_params(trial.configuration.overrides, "override.")})
    metrics = {k: v for k, v in record["figures"].items() if np.isfinite(v)}
    # Also under the comparison table's names (<split>_<cost>x/<configuration>/<figure>), so the deflated
    # Sharpe ratio of later runs counts this configuration as a trial.
    for name, value in list(metrics.items()):
        split, _, figure = name.partition("_")
        if figure == "sharpe_daily":
            metrics[metric_key(split, cost_multiple, trial.configuration.name, figure)] = value
    mlflow.log_metrics(metrics)
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "trial.json").write_text(json.dumps({**record, "training": training}, default=str, indent=1))
        if policy is not None:
            policy.save(str(Path(folder, "policy.zip")))
        mlflow.log_artifacts(folder)
