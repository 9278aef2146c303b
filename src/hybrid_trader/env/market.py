"""Market arrays the engine steps through: one flat, time-ordered row per bar.

Built from the clean bars, the (scaled) bar features, the session table and
the entry window. Row ``t`` is a bar; ``session_last[t]`` is the row of its
session's last bar, ``episode_start[t]`` tells whether an episode may begin
there, ``entry_allowed[t]`` whether a new position may be opened by a decision
at the close of bar ``t``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from hybrid_trader.features.registry import CONTEXT_FEATURES, WINDOW_FEATURES, WINDOW_LENGTH
from hybrid_trader.markets import ContractSpec

__all__ = ["MarketData", "parse_clock"]


def parse_clock(value: str | dt.time) -> int:
    """Minutes after midnight of an ``"HH:MM"`` string."""
    if isinstance(value, dt.time):
        return value.hour * 60 + value.minute
    hours, minutes = str(value).split(":")
    return int(hours) * 60 + int(minutes)


@dataclass(frozen=True)
class MarketData:
    """Arrays of one set of sessions (e.g. the train days), aligned row by row."""

    contract: ContractSpec
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    atr: np.ndarray  # ATR-14 in points at each bar's close
    window_features: np.ndarray  # float32 (T, len(WINDOW_FEATURES)), scaled, in the registry's order
    context_features: np.ndarray  # float32 (T, len(CONTEXT_FEATURES)), scaled, in the registry's order
    session_id: np.ndarray  # int (T,)
    session_last: np.ndarray  # int (T,): row of the session's last bar
    entry_allowed: np.ndarray  # bool (T,)
    episode_start: np.ndarray  # bool (T,): valid observation window and not the last bar
    session_dates: np.ndarray  # (S,) dates, indexed by session_id

    @cached_property
    def windows(self) -> np.ndarray:
        """``(T - 19, 220)`` float32: row ``i`` holds the window features of bars
        ``i .. i + 19``, feature-major and oldest first (the registry's order).
        Materialised once (about 880 bytes a bar) so a step gathers whole rows."""
        view = np.lib.stride_tricks.sliding_window_view(self.window_features, WINDOW_LENGTH, axis=0)
        return np.ascontiguousarray(view).reshape(len(view), -1)

    @cached_property
    def final_row(self) -> np.ndarray:
        """``(T,)`` booleans: true only at the data's last row."""
        final = np.zeros(len(self.close), dtype=bool)
        final[-1] = True
        return final

    @property
    def n_bars(self) -> int:
        return len(self.close)

    @property
    def n_sessions(self) -> int:
        return len(self.session_dates)

    @classmethod
    def from_frames(
        cls,
        bars: pd.DataFrame,
        features: pd.DataFrame,
        contract: ContractSpec,
        *,
        entry_start: str = "09:30",
        entry_end: str = "16:00",
        sessions: list | None = None,
    ) -> "MarketData":
        """Align clean bars with (scaled) features and keep the chosen sessions.

        Args:
            bars: Clean bars (``timestamp``, ``session_date``, OHLC).
            features: Bar features of the same bars, same order (scaled for the
                agent's view: the fitted scaler's output, which holds ``session_vol_ratio``),
                with ``atr14`` in points and ``valid_for_trading``; read by the registry's names.
            contract: The traded contract.
            entry_start, entry_end: New York clock times between which (inclusive)
                a decision may open a position.
            sessions: Session dates to keep (e.g. the train days); all when ``None``.

        Raises:
            ValueError: bars and features are not the same rows, or no session is left.
        """
        if len(bars) != len(features) or not (
            bars["timestamp"].to_numpy() == features["timestamp"].to_numpy()
        ).all():
            raise ValueError("bars and features must hold the same bars in the same order")
        keep = np.ones(len(bars), dtype=bool)
        if sessions is not None:
            keep = bars["session_date"].isin(pd.to_datetime(pd.Series(sessions))).to_numpy()
        if not keep.any():
            raise ValueError("no bars left for the requested sessions")
        bars, features = bars.loc[keep].reset_index(drop=True), features.loc[keep].reset_index(drop=True)

        codes, dates = pd.factorize(bars["session_date"], sort=True)
        rows = np.arange(len(bars))
        last_row = pd.Series(rows).groupby(codes).transform("max").to_numpy()
        first_row = pd.Series(rows).groupby(codes).transform("min").to_numpy()
        clock = (bars["timestamp"].dt.hour * 60 + bars["timestamp"].dt.minute).to_numpy()
        valid = features["valid_for_trading"].to_numpy(dtype=bool)
        # The observation window must lie inside the session.
        window_inside = rows - first_row >= WINDOW_LENGTH - 1
        can_decide = valid & window_inside & (rows < last_row)
        in_window = (clock >= parse_clock(entry_start)) & (clock <= parse_clock(entry_end))
        window_names = [f.name for f in WINDOW_FEATURES]
        context_names = [f.name for f in CONTEXT_FEATURES]
        return cls(
            contract=contract,
            open=bars["open"].to_numpy(dtype=np.float64),
            high=bars["high"].to_numpy(dtype=np.float64),
            low=bars["low"].to_numpy(dtype=np.float64),
            close=bars["close"].to_numpy(dtype=np.float64),
            atr=features["atr14"].to_numpy(dtype=np.float64),
            window_features=np.nan_to_num(features[window_names].to_numpy(dtype=np.float32)),
            context_features=np.nan_to_num(features[context_names].to_numpy(dtype=np.float32)),
            session_id=codes.astype(np.int64),
            session_last=last_row.astype(np.int64),
            entry_allowed=can_decide & in_window & (rows + 1 < last_row),
            episode_start=can_decide,
            session_dates=np.asarray(dates),
        )
