"""The Apex trailing drawdown along one held position's price path, without a bracket.

One position of ``config.contracts`` contracts of ``contract`` is opened at
``entry_price`` and held over bars ``0 .. n-1`` (their ``high``/``low``; the
entry bar is bar 0, so its extremes come after the entry) and closed at
``exit_price`` after bar ``n-1`` unless the account breaches first:

* equity is the position's liquidation value: ``starting_balance + side x
  (price - entry_price) x multiplier x contracts - round_trip_cost``, where
  ``round_trip_cost = 2 x contracts x (commission_per_side + slippage_ticks x
  tick_size x multiplier)`` (both fills' commission and slippage, charged from
  the entry on, so the last equity is the net P&L);
* each bar is played on the most adverse path it allows, as the engine plays
  it (:mod:`hybrid_trader.env.engine`, step 5): the favourable extreme (the
  high of a long, the low of a short) first raises the equity peak (which
  starts at the starting balance), then the adverse extreme is compared with
  the floor ``min(peak - drawdown_limit, starting_balance +
  threshold_lock_offset)``;
* touching the floor (``equity <= floor``) is a breach: the position is
  liquidated at that bar's adverse extreme (the engine's fill, without a
  further slippage, which the round trip already holds) and the path ends.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hybrid_trader.env.engine import EngineConfig
from hybrid_trader.markets import ContractSpec

__all__ = ["PathOutcome", "round_trip_cost", "apex_path"]


@dataclass(frozen=True)
class PathOutcome:
    """How one held path ended.

    Attributes:
        breach_bar: Index of the bar whose adverse extreme touched the floor; -1 without a breach.
        net_pnl: Final equity minus the starting balance ($, after the round trip's costs).
    """

    breach_bar: int
    net_pnl: float

    @property
    def breached(self) -> bool:
        return self.breach_bar >= 0


def round_trip_cost(contract: ContractSpec, contracts: int) -> float:
    """Commission and slippage of both fills of one position ($), as in the module docstring."""
    per_fill = contract.commission_per_side + contract.slippage_ticks * contract.tick_value
    return 2.0 * contracts * per_fill


def apex_path(side: int, entry_price: float, high: np.ndarray, low: np.ndarray, exit_price: float,
              contract: ContractSpec, config: EngineConfig) -> PathOutcome:
    """The Apex outcome of one position held over a bar path (rules in the module docstring).

    Args:
        side: +1 long, -1 short.
        entry_price: Fill price of the entry (points).
        high, low: The held bars' highs and lows, the entry bar first.
        exit_price: Price at which the position closes after the last bar when it survives.
        contract: The traded contract (multiplier, costs).
        config: Contracts, starting balance, drawdown limit and lock offset.
    """
    if side not in (1, -1):
        raise ValueError(f"side must be +1 or -1, got {side}")
    high, low = np.asarray(high, dtype=float), np.asarray(low, dtype=float)
    if len(high) == 0 or high.shape != low.shape:
        raise ValueError("high and low must be non-empty and of one length")
    value = side * contract.multiplier * config.contracts
    base = config.starting_balance - round_trip_cost(contract, config.contracts)
    favourable, adverse = (high, low) if side > 0 else (low, high)
    peak = np.maximum(config.starting_balance, np.maximum.accumulate(base + value * (favourable - entry_price)))
    floor = np.minimum(peak - config.drawdown_limit, config.starting_balance + config.threshold_lock_offset)
    equity_adverse = base + value * (adverse - entry_price)
    touched = np.flatnonzero(equity_adverse <= floor)
    if len(touched):
        k = int(touched[0])
        return PathOutcome(k, float(equity_adverse[k] - config.starting_balance))
    return PathOutcome(-1, float(base + value * (exit_price - entry_price) - config.starting_balance))
