"""Robust feature scaling fitted on train days only.

``scaled = clip((x - median) / IQR, -clip, +clip)`` per feature, with the
median and the inter-quartile range (25th to 75th percentile) of the *train*
rows that are valid for trading (scikit-learn's ``RobustScaler``; a zero IQR
becomes 1). Binary flags (``scaled = False`` in the registry) pass unchanged;
NaN stays NaN. The fitted statistics are plain JSON, versioned by the
catalog and shipped with every model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.preprocessing import RobustScaler

from hybrid_trader.features.registry import BAR_FEATURES

__all__ = ["FeatureScaler", "SCALED_FEATURES"]

SCALED_FEATURES: tuple[str, ...] = tuple(f.name for f in BAR_FEATURES if f.scaled)


@dataclass(frozen=True)
class FeatureScaler:
    """Fitted per-feature centre and scale, and the clip applied after scaling."""

    center: dict[str, float]
    scale: dict[str, float]
    clip: float = 5.0
    fitted_on: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def fit(cls, rows: pd.DataFrame, columns: tuple[str, ...] = SCALED_FEATURES, clip: float = 5.0,
            fitted_on: dict[str, Any] | None = None) -> "FeatureScaler":
        """Fit on ``rows`` (the caller passes only train rows)."""
        if clip <= 0:
            raise ValueError(f"clip must be > 0, got {clip}")
        if rows.empty:
            raise ValueError("cannot fit a scaler on zero rows")
        robust = RobustScaler(quantile_range=(25.0, 75.0)).fit(rows[list(columns)].to_numpy(dtype=float))
        return cls(
            center={c: float(v) for c, v in zip(columns, robust.center_)},
            scale={c: float(v) for c, v in zip(columns, robust.scale_)},
            clip=float(clip),
            fitted_on={"rows": int(len(rows)), **(fitted_on or {})},
        )

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """A copy of ``frame`` with the scaled columns replaced by their scaled values."""
        out = frame.copy()
        columns = list(self.center)
        center = np.array([self.center[c] for c in columns])
        scale = np.array([self.scale[c] for c in columns])
        out[columns] = np.clip((frame[columns].to_numpy(dtype=float) - center) / scale, -self.clip, self.clip)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"center": self.center, "scale": self.scale, "clip": self.clip, "fitted_on": self.fitted_on}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FeatureScaler":
        missing = {"center", "scale", "clip"} - data.keys()
        if missing:
            raise ValueError(f"scaler file lacks {sorted(missing)}")
        if data["center"].keys() != data["scale"].keys():
            raise ValueError("scaler file: center and scale name different features")
        return cls({k: float(v) for k, v in data["center"].items()},
                   {k: float(v) for k, v in data["scale"].items()},
                   float(data["clip"]), dict(data.get("fitted_on", {})))
