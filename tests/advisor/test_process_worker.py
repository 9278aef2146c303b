"""The advisor's model in a child process: answers come back into this process's cache."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import threading
import time

import numpy as np

from hybrid_trader.advisor.advisor import Advisor, AdvisorConfig
from hybrid_trader.advisor.worker import ProcessAdvisor
from tests.advisor.conftest import FLAT_MASK, LONG_MASK, mirrored, up_state
from tests.conftest import PROJECT_ROOT


def test_the_process_worker_answers_fills_the_cache_and_stops(advisor_params, llm_cache_dir, real_backend):
    params = copy.deepcopy(advisor_params)
    params["model"]["cache_dir"] = str(llm_cache_dir)  # converted once by real_backend
    params["save_llm_responses"] = True
    advisor = Advisor.from_params(params)
    worker = ProcessAdvisor(advisor, params, batch_size=4)
    try:
        states = [up_state(), mirrored(up_state()), up_state(position_side=1, unrealized_pnl=300.0)]
        masks = np.stack([FLAT_MASK, FLAT_MASK, LONG_MASK])
        assert worker.submit(states, masks, [0, 1, 2], step=5)
        assert worker.drain(120)
        probabilities, confidence, age = worker.latest([0, 1, 2, 3], step=7, max_age=5)
        assert age.tolist() == [2, 2, 2, -1]
        np.testing.assert_allclose(probabilities[:3].sum(axis=1), 1.0, atol=1e-6)
        assert (probabilities[2][~LONG_MASK] == 0).all()
        # The answers are now cache hits here, equal to what this process's model says.
        here = advisor.advise(states, masks, use_model=True)
        assert here.cache_hit.all()
        direct = Advisor(real_backend, advisor.builder, advisor.config).advise(states, masks)
        np.testing.assert_allclose(here.probabilities, direct.probabilities, atol=1e-5)
        assert worker.answered == 3 and len(advisor.responses()) >= 3
    finally:
        worker.close()
    assert not worker.alive and not worker.submit(states, masks, [0, 1, 2], step=9)


def test_a_worker_whose_model_cannot_load_switches_the_advisor_off(advisor_params, builder, tmp_path):
    params = copy.deepcopy(advisor_params)
    params["model"]["model_path"] = str(tmp_path / "no-such-model")
    advisor = Advisor(None, builder, AdvisorConfig())  # this process's side needs no model here
    worker = ProcessAdvisor(advisor, params, start_timeout=120)
    assert advisor.stats.disabled and advisor.stats.failures == 1
    assert not worker.submit([up_state()], FLAT_MASK[None], [0], step=0)
    worker.close()
    assert not worker.alive


def test_a_terminated_worker_leaves_no_semaphore_behind(llm_cache_dir, real_backend):
    """A spawned child's tqdm lock is a named semaphore: killed without its exit finalizers, the child
    leaves it to the resource tracker, which warns of a leak when the parent exits."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "tests.advisor.terminate_worker_run", str(llm_cache_dir)],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=1200)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert "terminating it" in output  # the path under test was taken
    assert "worker alive after close: False forced stop: True" in output
    assert "leaked semaphore" not in output and "Traceback" not in output, output[-3000:]


def _feeder_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "QueueFeederThread" and t.is_alive()]


def test_close_stops_after_the_batch_in_hand_and_leaves_no_backlog(advisor_params, llm_cache_dir, real_backend):
    """At the end of training thousands of requests can wait in the pipe: close stops the child when
    asked, and this process's feeder thread must not stay blocked writing them to a stopped child."""
    params = copy.deepcopy(advisor_params)
    params["model"]["cache_dir"] = str(llm_cache_dir)
    worker = ProcessAdvisor(Advisor.from_params(params), params, batch_size=8)
    states = [up_state(), mirrored(up_state())] * 4
    masks = np.stack([FLAT_MASK] * len(states))
    steps = 6000  # megabytes of requests: far more than a pipe holds
    for step in range(steps):
        assert worker.submit(states, masks, list(range(len(states))), step=step)
    limit = time.monotonic() + 1200
    while worker.answered == 0:  # the child is answering
        assert time.monotonic() < limit, "the worker never answered"
        worker.latest([0], step=0, max_age=1)
        time.sleep(0.1)
    worker.close(timeout=1200)
    assert not worker.alive and worker._process.exitcode == 0  # stopped when asked, not terminated
    # Every query is accounted for: answered, superseded by a newer one, or never answered because
    # the worker stopped (how much of the backlog the child read first depends on the machine's speed).
    assert worker.submitted == steps * len(states)
    assert worker.answered + worker.superseded + worker.unsent == worker.submitted
    while _feeder_threads():
        assert time.monotonic() < limit, "a queue feeder thread is still blocked after close"
        time.sleep(0.1)
