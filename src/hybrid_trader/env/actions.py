"""The action space shared by Phase 2 and Phase 3 (``Discrete(7)``)."""

from enum import IntEnum


class Action(IntEnum):
    """What the agent decides at the close of a bar (executed from the next bar on)."""

    HOLD = 0
    BUY = 1  # enter long (only when flat, inside the entry window)
    SELL = 2  # enter short (only when flat, inside the entry window)
    MOVE_SL_TO_BREAKEVEN = 3  # only in a profitable position whose stop is still worse than entry
    ENABLE_TRAILING_STOP = 4  # only in a position with the trailing stop off
    DISABLE_TRAILING_STOP = 5  # only in a position with the trailing stop on
    EXIT = 6  # close the open position at the next bar's open; only in a position (and with exit_action on)


N_ACTIONS = len(Action)
