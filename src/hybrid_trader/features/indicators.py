"""Indicators on a *session panel*: one column per session, one row per minute.

Every function takes and returns wide ``DataFrame`` s whose row ``i`` is the
``i``-th bar of each session, so all rolling windows, EMAs and Wilder
averages run down each column and can never cross from one session into the
next (the overnight gap is never treated as contiguous). Rows after a short
session's last bar are NaN and stay NaN. Values at row ``i`` depend only on
rows ``<= i``: nothing leaks from the future.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = [
    "sma", "ema", "wilder", "true_range", "atr", "rsi", "macd", "adx",
    "efficiency_ratio", "session_vwap", "log_change",
]


def sma(x: pd.DataFrame, n: int, min_periods: int | None = None) -> pd.DataFrame:
    """Simple moving average over the last ``n`` bars (``min_periods`` defaults to ``n``)."""
    return x.rolling(n, min_periods=min_periods or n).mean()


def ema(x: pd.DataFrame, span: int) -> pd.DataFrame:
    """Exponential average with ``alpha = 2 / (span + 1)``, started at the first value,
    undefined for the first ``span - 1`` bars."""
    return x.ewm(span=span, adjust=False, min_periods=span).mean().where(x.notna())


def wilder(x: pd.DataFrame, n: int) -> pd.DataFrame:
    """Wilder's average: the mean of the first ``n`` values, then
    ``avg_t = avg_{t-1} + (x_t - avg_{t-1}) / n``."""
    seed = x.rolling(n, min_periods=n).mean()
    defined = seed.notna().cumsum()
    start = x.where(defined > 1).mask(defined == 1, seed)
    return start.ewm(alpha=1.0 / n, adjust=False).mean().where((defined >= 1) & x.notna())


def true_range(high: pd.DataFrame, low: pd.DataFrame, close: pd.DataFrame) -> pd.DataFrame:
    """``max(high - low, |high - prev close|, |low - prev close|)``; the first bar of a
    session has no previous close in the session and uses ``high - low``."""
    prev = close.shift(1)
    ranges = np.fmax(high - low, np.fmax((high - prev).abs(), (low - prev).abs()))
    return ranges.where(high.notna())


def atr(high: pd.DataFrame, low: pd.DataFrame, close: pd.DataFrame, n: int = 14) -> pd.DataFrame:
    """Average true range, Wilder-smoothed over ``n`` bars."""
    return wilder(true_range(high, low, close), n)


def rsi(close: pd.DataFrame, n: int = 14) -> pd.DataFrame:
    """Wilder's RSI, 0-100: ``100 - 100 / (1 + avg gain / avg loss)`` over 1-bar changes;
    100 when there are no losses, 50 when there is no change at all."""
    delta = close.diff()
    gain = wilder(delta.clip(lower=0.0), n)
    loss = wilder((-delta).clip(lower=0.0), n)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = 100.0 - 100.0 / (1.0 + gain / loss)
    value = value.mask((loss == 0) & (gain > 0), 100.0).mask((loss == 0) & (gain == 0), 50.0)
    return value.where(gain.notna())


def macd(close: pd.DataFrame, fast: int = 12, slow: int = 26) -> pd.DataFrame:
    """MACD line: ``EMA(fast) - EMA(slow)`` of the close."""
    return ema(close, fast) - ema(close, slow)


def adx(high: pd.DataFrame, low: pd.DataFrame, close: pd.DataFrame, n: int = 14) -> pd.DataFrame:
    """Wilder's ADX, 0-100.

    ``+DM = up`` if ``up > down`` and ``up > 0`` else 0 (``up = high - prev high``,
    ``down = prev low - low``), ``-DM`` symmetrically; ``+DI = 100 wilder(+DM) /
    wilder(TR)``; ``DX = 100 |+DI - -DI| / (+DI + -DI)``; ``ADX = wilder(DX)``.
    """
    up = high.diff()
    down = -low.diff()
    plus_dm = up.where((up > down) & (up > 0), 0.0).where(up.notna())
    minus_dm = down.where((down > up) & (down > 0), 0.0).where(down.notna())
    tr = true_range(high, low, close).where(up.notna())
    tr_avg = wilder(tr, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        plus_di = (100.0 * wilder(plus_dm, n) / tr_avg).mask(tr_avg == 0, 0.0)
        minus_di = (100.0 * wilder(minus_dm, n) / tr_avg).mask(tr_avg == 0, 0.0)
        dx = 100.0 * (plus_di - minus_di).abs() / (plus_di + minus_di)
    # No directional movement at all: no trend.
    dx = dx.mask(plus_di + minus_di == 0, 0.0)
    return wilder(dx, n)


def efficiency_ratio(close: pd.DataFrame, n: int = 20) -> pd.DataFrame:
    """Kaufman's efficiency ratio: net change over ``n`` bars / sum of absolute changes, 0-1
    (0 when the price did not move)."""
    net = (close - close.shift(n)).abs()
    path = close.diff().abs().rolling(n, min_periods=n).sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = net / path
    return ratio.mask((path == 0) & net.notna(), 0.0)


def session_vwap(high: pd.DataFrame, low: pd.DataFrame, close: pd.DataFrame,
                 volume: pd.DataFrame) -> pd.DataFrame:
    """Volume-weighted average of the typical price ``(H + L + C) / 3`` since the session's
    first bar; before any volume, the typical price itself."""
    typical = (high + low + close) / 3.0
    cum_volume = volume.cumsum()
    with np.errstate(divide="ignore", invalid="ignore"):
        value = (typical * volume).cumsum() / cum_volume
    return value.mask(cum_volume == 0, typical)


def log_change(close: pd.DataFrame, n: int) -> pd.DataFrame:
    """``log(close_t / close_{t-n})``."""
    return np.log(close / close.shift(n))
