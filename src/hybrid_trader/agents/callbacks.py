"""Training telemetry and checkpoints for SB3 algorithms.

* :class:`MlflowOutputFormat` writes every value SB3's logger dumps
  (``train/approx_kl``, ``train/clip_fraction``, ``train/explained_variance``,
  ``train/entropy_loss``, ``train/value_loss``, ``train/learning_rate``,
  ``rollout/ep_len_mean``, ...) to the active MLflow run as metric histories,
  stepped by ``num_timesteps``.
* :class:`EpisodeStatsCallback` adds, per rollout, statistics of the episodes
  that ended in it: ``rollout/end_<reason>`` (episodes ending so), and the
  means of ``rollout/trades_per_episode``, ``rollout/net_pnl_per_episode`` ($)
  and ``rollout/invalid_actions_per_episode``.
* :class:`StepCheckpointCallback` saves the model (policy and optimizer) every
  ``save_every_steps`` environment steps, between updates, and at the end of
  training, with a JSON sidecar holding the step count and the environment's
  RNG state.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import KVWriter

from hybrid_trader.env.engine import END_REASONS

__all__ = ["MlflowOutputFormat", "EpisodeStatsCallback", "StepCheckpointCallback", "latest_checkpoint",
           "save_checkpoint"]


class MlflowOutputFormat(KVWriter):
    """An SB3 logger output that logs numeric values to the active MLflow run.

    ``last`` keeps the most recent value of every key, ``history`` every value with its
    step (for summaries and reports).
    """

    def __init__(self) -> None:
        self.last: dict[str, float] = {}
        self.history: dict[str, list[tuple[int, float]]] = {}

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, Any], step: int = 0) -> None:
        metrics = {
            key: float(value)
            for key, value in key_values.items()
            if isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)
            and np.isfinite(value)
        }
        self.last.update(metrics)
        for key, value in metrics.items():
            self.history.setdefault(key, []).append((int(step), value))
        if metrics and mlflow.active_run() is not None:
            # Ctrl-C inside the tracking store's commit left its SQLite file locked, and ending the
            # run KILLED then failed ("database is locked").
            with _sigint_deferred():
                mlflow.log_metrics(metrics, step=int(step))

    def close(self) -> None:
        pass


class EpisodeStatsCallback(BaseCallback):
    """Per-rollout statistics of finished episodes, recorded to SB3's logger."""

    def __init__(self) -> None:
        super().__init__()
        self._reasons: Counter[str] = Counter()
        self._trades: list[int] = []
        self._pnl: list[float] = []
        self._invalid: list[int] = []
        self.totals: Counter[str] = Counter()
        self.lengths: list[int] = []  # every finished episode's length (bars)

    def _on_step(self) -> bool:
        for done, info in zip(self.locals["dones"], self.locals["infos"]):
            if done and "end_reason" in info:
                self._reasons[info["end_reason"]] += 1
                self.lengths.append(int(info["episode"]["l"]))
                self._trades.append(info["trades"])
                self._pnl.append(info["net_pnl"])
                self._invalid.append(info["invalid_actions"])
        return True

    def _on_rollout_end(self) -> None:
        for reason in END_REASONS[1:]:
            self.logger.record(f"rollout/end_{reason}", self._reasons.get(reason, 0))
        if self._trades:
            self.logger.record("rollout/trades_per_episode", float(np.mean(self._trades)))
            self.logger.record("rollout/net_pnl_per_episode", float(np.mean(self._pnl)))
            self.logger.record("rollout/invalid_actions_per_episode", float(np.mean(self._invalid)))
        self.totals.update(self._reasons)
        self._reasons.clear()
        self._trades, self._pnl, self._invalid = [], [], []

    def _on_training_end(self) -> None:
        # SB3 dumps the last iteration's train/ values only at the next iteration: dump them now.
        self.logger.dump(self.num_timesteps)


@contextmanager
def _sigint_deferred():
    """Hold Ctrl-C back while a checkpoint or a metric is written, then raise it: a file or
    a tracking-store transaction is never left half-done by an interrupt."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def save_checkpoint(model, directory: Path, name: str) -> Path:
    """Save ``model`` (policy + optimizer) and its step count and env RNG state.

    The zip is written under a temporary name and renamed, and the JSON sidecar
    written last: a checkpoint with a sidecar is always complete.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.zip"
    engine = getattr(model.get_env(), "engine", None)
    sidecar = {
        "num_timesteps": int(model.num_timesteps),
        "env_rng_state": engine.rng.bit_generator.state if engine is not None else None,
    }
    with _sigint_deferred():
        partial = directory / f".{name}.zip.partial"
        model.save(partial)
        os.replace(partial, path)
        (directory / f"{name}.json").write_text(json.dumps(sidecar, default=int))
    return path


def latest_checkpoint(directory: Path) -> tuple[Path, dict[str, Any]] | None:
    """The checkpoint with the most steps in ``directory``, with its sidecar; ``None`` if there is none."""
    best: tuple[int, Path, dict[str, Any]] | None = None
    for sidecar in Path(directory).glob("*.json"):
        data = json.loads(sidecar.read_text())
        zip_path = sidecar.with_suffix(".zip")
        if zip_path.exists() and (best is None or data["num_timesteps"] > best[0]):
            best = (data["num_timesteps"], zip_path, data)
    return None if best is None else (best[1], best[2])


class StepCheckpointCallback(BaseCallback):
    """Checkpoint once ``save_every_steps`` more environment steps have been trained on.

    Checks happen between iterations (after an update, before the next rollout)
    and at the end of training, so a checkpoint always holds a policy and an
    optimizer that have learned from every step it counts.
    """

    def __init__(self, directory: Path, save_every_steps: int, prefix: str = "checkpoint") -> None:
        super().__init__()
        self.directory, self.every, self.prefix = Path(directory), int(save_every_steps), prefix
        self._next = 0

    def _on_training_start(self) -> None:
        self._next = (self.num_timesteps // self.every + 1) * self.every

    def _save_if_due(self, force: bool = False) -> None:
        if self.num_timesteps >= self._next or force:
            save_checkpoint(self.model, self.directory, f"{self.prefix}_{self.num_timesteps:010d}")
            self._next = (self.num_timesteps // self.every + 1) * self.every

    def _on_rollout_start(self) -> None:
        self._save_if_due()

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        self._save_if_due(force=True)
