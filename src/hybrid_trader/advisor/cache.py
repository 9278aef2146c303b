"""A persistent, content-addressed cache of advice.

Key: SHA-256 of the model identity (including its file hash), the prompt
template version, the method (and calibration), and the full prompt text
(static prefix and state part).
Value: the distribution over the actions (``N_ACTIONS``) and its confidence.
Stored as a Parquet file that later runs reuse; a hit is a dictionary lookup.
Stored entries of another length (written for another action space) are
dropped on loading: they could never be served.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from hybrid_trader.env.actions import N_ACTIONS

__all__ = ["AdviceCache", "advice_key"]


def advice_key(model_identity: str, template_version: str, method: str, prompt: str) -> str:
    return hashlib.sha256("\x1f".join((model_identity, template_version, method, prompt)).encode()).hexdigest()


class AdviceCache:
    """``key -> (probabilities over the N_ACTIONS actions, confidence)``, persisted at ``path``."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else None
        self._entries: dict[str, tuple[np.ndarray, float]] = {}
        self._dirty = False
        if self.path and self.path.exists():
            frame = pd.read_parquet(self.path)
            for key, probabilities, confidence in zip(frame["key"], frame["probabilities"], frame["confidence"]):
                if len(probabilities) == N_ACTIONS:
                    self.put(key, np.asarray(probabilities), confidence)
            self._dirty = False

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> tuple[np.ndarray, float] | None:
        return self._entries.get(key)

    def put(self, key: str, probabilities: np.ndarray, confidence: float) -> None:
        # Stored copies are read-only: a hit returns exactly what was stored.
        stored = np.array(probabilities, dtype=np.float64)
        stored.flags.writeable = False
        self._entries[key] = (stored, float(confidence))
        self._dirty = True

    def flush(self) -> None:
        """Write the cache to ``path`` (if any) when it changed."""
        if not (self.path and self._dirty):
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        frame = pd.DataFrame({
            "key": list(self._entries),
            "probabilities": [p.tolist() for p, _ in self._entries.values()],
            "confidence": [c for _, c in self._entries.values()],
        })
        tmp = self.path.with_suffix(".tmp")
        frame.to_parquet(tmp)
        tmp.replace(self.path)
        self._dirty = False
