"""Run an experiment's trials as Ray tasks: embedded on this machine or on a Ray cluster.

* Ray: with an address (``experiments.ray_address`` or ``RAY_ADDRESS``) the run joins
  that cluster; without one it starts Ray embedded with this machine's cores, bound to
  127.0.0.1, without a dashboard, and shuts it down afterwards.
* Each seed's Phase 2 training is one task (a *stage*); the trials that need it are tasks
  that wait for it, so Phase 2 vs RL-only vs hybrid at a seed share one Phase 2 policy.
* A task whose worker dies (killed, out of memory, a lost node) is retried by Ray
  (``max_retries``); a trial that raises, or that runs out of retries, is recorded as
  ``failed`` with its error, and the other trials go on.
* Resume: trials whose key already has a finished MLflow run (tagged with the
  experiment's name and the key) are not run again; their records are read back
  from that run.
* A progress bar counts trials done, running (reported by the trials themselves to a
  small actor, ``progress:<experiment>:<parent run id>``) and failed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
import time
import uuid
from typing import Any, Callable, Sequence

import mlflow
from tqdm.auto import tqdm

from hybrid_trader.experiments.spec import Stage, Trial
from hybrid_trader.experiments.trials import (
    TRIAL_TAGS, Tracking, TrialData, run_trial, train_stage, trial_identity,
)

__all__ = ["connect_ray", "ProgressBoard", "completed_trials", "run_trials", "close_orphan_runs",
           "BOARD_NAMESPACE", "board_name"]

logger = logging.getLogger(__name__)
BOARD_NAMESPACE = "hybrid_trader"


def board_name(experiment: str, run: str) -> str:
    """The name of one run of an experiment's progress actor (in namespace :data:`BOARD_NAMESPACE`);
    ``run`` keeps two drivers of the same experiment on one cluster apart."""
    return f"progress:{experiment}:{run}"


def connect_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``), else start Ray embedded on this machine.

    Returns:
        ``True`` when this call started Ray (and the caller should shut it down).
    """
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    common = {"namespace": BOARD_NAMESPACE, "log_to_driver": True, "configure_logging": False}
    if address:
        ray.init(address=address, **common)
        logger.info("Joined the Ray cluster at %s: %s", address, ray.cluster_resources())
    else:
        # "local": a new instance, never the last cluster `ray start` left on this machine (ray.init's default).
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1",
                 **common)
        logger.info("Started Ray on this machine: %s", ray.cluster_resources())
    return True


class ProgressBoard:
    """Which trials are running where (a Ray actor the trials report to; readable by anyone on the cluster)."""

    def __init__(self) -> None:
        self._running: dict[str, dict[str, Any]] = {}
        self._starts: dict[str, int] = {}

    def started(self, key: str, pid: int, node_id: str, name: str = "") -> None:
        self._running[key] = {"pid": pid, "node_id": node_id, "name": name}
        self._starts[key] = self._starts.get(key, 0) + 1

    def finished(self, key: str) -> None:
        self._running.pop(key, None)

    def running(self) -> dict[str, dict[str, Any]]:
        return dict(self._running)

    def starts(self) -> dict[str, int]:
        """How many times each trial started (more than once: retried after its worker died)."""
        return dict(self._starts)


