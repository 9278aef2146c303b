"""Tracking for a team: conf/team sends runs and the model registry to PostgreSQL, artifacts to a
shared location (docs/team.md), while SQLite stays the default.

The end-to-end test runs the real project (``kedro run --env test``, the pipelines up to Phase 2's
registration) with conf/team's MLflow settings against a real PostgreSQL server started for the
session (``postgres_server``, tests/pg_server.py), then reads everything back as a teammate would: a
client on the PostgreSQL URI, and the registered model loaded in a fresh process from an empty folder.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import yaml
from kedro.config import OmegaConfigLoader
from kedro_mlflow.config.kedro_mlflow_config import KedroMlflowConfig
from mlflow.tracking import MlflowClient

from hybrid_trader.env.actions import Action
from hybrid_trader.settings import CONFIG_LOADER_ARGS
from tests.conftest import PROJECT_ROOT
from tests.pg_server import PostgresServer, running_postgres
from tests.test_run import KEDRO, RUN_TIMEOUT_S, _environment, _new_project, assert_clean_exit

URI_VARIABLE, ARTIFACTS_VARIABLE = "HYBRID_TRADER_MLFLOW_URI", "HYBRID_TRADER_ARTIFACTS"
# The smallest pipeline set that registers phase2_policy: 25 s here, where the whole `--env test` run
# (Phase 3's advisor and the evaluation too) took 241 s on 2 busy cores and tracks nothing of another kind.
PIPELINES = "data_ingestion,feature_engineering,data_split,phase2"
SWEEP_EXPERIMENT = "hybrid_trader_sweeps"


def _mlflow_conf(project: Path, env: str) -> dict:
    """conf/<env>/mlflow.yml over conf/base, as the project's settings load it."""
    loader = OmegaConfigLoader(conf_source=str(project / "conf"), env=env, **CONFIG_LOADER_ARGS)
    loader.config_patterns["mlflow"] = ["mlflow*", "mlflow*/**", "**/mlflow*"]  # as kedro-mlflow adds it
    return loader["mlflow"]


# --- conf/team ---------------------------------------------------------------------------------------

def test_team_environment_reads_the_store_and_the_artifact_location_from_the_environment(monkeypatch):
    monkeypatch.setenv(URI_VARIABLE, "postgresql+psycopg://alice:secret@db.internal:5433/mlflow")
    monkeypatch.setenv(ARTIFACTS_VARIABLE, "/mnt/shared/mlartifacts")
    conf = KedroMlflowConfig.model_validate(_mlflow_conf(PROJECT_ROOT, "team"))  # keys kedro-mlflow knows
    assert conf.server.mlflow_tracking_uri == "postgresql+psycopg://alice:secret@db.internal:5433/mlflow"
    assert conf.server.mlflow_registry_uri is None  # the registry lives in the same database
    assert conf.tracking.experiment.create_experiment_kwargs.artifact_location == "/mnt/shared/mlartifacts"
    # Everything else is base's (soft merge).
    assert conf.tracking.experiment.name == "hybrid_trader"
    assert conf.tracking.params.dict_params.flatten is True and conf.tracking.run.nested is True


def test_team_environment_without_an_artifact_location_leaves_it_to_the_store(monkeypatch):
    monkeypatch.setenv(URI_VARIABLE, "http://mlflow.internal:5000")
    monkeypatch.delenv(ARTIFACTS_VARIABLE, raising=False)
    conf = _mlflow_conf(PROJECT_ROOT, "team")
    assert conf["server"]["mlflow_tracking_uri"] == "http://mlflow.internal:5000"
    assert conf["tracking"]["experiment"]["create_experiment_kwargs"]["artifact_location"] is None


def test_team_environment_without_a_uri_names_the_missing_variable(monkeypatch):
    monkeypatch.delenv(URI_VARIABLE, raising=False)
    with pytest.raises(Exception, match=f"Environment variable '{URI_VARIABLE}' not found"):
        _mlflow_conf(PROJECT_ROOT, "team")


def test_default_and_test_environments_stay_on_sqlite_whatever_the_team_variables(monkeypatch, tmp_path):
    monkeypatch.setenv(URI_VARIABLE, "postgresql+psycopg://alice@db.internal/mlflow")
    monkeypatch.setenv(ARTIFACTS_VARIABLE, "/mnt/shared/mlartifacts")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql+psycopg://alice@db.internal/mlflow")
    project = _new_project(tmp_path)  # the committed configuration with an empty conf/local
    for env in ("local", "test", "planted"):
        conf = _mlflow_conf(project, env)
        assert conf["server"]["mlflow_tracking_uri"] == "sqlite:///mlflow.db", env
        assert conf["tracking"]["experiment"]["create_experiment_kwargs"]["artifact_location"] is None, env


