"""Regime labels per trading day and the train / validation / test split.

Labels come from ex-post statistics of each day's regular session (09:30 to
the last bar): realized-volatility tercile x direction of the day's move,
e.g. ``high_vol_up``. They exist to stratify the split and to report by
regime; they are never features. Tercile edges are fitted on the development
days (everything but the held-out test days), so the test days influence
nothing.

The split: the most recent ``test_fraction`` of days are the test set. The
remaining days are assigned to validation by regime, in proportion
(largest-remainder quotas, seeded choice within a regime), and the rest to
train. With ``embargo_days = k``, a train day within ``k`` sessions of a
validation day or of the first test day is set aside as ``embargoed``; it is
needed only when some feature's look-back crosses sessions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "SPLITS", "SplitConfig", "daily_statistics", "fit_regime_thresholds", "label_regimes",
    "split_days", "split_summary",
]

SPLITS = ("train", "validation", "test", "embargoed")
_VOL_NAMES = ("low_vol", "mid_vol", "high_vol")


@dataclass(frozen=True)
class SplitConfig:
    """Options of the split (``data_split`` parameters).

    Attributes:
        test_fraction: Share of the most recent days held out as the test set.
        validation_fraction: Share of the remaining days used for validation.
        embargo_days: Sessions set aside around each validation day and before the test block.
        seed: Seed of the choice of validation days within a regime.
    """

    test_fraction: float = 0.2
    validation_fraction: float = 0.2
    embargo_days: int = 0
    seed: int = 7

    def __post_init__(self) -> None:
        for name in ("test_fraction", "validation_fraction"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise ValueError(f"data_split.{name} must be in (0, 1), got {value}")
        if self.embargo_days < 0:
            raise ValueError(f"data_split.embargo_days must be >= 0, got {self.embargo_days}")


def daily_statistics(bars: pd.DataFrame) -> pd.DataFrame:
    """Per session, over the regular session (bars from 09:30 on).

    Returns:
        ``session_date``, ``rth_return`` (log of last close over the 09:30 open),
        ``realized_vol`` (square root of the sum of squared 1-minute log returns),
        ``range_pct`` ((high - low) / 09:30 open).
    """
    ts = bars["timestamp"]
    rth = bars.loc[(ts.dt.hour * 60 + ts.dt.minute) >= 9 * 60 + 30]
    grouped = rth.groupby("session_date", sort=True)
    log_close = np.log(rth["close"])
    squared = (log_close.groupby(rth["session_date"]).diff() ** 2).groupby(rth["session_date"]).sum()
    stats = pd.DataFrame(
        {
            "rth_return": np.log(grouped["close"].last() / grouped["open"].first()),
            "realized_vol": np.sqrt(squared),
            "range_pct": (grouped["high"].max() - grouped["low"].min()) / grouped["open"].first(),
        }
    )
    return stats.rename_axis("session_date").reset_index()


def fit_regime_thresholds(stats: pd.DataFrame) -> dict[str, Any]:
    """Realized-volatility tercile edges of the given days."""
    edges = np.quantile(stats["realized_vol"], [1 / 3, 2 / 3])
    return {"realized_vol_terciles": [float(edges[0]), float(edges[1])], "fitted_on_days": int(len(stats))}


def label_regimes(stats: pd.DataFrame, thresholds: dict[str, Any]) -> pd.Series:
    """``<low|mid|high>_vol_<up|down>`` per day (a day with no net move counts as up)."""
    tercile = np.searchsorted(np.asarray(thresholds["realized_vol_terciles"]), stats["realized_vol"], side="right")
    direction = np.where(stats["rth_return"] >= 0, "up", "down")
    return pd.Series([f"{_VOL_NAMES[t]}_{d}" for t, d in zip(tercile, direction)], index=stats.index, name="regime")


def split_days(stats: pd.DataFrame, config: SplitConfig) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Assign every day to ``train``, ``validation``, ``test`` or ``embargoed``.

    Args:
        stats: :func:`daily_statistics` output, one row per session.
        config: Split options.

    Returns:
        ``(splits, thresholds)``: ``session_date``, ``regime``, ``split`` and the
        day statistics, in date order; and the regime thresholds used.

    Raises:
        ValueError: too few days for a non-empty train, validation and test set.
    """
    days = stats.sort_values("session_date").reset_index(drop=True)
    n = len(days)
    n_test = max(1, int(round(config.test_fraction * n)))
    n_dev = n - n_test
    n_val = int(round(config.validation_fraction * n_dev))
    if n_dev < 2 or n_val < 1 or n_dev - n_val < 1:
        raise ValueError(
            f"{n} trading days are too few for test_fraction={config.test_fraction} and "
            f"validation_fraction={config.validation_fraction}: need at least one train, "
            "validation and test day"
        )
    dev = days.iloc[:n_dev]
    thresholds = fit_regime_thresholds(dev)
    days["regime"] = label_regimes(days, thresholds)
    days["split"] = "train"
    days.loc[n_dev:, "split"] = "test"

    counts = days.iloc[:n_dev]["regime"].value_counts().sort_index()
    quotas = _largest_remainder(counts * config.validation_fraction, n_val)
    rng = np.random.default_rng(config.seed)
    for regime, quota in quotas.items():
        members = days.index[:n_dev][days.iloc[:n_dev]["regime"] == regime]
        chosen = rng.choice(members, size=int(quota), replace=False) if quota else []
        days.loc[chosen, "split"] = "validation"

    if config.embargo_days:
        guarded = np.flatnonzero(days["split"].eq("validation").to_numpy())
        guarded = np.append(guarded, n_dev)  # the first test day
        distance = np.abs(np.arange(n)[:, None] - guarded[None, :]).min(axis=1)
        near = (distance <= config.embargo_days) & days["split"].eq("train").to_numpy()
        days.loc[near, "split"] = "embargoed"
        if not days["split"].eq("train").any():
            raise ValueError(f"embargo_days={config.embargo_days} leaves no train day")
    columns = ["session_date", "regime", "split", "rth_return", "realized_vol", "range_pct"]
    return days[columns], thresholds


def _largest_remainder(shares: pd.Series, total: int) -> pd.Series:
    floors = np.floor(shares).astype(int)
    short = total - int(floors.sum())
    order = (shares - floors).sort_values(ascending=False, kind="stable").index[:max(short, 0)]
    floors.loc[order] += 1
    return floors


def split_summary(splits: pd.DataFrame, hidden_regimes: pd.DataFrame | None = None) -> dict[str, Any]:
    """Days per regime per split (and per hidden synthetic regime, when known)."""
    table = pd.crosstab(splits["regime"], splits["split"]).reindex(columns=list(SPLITS), fill_value=0)
    summary: dict[str, Any] = {
        "days": {s: int((splits["split"] == s).sum()) for s in SPLITS},
        "days_per_regime": {r: {s: int(v) for s, v in row.items()} for r, row in table.iterrows()},
        "first_test_day": str(pd.Timestamp(splits.loc[splits["split"] == "test", "session_date"].min()).date()),
    }
    if hidden_regimes is not None and len(hidden_regimes):
        merged = splits.merge(hidden_regimes, on="session_date", suffixes=("", "_hidden"))
        hidden = pd.crosstab(merged["regime_hidden"], merged["split"]).reindex(columns=list(SPLITS), fill_value=0)
        summary["days_per_hidden_synthetic_regime"] = {
            r: {s: int(v) for s, v in row.items()} for r, row in hidden.iterrows()
        }
    return summary
