"""Ctrl-C during Phase 2 training: a checkpoint, an MLflow run marked KILLED, a clean exit."""

import os
import signal
import subprocess
import sys
import time

from mlflow.tracking import MlflowClient

from tests.conftest import PROJECT_ROOT

# Generous limits for a loaded machine; each wait ends as soon as its event happens.
LIMIT_S = 1200


def _wait_for(condition, proc: subprocess.Popen, what: str, limit_s: float) -> None:
    """Poll for an event; the limit only stops a hung run (a loaded 2-core machine is slow, not stuck)."""
    deadline = time.monotonic() + limit_s
    while not condition():
        if proc.poll() is not None and not condition():
            raise AssertionError(f"the run exited (code {proc.returncode}) before {what}:\n"
                                 + proc.communicate()[0][-3000:])
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"no {what} within {limit_s:.0f} s:\n" + proc.communicate()[0][-3000:])
        time.sleep(0.5)


def test_sigint_leaves_a_checkpoint_and_a_killed_run(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    work = tmp_path / "work"
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "tests.agents.interrupt_run", uri, str(work)],
                            cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    checkpoints = work / "checkpoints"
    _wait_for(lambda: any(checkpoints.glob("checkpoint_*.json")), proc, "first checkpoint", LIMIT_S)
    proc.send_signal(signal.SIGINT)
    # The interrupted checkpoint's sidecar is written last; then the process ends the run and exits.
    _wait_for(lambda: any(checkpoints.glob("interrupted_*.json")), proc, "interrupted checkpoint", LIMIT_S)
    output, _ = proc.communicate(timeout=LIMIT_S)
    assert proc.returncode == 130, output[-3000:]
    assert "Traceback" not in output and "terminate called" not in output
    assert list(checkpoints.glob("interrupted_*.zip"))
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("interrupt")
    runs = client.search_runs([experiment.experiment_id])
    assert [run.info.status for run in runs] == ["KILLED"]
