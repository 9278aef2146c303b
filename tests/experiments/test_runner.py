"""The Ray runner on an embedded Ray: shared stages, failures recorded, resume from MLflow.

The trials here are cheap stand-ins for training (a real one runs in
tests/experiments/test_trials.py, real sweeps in tests/pipelines/test_experiments_cluster.py and
test_team_tracking.py); everything else (Ray tasks, retries, MLflow child runs, resume) is the real code.
"""

from __future__ import annotations

import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from hybrid_trader.experiments.runner import completed_trials, connect_ray, run_trials
from hybrid_trader.experiments.spec import ExperimentSpec
from hybrid_trader.experiments.trials import Tracking, TrialData, run_trial

ray = pytest.importorskip("ray")
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers need not import the tests package

BASE = {"environment": {"engine": {"contracts": 3}}, "phase2": {"ppo": {"seed": 7}},
        "phase3": {"ppo": {"seed": 11}, "use_advisor": True, "llm_weight": 0.2}, "advisor": {}, "evaluation": {}}
CONFIGURATIONS = {"phase2": {"agent": "phase2"},
                  "hybrid": {"agent": "phase3", "baseline": "phase2"}}


def fake_stage(stage, data, work_dir):
    """Counts its calls in ``work_dir``; 'trains' a policy worth ``10 x seed``."""
    Path(work_dir, f"stage-{stage.seed}-{len(list(Path(work_dir).glob(f'stage-{stage.seed}-*')))}").touch()
    return {"model": None, "summary": {"value": 10.0 * stage.seed}}


def fake_execute(trial, data, stage_result, splits, cost_multiple, work_dir):
    """Fails for configuration 'hybrid' at seed 2 while ``work_dir/break`` exists."""
    Path(work_dir, f"trial-{trial.configuration.name}-{trial.seed}-{len(list(Path(work_dir).glob('trial-*')))}").touch()
    if trial.configuration.name == "hybrid" and trial.seed == 2 and Path(work_dir, "break").exists():
        raise RuntimeError("the advisor is unavailable")
    bonus = 5.0 if trial.configuration.agent == "phase3" else 0.0
    value = stage_result["summary"]["value"] + bonus
    sessions = pd.DataFrame({"split": ["test"], "session_date": ["2024-01-02"], "net_pnl": [value],
                             "end_reason": ["flat_deadline"], "trades": [1], "steps": [10]})
    return sessions, {"test_mean_daily_pnl": value}, {}, None


def fake_trial(*args, **kwargs):
    return run_trial(*args, execute=fake_execute, **kwargs)


@pytest.fixture(scope="module")
def embedded_ray():
    started = connect_ray(num_cpus=2)
    yield
    if started:
        ray.shutdown()


@pytest.fixture()
def tracking(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    experiment_id = mlflow.create_experiment("sweeps", artifact_location=(tmp_path / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=experiment_id) as parent:
        yield Tracking(uri, experiment_id, parent.info.run_id, "sweeps")
    mlflow.set_tracking_uri(previous)


def run(tracking, work_dir, seeds=(1, 2)):
    spec = ExperimentSpec.from_params({"name": "demo", "seeds": list(seeds), "configurations": CONFIGURATIONS},
                                      BASE)
    stages, trials = spec.trials(BASE, "data")
    data = TrialData(pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), {}, {}, None, {})
    return run_trials(stages, trials, data, tracking, experiment="demo", splits=("test",), cost_multiple=1.0,
                      work_dir=str(work_dir), progress_bar=False, trial_fn=fake_trial, stage_fn=fake_stage)


def test_trials_run_as_child_runs_a_failure_is_recorded_and_a_rerun_resumes(embedded_ray, tracking, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "break").touch()
    records = run(tracking, work)
    assert [(r["configuration"], r["seed"], r["status"]) for r in records] == [
        ("phase2", 1, "finished"), ("hybrid", 1, "finished"), ("phase2", 2, "finished"), ("hybrid", 2, "failed")]
    assert "the advisor is unavailable" in records[3]["error"]
    assert [r["figures"].get("test_mean_daily_pnl") for r in records[:3]] == [10.0, 15.0, 20.0]
    assert len(list(work.glob("stage-*"))) == 2  # one Phase 2 stage per seed, shared by its trials
    client = mlflow.MlflowClient(tracking.tracking_uri)
    children = client.search_runs([tracking.experiment_id],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{tracking.parent_run_id}'")
    assert sorted((r.data.tags["hybrid_trader.configuration"], r.info.status) for r in children) == [
        ("hybrid", "FAILED"), ("hybrid", "FINISHED"), ("phase2", "FINISHED"), ("phase2", "FINISHED")]
    assert set(completed_trials(tracking, "demo")) == {r["key"] for r in records[:3]}

    # The rerun runs only the failed trial (and the stage it needs), and reads the others back.
    (work / "break").unlink()
    before = {p.name for p in work.glob("trial-*")}
    again = run(tracking, work)
    assert [r["status"] for r in again] == ["finished"] * 4
    assert [r.get("resumed", False) for r in again] == [True, True, True, False]
    assert again[3]["figures"]["test_mean_daily_pnl"] == 25.0 and again[0]["figures"] == records[0]["figures"]
    new = {p.name.rsplit("-", 1)[0] for p in work.glob("trial-*")} - {p.rsplit("-", 1)[0] for p in before}
    assert new == set() and len(list(work.glob("trial-*"))) == len(before) + 1
    assert len(list(work.glob("stage-2-*"))) == 2 and len(list(work.glob("stage-1-*"))) == 1


def test_without_tracking_every_trial_runs_and_nothing_is_resumed(embedded_ray, tmp_path):
    records = run(Tracking(), tmp_path, seeds=(3,))
    assert [(r["configuration"], r["status"], r["run_id"]) for r in records] == [
        ("phase2", "finished", None), ("hybrid", "finished", None)]
