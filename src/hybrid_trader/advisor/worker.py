"""Advice served by a background thread, so a training step never waits for the model.

:meth:`AsyncAdvisor.submit` queues one batch of queries (a bounded queue: when
it is full the batch is dropped and counted); the worker answers batches in
order with :meth:`Advisor.advise`. :meth:`AsyncAdvisor.latest` returns, per
environment, the newest answer whose age (current step minus the step it was
asked at) is at most ``max_age`` steps, and "no advice" otherwise.
:meth:`AsyncAdvisor.close` stops and joins the thread and persists the cache;
it is safe to call twice. Call it (e.g. in ``finally``): the thread holds the
advisor, so garbage collection alone does not stop it.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Mapping, Sequence

import numpy as np

from hybrid_trader.advisor.advisor import Advisor
from hybrid_trader.env.actions import N_ACTIONS

__all__ = ["AsyncAdvisor"]

logger = logging.getLogger(__name__)


class AsyncAdvisor:
    def __init__(self, advisor: Advisor, max_queued_batches: int = 4) -> None:
        self.advisor = advisor
        self._queue: queue.Queue = queue.Queue(maxsize=max_queued_batches)
        self._answers: dict[int, tuple[int, np.ndarray, float]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.dropped_batches = 0
        self._thread = threading.Thread(target=self._serve, name="advisor-worker", daemon=True)
        self._thread.start()

    def submit(self, states: Sequence[Mapping[str, Any]], masks: np.ndarray, env_ids: Sequence[int],
               step: int) -> bool:
        """Queue a batch asked at ``step``; ``False`` (and counted) when the queue is full."""
        try:
            self._queue.put_nowait((list(states), np.asarray(masks), list(env_ids), int(step)))
            return True
        except queue.Full:
            self.dropped_batches += 1
            return False

    def latest(self, env_ids: Sequence[int], step: int, max_age: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(probabilities (n, 6), confidence (n,), age (n,))`` of each env's newest fresh answer;
        NaN and age -1 where there is none."""
        n = len(env_ids)
        probabilities, confidence = np.full((n, N_ACTIONS), np.nan), np.full(n, np.nan)
        age = np.full(n, -1, dtype=np.int64)
        with self._lock:
            for i, env in enumerate(env_ids):
                answer = self._answers.get(int(env))
                if answer is not None and 0 <= step - answer[0] <= max_age:
                    age[i], probabilities[i], confidence[i] = step - answer[0], answer[1], answer[2]
        return probabilities, confidence, age

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                states, masks, env_ids, step = self._queue.get(timeout=0.05)
            except queue.Empty:
                continue
            try:
                advice = self.advisor.advise(states, masks, env_ids)
            except Exception as error:  # advise already guards the model; this guards everything else
                logger.warning("advisor worker: %s", error)
                continue
            with self._lock:
                for i, env in enumerate(env_ids):
                    if advice.has_advice[i]:
                        self._answers[int(env)] = (step, advice.probabilities[i], float(advice.confidence[i]))

    def close(self, timeout: float = 30.0) -> None:
        """Stop the worker (after the batch in hand), join it and persist the cache."""
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.error("advisor worker did not stop within %.0f s; its cache is not saved", timeout)
                return
        self.advisor.close()
