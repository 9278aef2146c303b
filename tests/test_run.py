"""The real project, run end to end in a subprocess under the fast `test` environment.

Each test works on a copy of the project's configuration in a temporary folder
so that data, ``mlflow.db`` and ``mlruns/`` of the checkout are left alone.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.e2e
KEDRO = [sys.executable, "-m", "kedro"]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("project")
    shutil.copy(PROJECT_ROOT / "pyproject.toml", root)
    shutil.copytree(PROJECT_ROOT / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "conf" / "local").mkdir()
    (root / "src").mkdir()  # the package itself is imported from the installed project
    for layer in ("01_raw", "02_intermediate", "03_primary", "04_feature", "05_model_input", "06_models",
                  "07_model_output", "08_reporting"):
        (root / "data" / layer).mkdir(parents=True)
    return root


def _kedro(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([*KEDRO, *args], cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_registry_lists_every_pipeline(project):
    out = _kedro(project, "registry", "list").stdout
    for name in ("__default__", "data_ingestion", "feature_engineering", "data_split",
                 "phase2", "phase3", "evaluation"):
        assert f"- {name}" in out


def test_kedro_run_test_env_writes_bars_report_and_mlflow_run(project):
    proc = _kedro(project, "run", "--env", "test")
    assert "terminate called" not in proc.stdout + proc.stderr  # the first attempt aborted on exit
    bars = pd.read_parquet(project / "data/02_intermediate/clean_bars.parquet")
    assert len(bars) == 6 * 510
    report = json.loads((project / "data/08_reporting/data_quality_report.json").read_text())
    assert report["rows_out"] == len(bars) and report["sessions"]["kept"] == 6
    with sqlite3.connect(project / "mlflow.db") as db:
        statuses = [row[0] for row in db.execute("select status from runs")]
    assert statuses and set(statuses) == {"FINISHED"}
    assert list(project.glob("mlruns/*/*/artifacts/data_quality_report.json"))
    assert list(project.glob("mlruns/*/*/artifacts/phase2_policy.zip"))
    registration = json.loads((project / "data/07_model_output/phase2_registration.json").read_text())
    assert registration["name"] == "phase2_policy" and registration["version"] == "1"
    report = json.loads((project / "data/07_model_output/phase2_validation_report.json").read_text())
    assert report["flat"]["total_net_pnl"] == 0.0 and report["phase2"]["sessions"] == 1
    advisor = json.loads((project / "data/08_reporting/advisor_report.json").read_text())
    assert advisor["model"].startswith("SmolLM2-135M-Instruct") and advisor["scored"] == 4
    assert (project / "data/06_models/llm_advice_cache.parquet").exists()
    responses = pd.read_parquet(project / "data/08_reporting/advisor_responses.parquet")
    assert len(responses) == 4 and not responses["cache_hit"].any()
    # Phase 3: trained, evaluated, registered, and its health report written (a tiny run misses targets).
    summary = json.loads((project / "data/06_models/phase3_training_summary.json").read_text())
    assert summary["num_timesteps"] == 512 and summary["clean_exit"] is True
    assert summary["warmup"]["unfrozen_at"] == 128 and summary["telemetry"]["queries"] > 0
    health = json.loads((project / "data/08_reporting/phase3_health_report.json").read_text())
    assert [row["metric"] for row in health["rows"]][:3] == ["approx_kl", "clip_fraction", "explained_variance"]
    assert next(r for r in health["rows"] if r["metric"] == "clean_exit")["passed"]
    assert "| clean_exit | no | yes | yes | PASS |" in (project / "data/08_reporting/phase3_health_report.md").read_text()
    assert json.loads((project / "data/07_model_output/phase3_registration.json").read_text())["version"] == "1"
    assert list(project.glob("mlruns/*/*/artifacts/phase3_health_report.md"))


def test_phase3_alone_reruns_training_and_fails_on_missed_targets_when_asked(project):
    proc = subprocess.run([*KEDRO, "run", "--env", "test", "--pipelines=phase3",
                           "--params=phase3.health.fail_on_miss=true"], cwd=project, capture_output=True, text=True,
                          env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert proc.returncode != 0 and "Phase 3 health targets missed" in proc.stdout + proc.stderr
    assert "terminate called" not in proc.stdout + proc.stderr
    assert (project / "data/08_reporting/phase3_health_report.md").exists()  # written before the check failed


def test_phase3_without_a_phase2_policy_says_to_run_phase2(tmp_path, project):
    (project / "data/06_models/phase2_best_policy.zip").rename(tmp_path / "kept.zip")
    try:
        proc = subprocess.run([*KEDRO, "run", "--env", "test", "--pipeline=phase3"], cwd=project,
                              capture_output=True, text=True, timeout=300,
                              env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "1"})
    finally:
        (tmp_path / "kept.zip").rename(project / "data/06_models/phase2_best_policy.zip")
    assert proc.returncode != 0 and "run `kedro run --pipelines=phase2` first" in proc.stdout + proc.stderr


def test_evaluation_node_reruns_alone_from_the_stored_policy(project):
    report_path = project / "data/07_model_output/phase2_validation_report.json"
    before = json.loads(report_path.read_text())
    report_path.unlink()
    _kedro(project, "run", "--env", "test", "--nodes=evaluate_phase2_policy")
    assert json.loads(report_path.read_text()) == before  # deterministic, from the stored policy


def test_feature_and_split_pipelines_rerun_from_stored_inputs(project):
    features = project / "data/04_feature/bar_features.parquet"
    features.unlink()
    _kedro(project, "run", "--env", "test", "--pipelines=feature_engineering")
    assert features.exists()
    _kedro(project, "run", "--env", "test", "--pipeline=data_split")  # the older flag still works
    splits = pd.read_parquet(project / "data/05_model_input/day_splits.parquet")
    assert sorted(splits["split"].unique()) == ["test", "train", "validation"]
    assert (project / "data/08_reporting/split_summary.md").exists()
    scaler_versions = list((project / "data/05_model_input/feature_scaler.json").iterdir())
    assert len(scaler_versions) == 2  # one version per run that fitted it
    _kedro(project, "run", "--env", "test", "--nodes=scale_features")


def test_data_ingestion_pipeline_alone(project):
    report_path = project / "data/08_reporting/data_quality_report.json"
    report_path.unlink(missing_ok=True)
    _kedro(project, "run", "--env", "test", "--pipelines", "data_ingestion")
    assert report_path.exists()
    assert (project / "data/02_intermediate/trading_sessions.parquet").exists()


def test_the_results_notebook_runs_on_the_last_runs_outputs(project):
    notebook = json.loads((PROJECT_ROOT / "notebooks/results.ipynb").read_text())
    code = "\n".join("".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code")
    script = project / "notebook_cells.py"
    script.write_text(code + "\nprint('TEST ROWS', len(rows), sorted(figures))\n")
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"}
    proc = subprocess.run([sys.executable, str(script)], cwd=project, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "TEST ROWS 28 ['action_distribution', 'end_reasons', 'equity_curves', 'phase3_training_curves']" in proc.stdout


def test_kedro_viz_build_shows_the_phase3_nodes_in_headless_chromium(project):
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed (make test installs it)"
    _kedro(project, "viz", "build")
    build = project / "build"
    assert (build / "index.html").exists()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                               "--directory", str(build)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    browser = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=20000",
               "--window-size=1600,1000"]
    url = f"http://127.0.0.1:{port}/"
    try:
        time.sleep(1)
        dom = subprocess.run([*browser, "--dump-dom", url], capture_output=True, text=True, timeout=180).stdout
        screenshot = project / "data/08_reporting/kedro_viz.png"
        subprocess.run([*browser, f"--screenshot={screenshot}", url], capture_output=True, timeout=180)
    finally:
        server.terminate()
        server.wait(10)
    # Rendered graph nodes carry their names as SVG text.
    for node in ("prepare_advisor", "train_phase3_policy", "evaluate_phase3_policy", "register_phase3_policy",
                 "write_phase3_health_report", "backtest_agents"):
        assert re.search(rf'pipeline-node__text[^>]*>{node}<', dom), node
    assert screenshot.stat().st_size > 10_000