# --- the throwaway server ------------------------------------------------------------------------------

def test_the_test_server_listens_on_localhost_only_and_is_gone_after_the_block(tmp_path):
    with running_postgres(tmp_path) as server:
        with psycopg.connect(server.dsn) as connection:
            settings = dict(connection.execute(
                "select name, setting from pg_settings where name in "
                "('listen_addresses', 'unix_socket_directories', 'port', 'fsync')").fetchall())
            database = connection.execute("select current_database()").fetchone()[0]
        assert settings == {"listen_addresses": "127.0.0.1", "unix_socket_directories": str(server.socket_dir),
                            "port": str(server.port), "fsync": "off"}
        assert database == "mlflow" and server.uri == f"postgresql+psycopg://hybrid_trader@127.0.0.1:{server.port}/mlflow"
        assert server.create_database("other") == server.uri.replace("/mlflow", "/other")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(server.dsn, connect_timeout=5)
    assert not server.data_dir.exists()


# --- end to end ----------------------------------------------------------------------------------------

def _team_project(root: Path, experiment: str | None = None) -> Path:
    """A project on the test configuration with conf/team's MLflow settings (and, if given, its own
    MLflow experiment)."""
    root.mkdir()
    project = _new_project(root)
    assert not list((project / "conf/test").glob("mlflow*"))  # nothing of the test env's to override
    for path in (PROJECT_ROOT / "conf/team").glob("*.yml"):
        shutil.copy(path, project / "conf/test")
    if experiment:
        settings = yaml.safe_load((project / "conf/test/mlflow.yml").read_text())
        settings["tracking"]["experiment"]["name"] = experiment
        (project / "conf/test/mlflow.yml").write_text(yaml.safe_dump(settings))
    return project


