import numpy as np


def up_state(**overrides):
    state = dict(sma50_slope=1.0, adx14=35.0, rsi14=68.0, momentum30=0.006, vwap_distance=2.0,
                 volatility_percentile=0.5, atr14=18.0, position_side=0, unrealized_pnl=0.0,
                 drawdown_buffer=2500.0, minutes_to_flat=300.0)
    state.update(overrides)
    return state


def mirrored(state):
    """The same situation upside down."""
    return dict(state, sma50_slope=-state["sma50_slope"], rsi14=100 - state["rsi14"],
                momentum30=-state["momentum30"], vwap_distance=-state["vwap_distance"])


# HOLD BUY SELL BREAKEVEN TRAIL UNTRAIL EXIT
FLAT_MASK = np.array([True, True, True, False, False, False, False])
LONG_MASK = np.array([True, False, False, True, True, False, True])
