"""Advice served in the background, so a training step never waits for the model.

Two workers with one interface (``submit``, ``latest``, ``waiting``, ``drain``,
``close``, counters ``submitted``, ``superseded``, ``answered``, flag ``forced_stop``):
:class:`AsyncAdvisor` runs the model on a thread of this process;
:class:`ProcessAdvisor` runs it in a child process, so the model's Python work
does not compete with training for this process's interpreter lock (on this
2-core machine a thread worker slowed training by about a third).

:meth:`AsyncAdvisor.submit` records one query per environment; a newer query
from the same environment replaces one still waiting (counted in
``superseded``: its answer would be older than the new one anyway). The worker
takes up to ``batch_size`` waiting queries, oldest first, and answers them as
one batch with :meth:`Advisor.advise`. :meth:`AsyncAdvisor.latest` returns,
per environment, the newest answer whose age (current step minus the step it
was asked at) is at most ``max_age`` steps, and "no advice" otherwise.
:meth:`AsyncAdvisor.close` stops and joins the thread and persists the cache;
it is safe to call twice. Call it (e.g. in ``finally``): the thread holds the
advisor, so garbage collection alone does not stop it.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import signal
import threading
import time
from typing import Any, Mapping, Sequence

import numpy as np

from hybrid_trader.advisor.advisor import Advisor
from hybrid_trader.env.actions import N_ACTIONS

__all__ = ["AsyncAdvisor", "ProcessAdvisor"]

logger = logging.getLogger(__name__)

# How long a terminated worker may take to finish its current model call and exit (it returns sooner).
_TERMINATE_WAIT_S = 60.0
# A feeder thread with data left refills the pipe within microseconds; this long a silence means it is done.
_FEEDER_IDLE_S = 0.5


def _fresh_answers(answers: Mapping[int, tuple[int, np.ndarray, float]], env_ids: Sequence[int], step: int,
                   max_age: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each env's answer ``(asked at step, probabilities, confidence)`` if at most ``max_age`` old:
    ``(probabilities (n, N_ACTIONS), confidence (n,), age (n,))``, NaN and age -1 where there is none."""
    n = len(env_ids)
    probabilities, confidence = np.full((n, N_ACTIONS), np.nan), np.full(n, np.nan)
    age = np.full(n, -1, dtype=np.int64)
    for i, env in enumerate(env_ids):
        answer = answers.get(int(env))
        if answer is not None and 0 <= step - answer[0] <= max_age:
            age[i], probabilities[i], confidence[i] = step - answer[0], answer[1], answer[2]
    return probabilities, confidence, age


