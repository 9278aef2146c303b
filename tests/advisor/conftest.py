import numpy as np


def up_state(**overrides):
    """A flat account in an up market at 12:30-13:00 New York (195 of 390 minutes), the session
    6 ATR above its first open (``up 5-15 ATR``), volatility as usual for the time (ratio 1.0)."""
    state = dict(sma50_slope=1.0, adx14=35.0, rsi14=68.0, momentum30=0.006, vwap_distance=2.0,
                 volatility_percentile=0.5, atr14=18.0, minutes_since_open=0.5, session_move_atr=6.0,
                 session_vol_ratio=1.0, position_side=0, unrealized_pnl=0.0, drawdown_buffer=2500.0,
                 minutes_to_flat=300.0)
    state.update(overrides)
    return state


def mirrored(state):
    """The same situation upside down."""
    return dict(state, sma50_slope=-state["sma50_slope"], rsi14=100 - state["rsi14"],
                momentum30=-state["momentum30"], vwap_distance=-state["vwap_distance"],
                session_move_atr=-state["session_move_atr"])


# HOLD BUY SELL BREAKEVEN TRAIL UNTRAIL EXIT
FLAT_MASK = np.array([True, True, True, False, False, False, False])
LONG_MASK = np.array([True, False, False, True, True, False, True])