def completed_trials(tracking: Tracking, experiment: str,
                     keys: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Records of this experiment's finished trials in MLflow, by trial key (the newest run per key;
    only ``keys``, when given)."""
    if not tracking.enabled:
        return {}
    mlflow.set_tracking_uri(tracking.tracking_uri)
    runs = mlflow.search_runs(
        experiment_ids=[tracking.experiment_id], output_format="list", order_by=["attributes.start_time DESC"],
        filter_string=f"tags.`{TRIAL_TAGS['experiment']}` = '{experiment}' and attributes.status = 'FINISHED'")
    records: dict[str, dict[str, Any]] = {}
    for run in runs:
        key = run.data.tags.get(TRIAL_TAGS["key"])
        if not key or key in records or (keys is not None and key not in keys):
            continue
        with tempfile.TemporaryDirectory() as folder:
            try:
                path = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="trial.json",
                                                           dst_path=folder)
            except Exception as error:  # a run without its record cannot be reused: run the trial again
                logger.warning("Trial run %s has no readable trial.json (%s); it runs again", run.info.run_id, error)
                continue
            with open(path) as handle:
                record = json.load(handle)
        record.pop("training", None)
        records[key] = {**record, "resumed": True}
    return records


def close_orphan_runs(tracking: Tracking, experiment: str) -> int:
    """Mark this experiment's trial runs still RUNNING under the parent run as FAILED (their worker
    died and the trial was retried or given up); returns how many."""
    if not (tracking.enabled and tracking.parent_run_id):
        return 0
    client = mlflow.MlflowClient(tracking.tracking_uri)
    runs = client.search_runs([tracking.experiment_id], filter_string=(
        f"tags.`{TRIAL_TAGS['experiment']}` = '{experiment}' and attributes.status = 'RUNNING' "
        f"and tags.`mlflow.parentRunId` = '{tracking.parent_run_id}'"))
    for run in runs:
        client.set_terminated(run.info.run_id, status="FAILED")
    return len(runs)


def _running_count(ray: Any, board: Any) -> int | str:
    """Trials running now, as the progress actor knows them; ``"?"`` if it was lost (its node died):
    progress is for show, the results come from the tasks."""
    try:
        return len(ray.get(board.running.remote(), timeout=10))
    except Exception:
        return "?"


def _failure(trial: Trial, error: BaseException) -> dict[str, Any]:
    return {**trial_identity(trial), "status": "failed",
            "error": f"{type(error).__name__}: {str(error).strip().splitlines()[-1] if str(error).strip() else ''}",
            "figures": {}, "sessions": []}


def run_trials(stages: Sequence[Stage], trials: Sequence[Trial], data: TrialData, tracking: Tracking, *,
               experiment: str, splits: tuple[str, ...], cost_multiple: float, work_dir: str,
               cpus_per_trial: float = 1.0, max_retries: int = 2, progress_bar: bool = True,
               trial_fn: Callable[..., dict[str, Any]] = run_trial,
               stage_fn: Callable[..., dict[str, Any]] = train_stage) -> list[dict[str, Any]]:
    """Run the trials not yet complete in MLflow on the connected Ray cluster; every trial's record.

    Records come back in ``trials`` order; a failed trial's record has ``status: failed`` and
    ``error``. ``trial_fn``/``stage_fn`` default to the real training (tests may pass cheaper ones).
    """
    import ray

    tracking = dataclasses.replace(tracking, experiment_name=experiment)  # the tag resume looks for
    done = completed_trials(tracking, experiment, {t.key for t in trials})
    pending = [t for t in trials if t.key not in done]
    if done:
        logger.info("Experiment %s: %d of %d trials already complete in MLflow; running %d", experiment,
                    len(trials) - len(pending), len(trials), len(pending))
    records: dict[str, dict[str, Any]] = {t.key: done[t.key] for t in trials if t.key in done}
    if pending:
        records.update(_run_pending(stages, pending, data, tracking, experiment, splits, cost_multiple, work_dir,
                                    cpus_per_trial, max_retries, progress_bar, trial_fn, stage_fn, ray))
    orphans = close_orphan_runs(tracking, experiment)
    if orphans:
        logger.warning("Experiment %s: %d trial run(s) left RUNNING by a dead worker marked FAILED", experiment,
                       orphans)
    return [records[t.key] for t in trials]


def _run_pending(stages, pending, data, tracking, experiment, splits, cost_multiple, work_dir, cpus_per_trial,
                 max_retries, progress_bar, trial_fn, stage_fn, ray) -> dict[str, dict[str, Any]]:
    run = tracking.parent_run_id or uuid.uuid4().hex
    board = ray.remote(num_cpus=0)(ProgressBoard).options(
        name=board_name(experiment, run), namespace=BOARD_NAMESPACE, get_if_exists=True).remote()
    options = {"num_cpus": cpus_per_trial, "max_retries": max_retries, "retry_exceptions": False}
    remote_stage = ray.remote(stage_fn).options(**options)
    remote_trial = ray.remote(trial_fn).options(**options)
    data_ref = ray.put(data)
    needed = {t.stage_key for t in pending}
    stage_refs = {s.key: remote_stage.remote(s, data_ref, work_dir) for s in stages if s.key in needed}
    futures = {remote_trial.remote(t, data_ref, stage_refs[t.stage_key], tracking, splits, cost_multiple, work_dir,
                                   board): t for t in pending}
    records: dict[str, dict[str, Any]] = {}
    bar = tqdm(total=len(futures), desc=f"experiment {experiment}", unit="trial", disable=not progress_bar)
    started = time.perf_counter()
    try:
        waiting = list(futures)
        while waiting:
            ready, waiting = ray.wait(waiting, num_returns=1, timeout=2.0)
            for ref in ready:
                trial = futures[ref]
                try:
                    records[trial.key] = ray.get(ref)
                except Exception as error:  # the trial raised, or its worker died past its retries
                    logger.error("Trial %s failed: %s", trial.name, error)
                    records[trial.key] = _failure(trial, error)
                bar.update(1)
            failed = sum(r["status"] == "failed" for r in records.values())
            bar.set_postfix(running=_running_count(ray, board), failed=failed, refresh=True)
    finally:
        bar.close()
        try:
            ray.kill(board)
        except Exception:  # already gone with its node: nothing to stop
            pass
    logger.info("Experiment %s: %d trials in %.0f s (%d failed)", experiment, len(futures),
                time.perf_counter() - started, sum(r["status"] == "failed" for r in records.values()))
    return records