def _wait_idle(worker: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while worker.waiting and time.monotonic() < deadline:
        time.sleep(0.005)
    return not worker.waiting


class AsyncAdvisor:
    def __init__(self, advisor: Advisor, batch_size: int = 16) -> None:
        self.advisor = advisor
        self.batch_size = batch_size
        self._pending: dict[int, tuple[Mapping[str, Any], np.ndarray, int]] = {}
        self._answers: dict[int, tuple[int, np.ndarray, float]] = {}
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._busy = False
        self.submitted = 0
        self.superseded = 0
        self.answered = 0
        self.forced_stop = False  # a thread cannot be stopped by force; one that hangs stays ``alive``
        self._thread = threading.Thread(target=self._serve, name="advisor-worker", daemon=True)
        self._thread.start()

    def submit(self, states: Sequence[Mapping[str, Any]], masks: np.ndarray, env_ids: Sequence[int],
               step: int) -> bool:
        """Queue one query per environment, asked at ``step``; ``False`` once closed."""
        if self._stop.is_set():
            return False
        masks = np.asarray(masks, dtype=bool)
        with self._work:
            for state, mask, env in zip(states, masks, env_ids):
                if int(env) in self._pending:
                    self.superseded += 1
                    del self._pending[int(env)]  # re-inserted last: keeps "oldest first" order
                self._pending[int(env)] = (state, mask, int(step))
                self.submitted += 1
            self._work.notify()
        return True

    @property
    def waiting(self) -> int:
        """Queries not yet answered (waiting or in the batch being answered)."""
        with self._lock:
            return len(self._pending) + (1 if self._busy else 0)

    def latest(self, env_ids: Sequence[int], step: int, max_age: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(probabilities (n, N_ACTIONS), confidence (n,), age (n,))`` of each env's newest fresh answer;
        NaN and age -1 where there is none."""
        with self._lock:
            return _fresh_answers(self._answers, env_ids, step, max_age)

    def drain(self, timeout: float = 60.0) -> bool:
        """Wait until every submitted query is answered; ``False`` on timeout."""
        return _wait_idle(self, timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _serve(self) -> None:
        while True:
            with self._work:
                while not self._pending and not self._stop.is_set():
                    self._work.wait(0.1)
                if self._stop.is_set():
                    return
                envs = list(self._pending)[: self.batch_size]
                batch = [(env, *self._pending.pop(env)) for env in envs]
                self._busy = True
            try:
                env_ids = [b[0] for b in batch]
                advice = self.advisor.advise([b[1] for b in batch], np.stack([b[2] for b in batch]), env_ids)
            except Exception as error:  # advise already guards the model; this guards everything else
                logger.warning("advisor worker: %s", error)
                advice = None
            with self._lock:
                self._busy = False
                if advice is not None:
                    for i, (env, _, _, step) in enumerate(batch):
                        if advice.has_advice[i]:
                            self._answers[env] = (step, advice.probabilities[i], float(advice.confidence[i]))
                            self.answered += 1

    def close(self, timeout: float = 30.0) -> None:
        """Stop the worker (after the batch in hand), join it and persist the cache."""
        if self._thread.is_alive():
            with self._work:
                self._stop.set()
                self._work.notify_all()
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.error("advisor worker did not stop within %.0f s; its cache is not saved", timeout)
                return
        self._stop.set()
        self.advisor.close()


def _exit_cleanly_on_terminate(results: Any) -> None:
    """Make SIGTERM (``Process.terminate``) end the child through Python's exit path.

    A spawned child's locks are named semaphores (tqdm makes one while the model loads); only
    multiprocessing's exit finalizers unlink them. Killed outright, the child leaves them to the
    resource tracker, which then warns of leaked semaphores when the parent exits. Unsent answers
    are moot by then, so the exit does not wait to flush them.
    """
    def on_terminate(signum: int, frame: Any) -> None:
        results.cancel_join_thread()
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_terminate)


def _serve_in_process(advisor_params: dict[str, Any], requests: Any, results: Any, batch_size: int,
                      stop: Any) -> None:
    """The child: build its own advisor (no cache: the parent keeps the cache), then answer the
    newest waiting query of each environment, oldest first, in batches, until ``stop`` is set.

    ``stop`` is an event rather than a last request: at the end of training thousands of requests
    may still wait in the pipe, and answering them all first took longer than the close allowed.
    """
    _exit_cleanly_on_terminate(results)
    try:
        _answer_until_stopped(advisor_params, requests, results, batch_size, stop)
    finally:
        # Leaving (asked to, or terminated): a later SIGTERM must not interrupt the exit's finalizers.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _answer_until_stopped(advisor_params: dict[str, Any], requests: Any, results: Any, batch_size: int,
                          stop: Any) -> None:
    try:
        advisor = Advisor.from_params(advisor_params)
    except Exception as error:  # reported to the parent, which switches the advisor off
        results.put(("error", f"{type(error).__name__}: {error}"))
        return
    results.put(("ready", advisor.backend.identity))
    pending: dict[int, tuple[Any, np.ndarray, int]] = {}
    superseded = 0
    parent = multiprocessing.parent_process()
    while not stop.is_set():
        if parent is not None and not parent.is_alive():  # the trainer was killed: nobody will ask again
            return
        block = not pending
        while not stop.is_set():
            try:
                item = requests.get(timeout=0.1) if block else requests.get_nowait()
            except queue.Empty:
                break
            block = False
            for state, mask, env, step in item:
                superseded += int(env in pending)
                pending.pop(env, None)
                pending[env] = (state, mask, step)
        if not pending or stop.is_set():
            continue
        envs = list(pending)[:batch_size]
        batch = [(env, *pending.pop(env)) for env in envs]
        masks = np.stack([b[2] for b in batch])
        advice = advisor.advise([b[1] for b in batch], masks, envs)
        allowed = [tuple(int(a) for a in np.flatnonzero(m)) for m in masks]
        answers = [(env, step, advice.prompts[i], allowed[i], advice.probabilities[i], float(advice.confidence[i]))
                   for i, (env, _, _, step) in enumerate(batch) if advice.has_advice[i]]
        responses = advisor.responses().to_dict("records") if advisor.save_responses else []
        advisor._responses.clear()
        stats = advisor.stats
        results.put(("answers", answers, responses, superseded, len(batch),
                     {"failures": stats.failures, "abstentions": stats.abstentions, "model_queries": stats.model_queries,
                      "model_ms": stats.model_ms, "disabled": stats.disabled}))
    # Stopped: what was read but never answered, for the parent's accounting.
    results.put(("stopped", superseded, len(pending)))


class ProcessAdvisor:
    """The model in a child process (spawned, so no state is shared); answers come back to this
    process, go into ``advisor``'s cache (persisted by :meth:`close`) and, with
    ``save_llm_responses``, its responses. The child's failure counters are mirrored into
    ``advisor.stats``; a child that cannot load the model or dies switches the advisor off.
    ``unsent`` counts the queries never answered because :meth:`close` stopped the child (the
    run was over): still in the pipe, or read and waiting; ``forced_stop`` says the child had to be
    terminated. Once closed, ``answered + superseded + unsent`` is ``submitted`` less the queries
    that got no advice (a bad state, a failure).

    Args:
        advisor: This process's advisor (its cache and statistics; it answers cache hits).
        advisor_params: The ``advisor`` parameters the child builds its own advisor from.
        batch_size: Largest batch the child sends to the model.
        start_timeout: Seconds to wait for the child's model to load.
    """

    def __init__(self, advisor: Advisor, advisor_params: Mapping[str, Any], batch_size: int = 16,
                 start_timeout: float = 300.0) -> None:
        self.advisor = advisor
        context = multiprocessing.get_context("spawn")
        self._requests = context.Queue()
        self._results = context.Queue()
        self._stop = context.Event()
        self._answers: dict[int, tuple[int, np.ndarray, float]] = {}
        self._in_flight = 0
        self.submitted = self.superseded = self.answered = self.unsent = 0
        self.forced_stop = False
        self._closed = False
        self._process = context.Process(target=_serve_in_process, name="advisor-worker",
                                        args=(dict(advisor_params), self._requests, self._results, batch_size, self._stop),
                                        daemon=True)
        self._process.start()
        kind, detail = "error", f"the worker's model did not load within {start_timeout:.0f} s"
        deadline = time.monotonic() + start_timeout
        while time.monotonic() < deadline:
            try:
                kind, detail = self._results.get(timeout=0.5)
                break
            except queue.Empty:
                if not self._process.is_alive():  # died before reporting (import error, killed, ...)
                    kind, detail = "error", f"the worker process exited with code {self._process.exitcode}"
                    break
        if kind != "ready":
            self._switch_off(f"advisor worker unavailable: {detail}")

    def _switch_off(self, message: str) -> None:
        logger.error("%s; the policy acts without the advisor's misses", message)
        self.advisor.stats.failures += 1
        self.advisor.stats.disabled = True
        self._closed = True

    def submit(self, states: Sequence[Mapping[str, Any]], masks: np.ndarray, env_ids: Sequence[int],
               step: int) -> bool:
        """Send one query per environment, asked at ``step``; ``False`` once closed or off."""
        if self._closed:
            return False
        if not self._process.is_alive():
            self._switch_off("advisor worker process died")
            return False
        masks = np.asarray(masks, dtype=bool)
        self._requests.put([(dict(state), mask, int(env), int(step))
                            for state, mask, env in zip(states, masks, env_ids)])
        self.submitted += len(env_ids)
        self._in_flight += len(env_ids)
        return True

    def _collect(self) -> None:
        while True:
            try:
                message = self._results.get_nowait()
            except (queue.Empty, EOFError, OSError):
                return
            if message[0] == "stopped":
                _, superseded, waiting = message
                self._in_flight = max(0, self._in_flight - waiting - (superseded - self.superseded))
                self.superseded, self.unsent = superseded, self.unsent + waiting
                continue
            if message[0] != "answers":
                continue
            _, answers, responses, superseded, processed, stats = message
            for env, step, text, allowed, probabilities, confidence in answers:
                if env not in self._answers or self._answers[env][0] <= step:
                    self._answers[env] = (step, probabilities, confidence)
                if text is not None:
                    self.advisor.cache.put(self.advisor._key(text, allowed), probabilities, confidence)
            self.answered += len(answers)
            self._in_flight = max(0, self._in_flight - processed - (superseded - self.superseded))
            self.superseded = superseded
            self.advisor._responses.extend(responses)
            own = self.advisor.stats
            own.failures, own.abstentions = stats["failures"], stats["abstentions"]
            own.model_queries, own.model_ms = stats["model_queries"], stats["model_ms"]
            own.disabled = own.disabled or stats["disabled"]

    @property
    def waiting(self) -> int:
        """Queries sent and neither answered nor superseded yet (an upper bound: failed ones count)."""
        self._collect()
        return self._in_flight if self._process.is_alive() else 0

    def latest(self, env_ids: Sequence[int], step: int, max_age: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """As :meth:`AsyncAdvisor.latest`."""
        self._collect()
        return _fresh_answers(self._answers, env_ids, step, max_age)

    def drain(self, timeout: float = 60.0) -> bool:
        """Wait until every sent query is answered or superseded; ``False`` on timeout."""
        return _wait_idle(self, timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Stop the child (after the batch in hand), collect its last answers, persist the cache."""
        if self._process.is_alive():
            self._stop.set()  # requests still waiting in the pipe are moot
            # Keep reading while it stops: a child whose answers are unread cannot flush them and exit.
            deadline = time.monotonic() + timeout
            while self._process.is_alive() and time.monotonic() < deadline:
                self._collect()
                self._process.join(0.05)
            if self._process.is_alive():
                logger.error("advisor worker process did not stop within %.0f s; terminating it", timeout)
                self.forced_stop = True
                self._process.terminate()  # the child exits through its finalizers (see above)
                self._process.join(_TERMINATE_WAIT_S)
                if self._process.is_alive():
                    logger.error("advisor worker process ignored SIGTERM for %.0f s; killing it", _TERMINATE_WAIT_S)
                    self._process.kill()
                    self._process.join(_TERMINATE_WAIT_S)
        self._collect()
        self._discard_unsent_requests()
        self._closed = True
        for channel in (self._requests, self._results):
            channel.cancel_join_thread()  # unsent requests are moot; never block the exit on them
            channel.close()
        self.advisor.close()

    def _discard_unsent_requests(self) -> None:
        """Read back what this process's feeder thread is still writing to the stopped child's pipe:
        with nobody reading, the thread would block on the full pipe, holding the backlog, for the
        rest of the process."""
        while True:
            try:
                self.unsent += len(self._requests.get(timeout=_FEEDER_IDLE_S))
            except (queue.Empty, EOFError, OSError, ValueError):
                return

    @property
    def alive(self) -> bool:
        return self._process.is_alive()
