"""Wall time of the default ``kedro run`` from empty data, in all and per node.

The project's tracked files are copied to a temporary folder with empty data
layers (nothing cached: the advisor's model is converted and its answers
pre-scored again), and ``kedro run`` runs there once; extra arguments go to
``kedro run`` (e.g. ``--params phase2.ppo.seed=1,phase3.ppo.seed=1``). Node
times are read from Kedro's log (the seconds between a node's "Running node"
line and its "Completed node" line, to the second). The target is at most 12
minutes on a 2-core machine (docs/evaluation.md).

    python -m benchmarks.bench_default_run [kedro run arguments]
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
_STAMP = re.compile(r"^\[(\d\d/\d\d/\d\d \d\d:\d\d:\d\d)\]")
_NODE = re.compile(r"(Running|Completed) node:\s*(\w*)")
_SOURCE = re.compile(r"\s+\w+\.py:\d+\s*$")


def node_seconds(log: str) -> dict[str, float]:
    """Seconds from each node's start line to its end line (the log prints a time stamp only
    when the second changes, so every line carries the last one seen)."""
    # Drop the console's source column ("runner.py:245"); a long node name wraps onto the next line.
    lines = [_SOURCE.sub("", line) for line in log.splitlines()]
    stamp, started, seconds = None, {}, {}
    for k, line in enumerate(lines):
        found = _STAMP.match(line)
        if found:
            stamp = datetime.strptime(found.group(1), "%m/%d/%y %H:%M:%S")
        node = _NODE.search(line)
        if node is None or stamp is None:
            continue
        kind, name = node.groups()
        if not name and k + 1 < len(lines):
            name = lines[k + 1].split()[0] if lines[k + 1].split() else ""
        if kind == "Running":
            started[name] = stamp
        elif name in started and name not in seconds:
            seconds[name] = (stamp - started[name]).total_seconds()
    return seconds


def fresh_copy(target: Path) -> None:
    """The tracked files of the project, with empty data layers."""
    tracked = subprocess.run(["git", "ls-files"], cwd=PROJECT, capture_output=True, text=True, check=True)
    for name in tracked.stdout.splitlines():
        source = PROJECT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="default_run_") as tmp:
        project = Path(tmp)
        fresh_copy(project)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "KEDRO_DISABLE_TELEMETRY": "1", "COLUMNS": "200"}
        start = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "kedro", "run", *sys.argv[1:]], cwd=project, env=env,
                             capture_output=True, text=True)
        wall = time.perf_counter() - start
        log = run.stdout + run.stderr
    if run.returncode != 0:
        print(log[-3000:])
        raise SystemExit(f"kedro run failed (exit {run.returncode})")
    seconds = node_seconds(log)
    print(f"{'node':36} {'s':>6}")
    for name, value in sorted(seconds.items(), key=lambda item: -item[1]):
        print(f"{name:36} {value:6.0f}")
    print(f"{'nodes in all':36} {sum(seconds.values()):6.0f}")
    print(f"kedro run from empty data: {wall:.0f} s ({wall / 60:.1f} min) with {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
