"""Hand-made markets for golden tests of the engine."""

from __future__ import annotations

import numpy as np

from hybrid_trader.env.market import MarketData
from hybrid_trader.features.registry import CONTEXT_FEATURES, WINDOW_FEATURES
from hybrid_trader.markets import CONTRACTS


def make_market(opens, highs=None, lows=None, closes=None, *, symbol="NQ", atr=10.0,
                sessions=None, entry_allowed=None) -> MarketData:
    """A market from explicit bars. ``sessions``: bars per session (default: one session).

    Every bar but each session's last may start an episode and allow entries,
    unless ``entry_allowed`` says otherwise.
    """
    opens = np.asarray(opens, dtype=float)
    n = len(opens)
    closes = opens.copy() if closes is None else np.asarray(closes, dtype=float)
    highs = np.maximum(opens, closes) if highs is None else np.asarray(highs, dtype=float)
    lows = np.minimum(opens, closes) if lows is None else np.asarray(lows, dtype=float)
    lengths = [n] if sessions is None else list(sessions)
    assert sum(lengths) == n
    session_id = np.repeat(np.arange(len(lengths)), lengths)
    ends = np.cumsum(lengths) - 1
    session_last = ends[session_id]
    rows = np.arange(n)
    not_last = rows < session_last
    allowed = (rows + 1 < session_last) if entry_allowed is None else np.asarray(entry_allowed, dtype=bool)
    rng = np.random.default_rng(0)
    return MarketData(
        contract=CONTRACTS[symbol],
        open=opens, high=highs, low=lows, close=closes,
        atr=np.full(n, float(atr)) if np.isscalar(atr) else np.asarray(atr, dtype=float),
        window_features=rng.normal(size=(n, len(WINDOW_FEATURES))).astype(np.float32),
        context_features=rng.normal(size=(n, len(CONTEXT_FEATURES))).astype(np.float32),
        session_id=session_id, session_last=session_last,
        entry_allowed=allowed & not_last, episode_start=not_last,
        session_dates=np.array([f"2024-01-{d + 2:02d}" for d in range(len(lengths))], dtype="datetime64[D]"),
    )
