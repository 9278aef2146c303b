"""The real project, run end to end in a subprocess under the fast `test` environment.

One full ``kedro run --env test`` per module fills a project folder (a copy of
the configuration in a temporary folder, so data, ``mlflow.db`` and ``mlruns/``
of the checkout are left alone). Tests that only read its outputs share it;
every test that reruns or changes something works on its own copy, so each
test passes alone (``-k``), in any order and in parallel.

Console output is checked with whitespace normalised and a wide terminal:
rich wraps log lines at the terminal width, and temporary paths vary in length.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.e2e
KEDRO = [sys.executable, "-m", "kedro"]
# Generous: a loaded 2-core machine runs the whole test configuration in ~2 minutes.
RUN_TIMEOUT_S = 1800
LAYERS = ("01_raw", "02_intermediate", "03_primary", "04_feature", "05_model_input", "06_models",
          "07_model_output", "08_reporting")


def _environment() -> dict[str, str]:
    return {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "1", "COLUMNS": "400"}


def _output(proc: subprocess.CompletedProcess) -> str:
    """stdout + stderr with every run of whitespace made one space (immune to line wrapping)."""
    return " ".join((proc.stdout + proc.stderr).split())


def _run(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([*KEDRO, *args], cwd=project, env=_environment(), capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _kedro(project: Path, *args: str) -> subprocess.CompletedProcess:
    return _run(project, *args)


def assert_clean_exit(proc: subprocess.CompletedProcess) -> None:
    """No abort at interpreter exit (``terminate called``), no worker stopped by force and nothing
    left to the resource tracker."""
    text = _output(proc)
    assert "terminate called" not in text
    assert "leaked semaphore" not in text and "resource_tracker" not in text, text[-2000:]
    assert "terminating it" not in text  # the advisor's worker stopped when asked, not by force


def assert_generated_files_are_ignored(project: Path) -> None:
    """Everything a run wrote (all but the copied configuration) is ignored by the checkout's git, so a
    clone stays clean after ``kedro run`` and ``kedro viz``."""
    if not (PROJECT_ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    written = sorted(str(path.relative_to(project)) for path in project.rglob("*")
                     if path.is_file() and path.parts[len(project.parts)] not in ("conf", "pyproject.toml"))
    assert written
    proc = subprocess.run(["git", "check-ignore", "--stdin", "--verbose", "--non-matching"], cwd=PROJECT_ROOT,
                          input="\n".join(written) + "\n", capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    not_ignored = [line.split("\t", 1)[1] for line in proc.stdout.splitlines() if line.startswith("::")]
    assert not not_ignored, not_ignored[:20]


def _new_project(root: Path) -> Path:
    shutil.copy(PROJECT_ROOT / "pyproject.toml", root)
    shutil.copytree(PROJECT_ROOT / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "conf" / "local").mkdir()
    (root / "src").mkdir()  # the package itself is imported from the installed project
    for layer in LAYERS:
        (root / "data" / layer).mkdir(parents=True)
    return root


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """A project after one full ``kedro run --env test``; read it, never change it."""
    root = _new_project(tmp_path_factory.mktemp("project"))
    return root, _run(root, "run", "--env", "test")


@pytest.fixture
def project(finished_run, tmp_path) -> Path:
    """A private copy of the finished project, free to rerun and change."""
    original, copy = finished_run[0], tmp_path / "project"
    shutil.copytree(original, copy, symlinks=True)
    for scheme in ("", "file://"):
        _repoint_tracking_store(copy / "mlflow.db", f"{scheme}{original}/", f"{scheme}{copy}/")
    return copy


def _repoint_tracking_store(database: Path, old_prefix: str, new_prefix: str) -> None:
    """MLflow stores absolute artifact paths; point the copy's at its own ``mlruns/`` so that it never
    writes into the shared run's folder."""
    with sqlite3.connect(database) as db:
        tables = [row[0] for row in db.execute("select name from sqlite_master where type = 'table'")]
        for table in tables:
            for column in db.execute(f"pragma table_info('{table}')").fetchall():
                name, kind = column[1], column[2].upper()
                if "CHAR" in kind or "TEXT" in kind:
                    db.execute(f'update "{table}" set "{name}" = ? || substr("{name}", ?) '
                               f'where substr("{name}", 1, ?) = ?',
                               (new_prefix, len(old_prefix) + 1, len(old_prefix), old_prefix))


def test_registry_lists_every_pipeline(tmp_path):
    out = _kedro(_new_project(tmp_path), "registry", "list").stdout
    for name in ("__default__", "data_ingestion", "feature_engineering", "data_split",
                 "phase2", "phase3", "evaluation", "experiments"):
        assert f"- {name}" in out