@pytest.fixture(scope="module")
def team_run(postgres_server: PostgresServer, tmp_path_factory):
    """The test configuration with conf/team's MLflow settings, run once against its own database,
    while an experiment (one seed, three configurations, on an embedded Ray) logs its trials into the
    same database from its own project at the same time."""
    root = tmp_path_factory.mktemp("team")
    project = _team_project(root / "project")
    sweep = _team_project(root / "sweep", experiment=SWEEP_EXPERIMENT)
    (sweep / "conf/test/parameters_experiments.yml").write_text(
        "experiments:\n  name: team_sweep\n  seeds: [1]\n  statistics: {n_resamples: 200}\n  progress_bar: false\n")
    uri = postgres_server.create_database("team_tracking")
    artifacts = root / "shared-artifacts"  # outside the project, as a shared mount would be
    # The store comes from conf/team alone, never from a tracking uri left in this process's environment.
    env = {key: value for key, value in _environment().items() if not key.startswith("MLFLOW_")}
    env.update({URI_VARIABLE: uri, ARTIFACTS_VARIABLE: str(artifacts)})
    # A team's store is set up once (MLflow creates its tables on the first connection); two first
    # connections at the same moment would both try to create them.
    MlflowClient(tracking_uri=uri).search_experiments()
    with open(root / "sweep.log", "w") as log:
        sweeping = subprocess.Popen([*KEDRO, "run", "--env", "test", "--pipelines=experiments"], cwd=sweep, env=env,
                                    stdout=log, stderr=subprocess.STDOUT)
        try:
            proc = subprocess.run([*KEDRO, "run", "--env", "test", f"--pipelines={PIPELINES}"], cwd=project, env=env,
                                  capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
            swept = sweeping.wait(timeout=RUN_TIMEOUT_S)
        finally:
            if sweeping.poll() is None:
                sweeping.kill()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert swept == 0, (root / "sweep.log").read_text()[-4000:]
    return {"project": project, "sweep": sweep, "uri": uri, "artifacts": artifacts, "proc": proc,
            "server": postgres_server}


@pytest.mark.e2e
def test_team_run_tracks_run_params_and_metrics_in_postgresql(team_run):
    project, uri, artifacts = team_run["project"], team_run["uri"], team_run["artifacts"]
    assert_clean_exit(team_run["proc"])
    assert not (project / "mlflow.db").exists() and not (project / "mlruns").exists()  # nothing went local
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("hybrid_trader")
    assert experiment.artifact_location == artifacts.as_uri()
    [run] = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert set(run.info.run_name.split("+")) == set(PIPELINES.split(","))  # named after its pipelines
    assert run.info.artifact_uri == f"{artifacts.as_uri()}/{run.info.run_id}/artifacts"
    # Parameters flat, as conf/test sets them.
    params = run.data.params
    assert params["phase2.ppo.total_timesteps"] == "512" and params["phase2.ppo.n_steps"] == "64"
    assert params["phase2.registered_model_name"] == "phase2_policy"
    # The validation metrics are the report's; flat never trades, so it makes exactly nothing.
    report = json.loads((project / "data/07_model_output/phase2_validation_report.json").read_text())
    metrics = run.data.metrics
    assert metrics["phase2_validation_metrics.validation/phase2_mean_net_pnl"] == pytest.approx(
        report["phase2"]["mean_net_pnl"])
    assert metrics["phase2_validation_metrics.validation/flat_total_net_pnl"] == 0.0
    # Training histories: 4 iterations of 2 envs x 64 steps; SB3 logs an update's values when the next
    # iteration's rollout ends (steps 256, 384, 512) and the last update's at the end of training (512).
    history = client.get_metric_history(run.info.run_id, "train/approx_kl")
    assert sorted(m.step for m in history) == [256, 384, 512, 512]
    # The artifacts lie in the shared location.
    stored = artifacts / run.info.run_id / "artifacts"
    for name in ("data_quality_report.json", "phase2_policy.zip", "phase2_validation_report.json"):
        assert (stored / name).is_file(), name
    # And the rows in PostgreSQL itself.
    dsn = team_run["server"].dsn_for("team_tracking")
    with psycopg.connect(dsn) as connection:
        assert connection.execute("select count(*) from runs where experiment_id = %s",
                                  (int(experiment.experiment_id),)).fetchone()[0] == 1
        assert connection.execute("select count(*) from params where run_uuid = %s",
                                  (run.info.run_id,)).fetchone()[0] == len(params)
        assert connection.execute("select name from registered_models").fetchall() == [("phase2_policy",)]


@pytest.mark.e2e
def test_team_run_registers_phase2_policy_loadable_by_a_teammate_from_the_shared_location(team_run, tmp_path):
    project, uri, artifacts = team_run["project"], team_run["uri"], team_run["artifacts"]
    client = MlflowClient(tracking_uri=uri)
    version = client.get_model_version_by_alias("phase2_policy", "newest")
    [run] = client.search_runs([client.get_experiment_by_name("hybrid_trader").experiment_id])
    assert str(version.version) == "1" and version.run_id == run.info.run_id
    registration = json.loads((project / "data/07_model_output/phase2_registration.json").read_text())
    assert registration["version"] == "1" and sorted(version.aliases) == sorted(registration["aliases"])
    report = json.loads((project / "data/07_model_output/phase2_validation_report.json").read_text())
    assert version.tags["validation_mean_net_pnl"] == str(report["phase2"]["mean_net_pnl"])
    assert version.source.startswith("models:/m-")  # a logged model, whose files lie in its own place
    model_location = client.get_logged_model(version.source.removeprefix("models:/")).artifact_location
    assert model_location.startswith(artifacts.as_uri() + "/")
    assert (Path(model_location.removeprefix("file://")) / "MLmodel").is_file()
    # A fresh process in an empty folder, knowing only the store's URI, loads and calls the version.
    script = ("import json, mlflow\n"
              "model = mlflow.pyfunc.load_model('models:/phase2_policy@newest')\n"
              "answer = model.predict(model.input_example)\n"
              "print(json.dumps({'rows': len(answer), 'action': int(answer['action'].iloc[0]),"
              " 'action_name': str(answer['action_name'].iloc[0])}))\n")
    env = {key: value for key, value in _environment().items() if not key.startswith("MLFLOW_")}
    env["MLFLOW_TRACKING_URI"] = uri
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    answer = json.loads(proc.stdout.strip().splitlines()[-1])
    assert answer["rows"] == 1 and answer["action_name"] == Action(answer["action"]).name
    assert not list(tmp_path.iterdir())  # it read nothing from, and wrote nothing to, a local store


@pytest.mark.e2e
def test_ray_trials_log_child_runs_into_the_same_postgresql_store(team_run):
    sweep, uri, artifacts = team_run["sweep"], team_run["uri"], team_run["artifacts"]
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(SWEEP_EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id])
    [parent] = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.info.status == "FINISHED" and len(runs) == 1 + len(children)
    assert sorted(r.info.run_name for r in children) == ["hybrid/seed1", "phase2/seed1", "rl_only/seed1"]
    assert {r.info.status for r in children} == {"FINISHED"}
    records = json.loads((sweep / "data/07_model_output/experiment_trials.json").read_text())
    by_run = {r["run_id"]: r for r in records}
    for child in children:  # each trial's figures and record are in the shared store
        record = by_run[child.info.run_id]
        assert child.data.metrics["test_mean_daily_pnl"] == pytest.approx(record["figures"]["test_mean_daily_pnl"])
        assert (artifacts / child.info.run_id / "artifacts" / "trial.json").is_file()
    # Both projects' runs are in the one database.
    assert {e.name for e in client.search_experiments()} >= {"hybrid_trader", SWEEP_EXPERIMENT}
