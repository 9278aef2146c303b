"""Ctrl-C during Phase 2 training: a checkpoint, an MLflow run marked KILLED, a clean exit."""

import os
import signal
import subprocess
import sys
import time

from mlflow.tracking import MlflowClient

from tests.conftest import PROJECT_ROOT


def test_sigint_leaves_a_checkpoint_and_a_killed_run(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    work = tmp_path / "work"
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "tests.agents.interrupt_run", uri, str(work)],
                            cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 240
    while not list((work / "checkpoints").glob("checkpoint_*.json")):
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        assert time.time() < deadline, "training never wrote its first checkpoint"
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output[-3000:]
    assert "Traceback" not in output and "terminate called" not in output
    assert list((work / "checkpoints").glob("interrupted_*.zip"))
    assert list((work / "checkpoints").glob("interrupted_*.json"))
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("interrupt")
    runs = client.search_runs([experiment.experiment_id])
    assert [run.info.status for run in runs] == ["KILLED"]