def test_kedro_run_test_env_writes_bars_report_and_mlflow_run(finished_run):
    project, proc = finished_run
    assert_clean_exit(proc)
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
    # The advisor's examples, its token adapter (conf/test: one pass over 8 prompts) and the skill report.
    examples = pd.read_parquet(project / "data/05_model_input/advisor_examples.parquet")
    day_splits = pd.read_parquet(project / "data/05_model_input/day_splits.parquet").set_index("session_date")
    assert examples["split"].tolist() == examples["session_date"].map(day_splits["split"]).tolist()
    assert set(examples["split"]) == {"train", "validation", "test"} and set(examples["label"]) <= {0, 1, 2}
    adapter = json.loads((project / "data/06_models/advisor_adapter.json").read_text())
    assert adapter["enabled"] and not adapter["reused"] and adapter["examples"] == 8
    assert adapter["config"]["top_layers"] == 1 and len(adapter["epoch_losses"]) == 1
    assert (project / adapter["adapter_path"] / "adapter_model.safetensors").exists()
    assert f"+{Path(adapter['adapter_path']).name}:" in advisor["model"]  # Phase 3 is advised by the fine-tuned model
    assert list(project.glob("mlruns/*/*/artifacts/advisor_adapter/adapter_model.safetensors"))
    skill = json.loads((project / "data/08_reporting/advisor_skill.json").read_text())
    assert skill["bootstrap_draws"] == 50
    for split in ("validation", "test"):
        assert skill["splits"][split]["bars"] == int((examples["split"] == split).sum())
        assert list(skill["splits"][split]["advisors"]) == ["always_buy", "logistic", "base_model", "fine_tuned"]
    assert "| fine_tuned |" in (project / "data/08_reporting/advisor_skill.md").read_text()
    assert list(project.glob("mlruns/*/*/artifacts/advisor_skill.md"))
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
    assert_generated_files_are_ignored(project)


def test_phase3_alone_reruns_training_and_fails_on_missed_targets_when_asked(project):
    (project / "data/08_reporting/phase3_health_report.md").unlink()
    proc = _run(project, "run", "--env", "test", "--pipelines=phase3", "--params=phase3.health.fail_on_miss=true",
                check=False)
    assert proc.returncode != 0 and "Phase 3 health targets missed" in _output(proc)
    assert_clean_exit(proc)
    # Nothing the adapter depends on changed: the fitted one is reused, not trained again.
    assert json.loads((project / "data/06_models/advisor_adapter.json").read_text())["reused"] is True
    assert (project / "data/08_reporting/phase3_health_report.md").exists()  # written before the check failed


def test_phase3_without_a_phase2_policy_says_to_run_phase2(project):
    (project / "data/06_models/phase2_best_policy.zip").unlink()
    proc = _run(project, "run", "--env", "test", "--pipeline=phase3", check=False)
    assert proc.returncode != 0 and "run `kedro run --pipelines=phase2` first" in _output(proc)


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
    proc = subprocess.run([sys.executable, str(script)], cwd=project, env=_environment(), capture_output=True,
                          text=True, timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "TEST ROWS 28 ['action_distribution', 'end_reasons', 'equity_curves', 'phase3_training_curves']" in proc.stdout


def test_kedro_viz_build_shows_the_phase3_nodes_in_headless_chromium(project):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (`make test` installs it)")
    _kedro(project, "viz", "build")
    build = project / "build"
    assert (build / "index.html").exists()
    # Port 0: the server binds a free port itself and prints it once it listens (no probe-then-bind race).
    server = subprocess.Popen([sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1",
                               "--directory", str(build)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True)
    browser = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=20000",
               "--window-size=1600,1000"]
    try:
        listening = re.search(r"port (\d+)", server.stdout.readline())
        assert listening, "the HTTP server did not start"
        url = f"http://127.0.0.1:{listening.group(1)}/"
        dom = subprocess.run([*browser, "--dump-dom", url], capture_output=True, text=True,
                             timeout=RUN_TIMEOUT_S).stdout
        screenshot = project / "data/08_reporting/kedro_viz.png"
        subprocess.run([*browser, f"--screenshot={screenshot}", url], capture_output=True, timeout=RUN_TIMEOUT_S)
    finally:
        server.terminate()
        server.wait(60)
    # Rendered graph nodes carry their names as SVG text.
    for node in ("prepare_advisor", "train_phase3_policy", "evaluate_phase3_policy", "register_phase3_policy",
                 "write_phase3_health_report", "backtest_agents"):
        assert re.search(rf'pipeline-node__text[^>]*>{node}<', dom), node
    assert screenshot.stat().st_size > 10_000
    assert_generated_files_are_ignored(project)
