"""``kedro run --pipelines=experiments`` on a real 2-node Ray cluster, with a worker killed mid-trial.

The test starts its own cluster on 127.0.0.1 (``ray start --head`` and a second node
joining it, each with one CPU, its own ports and temp dir), points the run at it with
``RAY_ADDRESS``, waits until a trial reports that it is running (to the experiment's
progress actor), kills that trial's worker process, and checks that the sweep still
completes: every trial finished, on both nodes, and the killed trial's first MLflow run
marked FAILED beside its finished retry. It stops only the processes of its own cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from hybrid_trader.experiments.runner import BOARD_NAMESPACE, board_name
from tests.test_run import KEDRO, RUN_TIMEOUT_S, _environment, _new_project

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.e2e
RAY = [str(Path(sys.executable).parent / "ray")]
# Local test clusters skip Ray's token authentication (everything is bound to 127.0.0.1).
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _node_ports(ports: list[int]) -> list[str]:
    names = ("node-manager-port", "object-manager-port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
             "metrics-export-port", "runtime-env-agent-port")
    return [f"--{name}={port}" for name, port in zip(names, ports)]


class LocalCluster:
    """A head and one more node on 127.0.0.1, one CPU each; stops only its own processes."""

    def __init__(self, temp_dir: Path) -> None:
        self.temp_dir = temp_dir
        ports = _free_ports(14)  # worker processes take free ports of Ray's default range
        self.address = f"127.0.0.1:{ports[0]}"
        self.env = {**_environment(), **RAY_ENV}
        common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats"]
        self._start("start", "--head", f"--port={ports[0]}", f"--temp-dir={temp_dir}", "--include-dashboard=false",
                    f"--dashboard-port={ports[1]}", *common, *_node_ports(ports[2:8]))
        self._start("start", f"--address={self.address}", *common, *_node_ports(ports[8:14]))

    def _start(self, *args: str) -> None:
        proc = subprocess.run([*RAY, *args], env=self.env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
        if proc.returncode != 0:
            self.stop()
            raise RuntimeError(f"ray {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")

    def _processes(self) -> set[int]:
        """The cluster's processes: those naming its temp dir, and their descendants."""
        parents, mine = {}, set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if str(self.temp_dir) in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    mine.add(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
        grew = True
        while grew:
            children = {pid for pid, parent in parents.items() if parent in mine} - mine
            mine |= children
            grew = bool(children)
        return mine

    def stop(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in self._processes():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 30
            while self._processes() and time.monotonic() < deadline:
                time.sleep(0.2)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


@pytest.fixture
def cluster(tmp_path_factory):
    # A short path: Ray's unix socket paths under the temp dir must stay below 108 characters.
    temp_dir = Path(f"/tmp/ray-{os.getpid()}-{tmp_path_factory.mktemp('x').name}")
    local = LocalCluster(temp_dir)
    yield local
    local.stop()


def _kill_a_running_trial(run: subprocess.Popen, address: str, experiment: str) -> dict:
    """Wait for a running trial (not a hybrid one: its advisor's child process would outlive a
    SIGKILL) and kill its worker process; the killed trial's board entry."""
    saved = {key: os.environ.get(key) for key in RAY_ENV}
    os.environ.update(RAY_ENV)
    ray.init(address=address, namespace=BOARD_NAMESPACE, log_to_driver=False)
    try:
        board = None
        while run.poll() is None:
            if board is None:
                prefix = board_name(experiment, "")
                names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                         if a["namespace"] == BOARD_NAMESPACE and a["name"].startswith(prefix)]
                if not names:  # not created yet
                    time.sleep(0.2)
                    continue
                board = ray.get_actor(names[0], namespace=BOARD_NAMESPACE)
            running = [entry for entry in ray.get(board.running.remote()).values()
                       if not entry["name"].startswith("hybrid/")]
            if running:
                os.kill(running[0]["pid"], signal.SIGKILL)
                return running[0]
            time.sleep(0.1)
        raise AssertionError("the run ended before a trial could be killed")
    finally:
        ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_experiments_on_a_two_node_cluster_complete_after_a_worker_is_killed(cluster, tmp_path):
    project = _new_project(tmp_path)
    (project / "conf" / "test" / "parameters_experiments.yml").write_text(
        "experiments:\n  name: test_sweep\n  seeds: [1, 2]\n  statistics: {n_resamples: 200}\n  progress_bar: false\n")
    log = tmp_path / "run.log"
    with open(log, "w") as output:
        run = subprocess.Popen([*KEDRO, "run", "--pipelines=experiments", "--env", "test"], cwd=project, stdout=output,
                               stderr=subprocess.STDOUT, env={**cluster.env, "RAY_ADDRESS": cluster.address})
        try:
            killed = _kill_a_running_trial(run, cluster.address, "test_sweep")
            assert run.wait(timeout=RUN_TIMEOUT_S) == 0, log.read_text()[-4000:]
        finally:
            if run.poll() is None:
                run.kill()
    assert "Joined the Ray cluster" in " ".join(log.read_text().split())

    records = json.loads((project / "data" / "07_model_output" / "experiment_trials.json").read_text())
    assert [(r["configuration"], r["seed"], r["status"]) for r in records] == [
        (c, s, "finished") for s in (1, 2) for c in ("phase2", "rl_only", "hybrid")]
    assert len({r["node_id"] for r in records}) == 2  # both nodes ran trials
    name = killed["name"]
    retried = next(r for r in records if f"{r['configuration']}/seed{r['seed']}" == name)
    assert retried["pid"] != killed["pid"]

    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              filter_string=f"tags.`hybrid_trader.trial_key` = '{retried['key']}'")
    assert sorted(r.info.status for r in runs) == ["FAILED", "FINISHED"]
    summary = json.loads((project / "data" / "08_reporting" / "experiment_summary.json").read_text())
    assert summary["trials"] == {"total": 6, "finished": 6, "failed": [], "resumed": 0, "nodes": 2}
