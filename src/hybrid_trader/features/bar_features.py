"""Per-bar features, computed causally and per session.

:func:`compute_bar_features` returns one row per bar with every feature of
:data:`~hybrid_trader.features.registry.BAR_FEATURES` (the meanings there are
the definitions) except the train-profile ones, ``atr14`` in points (for the
engine's stops; not an observation), the inputs of the train-profile features
(:data:`PROFILE_INPUTS`; the fitted scaler turns them into
``session_vol_ratio``), and ``valid_for_trading``. Warm-up rows, where a
feature or any bar of its 20-bar observation window is still undefined, are NaN
and marked invalid; they are never back-filled.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hybrid_trader.features import indicators as ind
from hybrid_trader.features.registry import BAR_FEATURES, RTH_MINUTES, WINDOW_FEATURES, WINDOW_LENGTH

__all__ = ["SessionPanel", "compute_bar_features", "FEATURE_LOOKBACK_SESSIONS", "FEATURE_NAMES", "PROFILE_INPUTS"]

# The features computed here; the train-profile ones need statistics across train days (scaling.py).
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in BAR_FEATURES if not f.train_profile)
# Per bar: minutes since the session's first bar, and the sum of squared 1-bar log returns of the
# session through this bar (0 at its first bar, which has no return). Not observations.
PROFILE_INPUTS: tuple[str, ...] = ("session_minute", "session_sum_r2")
# Every window restarts at each session's first bar: no feature looks into an earlier day.
FEATURE_LOOKBACK_SESSIONS = 0


class SessionPanel:
    """Reshape long bars (sorted by time) to one column per session and back."""

    def __init__(self, session_date: pd.Series) -> None:
        codes, self.sessions = pd.factorize(session_date, sort=False)
        if not (np.diff(codes) >= 0).all():
            raise ValueError("bars must be sorted by time, one contiguous block per session")
        self._cols = codes
        self._rows = pd.Series(codes).groupby(codes).cumcount().to_numpy()
        self.shape = (int(self._rows.max()) + 1 if len(codes) else 0, len(self.sessions))

    def wide(self, values: pd.Series | np.ndarray) -> pd.DataFrame:
        grid = np.full(self.shape, np.nan)
        grid[self._rows, self._cols] = np.asarray(values, dtype=float)
        return pd.DataFrame(grid)

    def long(self, wide: pd.DataFrame) -> np.ndarray:
        return wide.to_numpy()[self._rows, self._cols]


def compute_bar_features(bars: pd.DataFrame, sessions: pd.DataFrame) -> pd.DataFrame:
    """Compute every bar feature.

    Args:
        bars: Clean bars (``timestamp`` in New York time, ``session_date``,
            ``open``, ``high``, ``low``, ``close``, ``volume``), sorted by time.
        sessions: The trading-session table (``session_date``, ``rth_open``, ``last_bar``).

    Returns:
        ``timestamp``, ``session_date``, the features named in :data:`FEATURE_NAMES`,
        ``atr14`` (points), :data:`PROFILE_INPUTS` and ``valid_for_trading``, one row per bar,
        in order.
    """
    bars = bars.reset_index(drop=True)
    panel = SessionPanel(bars["session_date"])
    o, h, l, c, v = (panel.wide(bars[col]) for col in ("open", "high", "low", "close", "volume"))

    atr14 = ind.atr(h, l, c, 14)
    sma5, sma20, sma50 = ind.sma(c, 5), ind.sma(c, 20), ind.sma(c, 50)
    sma200 = ind.sma(c, 200, min_periods=60)
    mean_volume20 = ind.sma(v, 20)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel_volume = (v / mean_volume20).mask(mean_volume20 == 0, 1.0)
    adx14 = ind.adx(h, l, c, 14)
    atr_rel = atr14 / c
    high5, low5 = h.rolling(5).max(), l.rolling(5).min()
    high10, low10 = h.rolling(10).max(), l.rolling(10).min()
    high10_before, low10_before = high10.shift(10), low10.shift(10)
    prior_high20, prior_low20 = h.rolling(20).max().shift(1), l.rolling(20).min().shift(1)
    log_return = ind.log_change(c, 1)
    first_open = o.iloc[0]
    # The path from the session's first open: its first bar's open-to-close leg, then close to close.
    path = (c - c.shift(1)).abs().fillna(0.0).cumsum() + (c.iloc[0] - first_open).abs()

    def flag(condition: pd.DataFrame, *inputs: pd.DataFrame) -> pd.DataFrame:
        defined = np.logical_and.reduce([x.notna() for x in inputs])
        return condition.astype(float).where(defined)

    wide_features: dict[str, pd.DataFrame] = {
        "log_return": log_return,
        "rel_volume": rel_volume,
        "close_vs_sma5": c / sma5 - 1.0,
        "close_vs_sma20": c / sma20 - 1.0,
        "rsi14": ind.rsi(c, 14),
        "macd_atr": ind.macd(c) / atr14,
        "momentum10": ind.log_change(c, 10),
        "atr14_rel": atr_rel,
        "adx14": adx14,
        "adx14_slope": adx14 - adx14.shift(5),
        "efficiency_ratio20": ind.efficiency_ratio(c, 20),
        "volatility_percentile": atr_rel.rolling(390, min_periods=30).rank(pct=True),
        "sma50_slope": (sma50 - sma50.shift(10)) / atr14,
        "sma200_slope": (sma200 - sma200.shift(10)) / atr14,
        "close_vs_sma50": (c - sma50) / atr14,
        "momentum30": ind.log_change(c, 30),
        "momentum60": ind.log_change(c, 60),
        "rsi28": ind.rsi(c, 28),
        "rsi56": ind.rsi(c, 56),
        "vwap_distance": (c - ind.session_vwap(h, l, c, v)) / atr14,
        "volume_regime": ind.sma(v, 30) / ind.sma(v, 120, min_periods=60),
        "dist_resistance20": (h.rolling(20).max() - c) / atr14,
        "dist_support20": (c - l.rolling(20).min()) / atr14,
        "higher_high": flag(high5 > high5.shift(5), high5.shift(5)),
        "lower_low": flag(low5 < low5.shift(5), low5.shift(5)),
        "higher_low": flag(low5 > low5.shift(5), low5.shift(5)),
        "lower_high": flag(high5 < high5.shift(5), high5.shift(5)),
        "double_top": flag(
            ((high10_before - high10).abs() <= 0.25 * atr14)
            & (c <= np.fmax(high10_before, high10) - 0.5 * atr14),
            high10_before, atr14,
        ),
        "double_bottom": flag(
            ((low10_before - low10).abs() <= 0.25 * atr14)
            & (c >= np.fmin(low10_before, low10) + 0.5 * atr14),
            low10_before, atr14,
        ),
        "breakout": flag(c > prior_high20, prior_high20),
        "breakdown": flag(c < prior_low20, prior_low20),
        "bar_range_atr": (h - l) / atr14,
        "session_move_atr": (c - first_open) / atr14,
        "session_efficiency": ((c - first_open).abs() / path).mask(path == 0),
    }
    out = pd.DataFrame({"timestamp": bars["timestamp"], "session_date": bars["session_date"]})
    for name, wide in wide_features.items():
        out[name] = panel.long(wide.replace([np.inf, -np.inf], np.nan))
    out = out.join(_time_features(bars, sessions))
    out = out[["timestamp", "session_date", *FEATURE_NAMES]]
    out["atr14"] = panel.long(atr14)
    since_first = bars["timestamp"] - bars.groupby("session_date", sort=False)["timestamp"].transform("first")
    out["session_minute"] = (since_first.dt.total_seconds() // 60).astype(np.int64).to_numpy()
    out["session_sum_r2"] = panel.long((log_return ** 2).fillna(0.0).cumsum())

    # Valid when every feature is defined now and the window's features on each of its 20 bars.
    # session_vol_ratio (computed by the fitted scaler) is defined wherever log_return is.
    window_defined = pd.DataFrame(np.logical_and.reduce(
        [panel.wide(out[f.name].notna()).to_numpy() == 1.0 for f in WINDOW_FEATURES if not f.train_profile]
    ).astype(float))
    window_ok = window_defined.rolling(WINDOW_LENGTH, min_periods=WINDOW_LENGTH).min() == 1.0
    out["valid_for_trading"] = panel.long(window_ok).astype(bool) & out[list(FEATURE_NAMES)].notna().all(axis=1)
    return out


def _time_features(bars: pd.DataFrame, sessions: pd.DataFrame) -> pd.DataFrame:
    ts = bars["timestamp"]
    table = sessions.set_index(pd.to_datetime(sessions["session_date"]))
    day = pd.to_datetime(bars["session_date"])
    missing = set(day.unique()) - set(table.index)
    if missing:
        raise ValueError(f"bars of sessions missing from the session table: {sorted(missing)[:5]}")
    rth_open = day.map(table["rth_open"])
    last_bar = day.map(table["last_bar"])
    return pd.DataFrame(
        {
            "minutes_since_open": (ts - rth_open).dt.total_seconds().to_numpy() / 60.0 / RTH_MINUTES,
            "minutes_to_flat": (last_bar - ts).dt.total_seconds().to_numpy() / 60.0 / RTH_MINUTES,
        },
        index=bars.index,
    )
