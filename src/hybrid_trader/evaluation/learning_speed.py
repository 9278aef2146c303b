"""How fast a policy learns: a held-out score recorded along training.

:class:`LearningCurve` is an SB3 callback that evaluates the model (``evaluate(model)``, e.g.
the oracle capture on held-out sessions) every ``every`` environment steps and at the end of
training, and records a :class:`CurvePoint` each time:

* ``steps``: environment steps trained so far (``model.num_timesteps``). An evaluation runs at
  the first rollout start at or after each multiple of ``every``, so the policy has been
  updated on every one of those steps; one evaluation covers all the multiples a rollout
  passes;
* ``train_seconds``: wall time since training started, less the time spent in evaluations;
* ``score``: what ``evaluate`` returned.

Once a score reaches ``threshold`` only the end of training is evaluated: the first crossing
(:func:`first_reaching`) cannot change. Evaluating leaves training as it would be without it
as long as ``evaluate`` uses neither the training environments nor a random number generator
training uses (a deterministic backtest on its own environment uses neither).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from stable_baselines3.common.callbacks import BaseCallback

__all__ = ["CurvePoint", "LearningCurve", "first_reaching"]


@dataclass(frozen=True)
class CurvePoint:
    """One evaluation along training (fields defined in the module docstring)."""

    steps: int
    train_seconds: float
    score: float


def first_reaching(points: Sequence[CurvePoint], threshold: float) -> CurvePoint | None:
    """The first point whose score is at least ``threshold`` (``None`` if none is; NaN never is)."""
    return next((p for p in points if p.score >= threshold), None)


class LearningCurve(BaseCallback):
    """Evaluates every ``every`` steps until ``threshold`` is reached, and at the end (module docstring)."""

    def __init__(self, evaluate: Callable[[Any], float], every: int, threshold: float = float("inf")) -> None:
        super().__init__()
        if every <= 0:
            raise ValueError(f"every must be > 0, got {every}")
        self.evaluate, self.every, self.threshold = evaluate, every, threshold
        self.points: list[CurvePoint] = []
        self._start = 0.0
        self._eval_seconds = 0.0

    def _on_training_start(self) -> None:
        self._start = time.perf_counter()
        self._eval_seconds = 0.0
        self._next = (self.num_timesteps // self.every + 1) * self.every

    def _on_rollout_start(self) -> None:
        if self.num_timesteps >= self._next:
            self._next = (self.num_timesteps // self.every + 1) * self.every
            if first_reaching(self.points, self.threshold) is None:
                self._record()

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        if not self.points or self.points[-1].steps != self.num_timesteps:
            self._record()

    def _record(self) -> None:
        begin = time.perf_counter()
        train_seconds = begin - self._start - self._eval_seconds
        score = float(self.evaluate(self.model))
        self._eval_seconds += time.perf_counter() - begin
        self.points.append(CurvePoint(int(self.num_timesteps), train_seconds, score))

