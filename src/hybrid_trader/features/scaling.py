"""Robust feature scaling, and the train-profile features, fitted on train days only.

``scaled = clip((x - median) / IQR, -clip, +clip)`` per feature, with the
median and the inter-quartile range (25th to 75th percentile) of the *train*
rows that are valid for trading (scikit-learn's ``RobustScaler``; a zero IQR
becomes 1). Binary flags (``scaled = False`` in the registry) pass unchanged;
NaN stays NaN.

``session_vol_ratio`` needs statistics across sessions, so the scaler fits
them too and computes it in :meth:`FeatureScaler.transform`, before scaling:
the *volatility profile* ``p[m]`` is the mean squared 1-bar log return of the
train bars at minute ``m`` since their session's first bar (``p[0] = 0``: a
session's first bar has no return), and at a bar ``m`` minutes into its session
``session_vol_ratio = sqrt(session_sum_r2 / (p[1] + ... + p[m]))``, with
``session_sum_r2`` the session's sum of squared 1-bar log returns through that
bar (from :func:`~hybrid_trader.features.bar_features.compute_bar_features`).
It is NaN at a session's first bar (0/0) and past the profile's last minute.
Each value reads only its own row, so it is as causal as its inputs.

The fitted statistics are plain JSON, versioned by the catalog and shipped with
every model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.preprocessing import RobustScaler

from hybrid_trader.features.registry import BAR_FEATURES

__all__ = ["FeatureScaler", "SCALED_FEATURES", "VOL_RATIO", "fit_vol_profile", "session_vol_ratio"]

SCALED_FEATURES: tuple[str, ...] = tuple(f.name for f in BAR_FEATURES if f.scaled)
VOL_RATIO = "session_vol_ratio"


def fit_vol_profile(rows: pd.DataFrame) -> tuple[float, ...]:
    """``p[0..M]``: the mean squared ``log_return`` of ``rows`` at each ``session_minute`` (``p[0] = 0``).

    A minute inside the session that no row has (e.g. the 16:15-16:30 halt that every
    session had before June 2021) is interpolated linearly from its neighbours.

    Raises:
        ValueError: minute 1 has no row with a return (the rows must be every bar of the
            train sessions, warm-up included).
    """
    minute = rows["session_minute"].to_numpy(dtype=np.int64)
    r2 = rows["log_return"].to_numpy(dtype=float) ** 2
    defined = np.isfinite(r2) & (minute >= 1)
    if not defined.any():
        raise ValueError("cannot fit the volatility profile: no bar after a session's first")
    size = int(minute[defined].max()) + 1
    count = np.bincount(minute[defined], minlength=size)
    total = np.bincount(minute[defined], weights=r2[defined], minlength=size)
    if count[1] == 0:
        raise ValueError("the volatility profile has no bar at minute 1 since a session's first bar: fit it "
                         "on every bar of the train sessions, warm-up included")
    profile = np.zeros(size)
    present = np.flatnonzero(count > 0)
    present = present[present >= 1]
    profile[1:] = np.interp(np.arange(1, size), present, total[present] / count[present])
    return tuple(float(v) for v in profile)


def session_vol_ratio(frame: pd.DataFrame, profile: tuple[float, ...]) -> np.ndarray:
    """``sqrt(session_sum_r2 / cumulative profile at session_minute)`` per row (module docstring)."""
    cumulative = np.cumsum(profile)
    minute = frame["session_minute"].to_numpy(dtype=np.int64)
    inside = (minute >= 0) & (minute < len(cumulative))
    expected = np.where(inside, cumulative[np.clip(minute, 0, len(cumulative) - 1)], np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.sqrt(frame["session_sum_r2"].to_numpy(dtype=float) / expected)
    return np.where(expected > 0, ratio, np.nan)


@dataclass(frozen=True)
class FeatureScaler:
    """Fitted per-feature centre and scale, the clip applied after scaling, and the volatility profile."""

    center: dict[str, float]
    scale: dict[str, float]
    clip: float = 5.0
    fitted_on: dict[str, Any] = field(default_factory=dict)
    vol_profile: tuple[float, ...] = ()  # empty when session_vol_ratio is not scaled (an older file)

    @classmethod
    def fit(cls, rows: pd.DataFrame, columns: tuple[str, ...] = SCALED_FEATURES, clip: float = 5.0,
            fitted_on: dict[str, Any] | None = None) -> "FeatureScaler":
        """Fit on ``rows``: every bar of the train sessions (the caller passes only train days).

        The volatility profile reads all of them (each session's first minutes included); the
        robust statistics only those ``valid_for_trading`` (all, without that column).
        """
        if clip <= 0:
            raise ValueError(f"clip must be > 0, got {clip}")
        if rows.empty:
            raise ValueError("cannot fit a scaler on zero rows")
        profile: tuple[float, ...] = ()
        if VOL_RATIO in columns:
            profile = fit_vol_profile(rows)
            rows = rows.assign(**{VOL_RATIO: session_vol_ratio(rows, profile)})
        if "valid_for_trading" in rows.columns:
            rows = rows.loc[rows["valid_for_trading"].to_numpy(dtype=bool)]
        if rows.empty:
            raise ValueError("cannot fit a scaler on zero rows valid for trading")
        robust = RobustScaler(quantile_range=(25.0, 75.0)).fit(rows[list(columns)].to_numpy(dtype=float))
        return cls(
            center={c: float(v) for c, v in zip(columns, robust.center_)},
            scale={c: float(v) for c, v in zip(columns, robust.scale_)},
            clip=float(clip),
            fitted_on={"rows": int(len(rows)), **(fitted_on or {})},
            vol_profile=profile,
        )

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """A copy of ``frame`` with ``session_vol_ratio`` computed and the scaled columns replaced
        by their scaled values."""
        out = frame.copy()
        if self.vol_profile:
            out[VOL_RATIO] = session_vol_ratio(frame, self.vol_profile)
        columns = list(self.center)
        center = np.array([self.center[c] for c in columns])
        scale = np.array([self.scale[c] for c in columns])
        out[columns] = np.clip((out[columns].to_numpy(dtype=float) - center) / scale, -self.clip, self.clip)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"center": self.center, "scale": self.scale, "clip": self.clip, "fitted_on": self.fitted_on,
                "vol_profile": list(self.vol_profile)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FeatureScaler":
        missing = {"center", "scale", "clip"} - data.keys()
        if missing:
            raise ValueError(f"scaler file lacks {sorted(missing)}")
        if data["center"].keys() != data["scale"].keys():
            raise ValueError("scaler file: center and scale name different features")
        # Files written before the profile existed do not scale session_vol_ratio and load as they are.
        profile = tuple(float(v) for v in data.get("vol_profile", ()))
        if VOL_RATIO in data["center"] and not profile:
            raise ValueError(f"scaler file scales {VOL_RATIO} but lacks its vol_profile")
        return cls({k: float(v) for k, v in data["center"].items()},
                   {k: float(v) for k, v in data["scale"].items()},
                   float(data["clip"]), dict(data.get("fitted_on", {})), profile)
