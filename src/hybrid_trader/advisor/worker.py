"""Advice served by a background thread, so a training step never waits for the model.

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
import threading
import time
from typing import Any, Mapping, Sequence

import numpy as np

from hybrid_trader.advisor.advisor import Advisor
from hybrid_trader.env.actions import N_ACTIONS

__all__ = ["AsyncAdvisor"]

logger = logging.getLogger(__name__)


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

    def drain(self, timeout: float = 60.0) -> bool:
        """Wait until every submitted query is answered; ``False`` on timeout."""
        deadline = time.monotonic() + timeout
        while self.waiting and time.monotonic() < deadline:
            time.sleep(0.005)
        return not self.waiting

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
