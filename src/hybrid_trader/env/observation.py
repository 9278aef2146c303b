"""The agent's view: observation vectors assembled from the registry's layout.

Window and context columns are the train-scaled bar features of the market
arrays; position, state and account columns come from the engine's state as
defined in :mod:`hybrid_trader.features.registry`. Phase 2 sees the first 228
columns, Phase 3 all 261 (the first 228 are identical in both).
"""

from __future__ import annotations

import numpy as np

from hybrid_trader.env.engine import TradingEngine
from hybrid_trader.features.registry import (
    ACCOUNT_FEATURES, CONTEXT_FEATURES, OBSERVATION_NAMES, PHASE2_DIM, PHASE3_DIM, POSITION_FEATURES, RTH_MINUTES,
    STATE_FEATURES, WINDOW_FEATURES, WINDOW_LENGTH,
)

__all__ = ["ObservationBuilder", "observation_dim"]

# build() writes the engine's columns one by one, in the registry's order.
assert (len(POSITION_FEATURES), len(STATE_FEATURES), len(ACCOUNT_FEATURES)) == (5, 3, 7)
assert STATE_FEATURES[2].name == "drawdown_buffer" and ACCOUNT_FEATURES[1].name == "realized_pnl_today"


def observation_dim(phase: int) -> int:
    """228 for Phase 2, 261 for Phase 3."""
    if phase not in (2, 3):
        raise ValueError(f"phase must be 2 or 3, got {phase}")
    return PHASE2_DIM if phase == 2 else PHASE3_DIM


class ObservationBuilder:
    """Turns engine state into float32 observations of one phase's layout."""

    def __init__(self, phase: int) -> None:
        self.phase = phase
        self.dim = observation_dim(phase)
        self.names = OBSERVATION_NAMES[: self.dim]
        self._n_window = len(WINDOW_FEATURES) * WINDOW_LENGTH

    def build(self, engine: TradingEngine) -> np.ndarray:
        """``(n_envs, dim)`` observations at each environment's current close."""
        market, t = engine.market, engine.t
        n = engine.n_envs
        obs = np.empty((n, self.dim), dtype=np.float32)
        # windows[i] = features of bars i .. i+19, feature-major and oldest first.
        obs[:, : self._n_window] = market.windows[t - (WINDOW_LENGTH - 1)]

        side = engine.side
        in_position = side != 0
        atr = np.maximum(market.atr[t], market.contract.tick_size)
        close = market.close[t]
        k = self._n_window
        obs[:, k] = side
        obs[:, k + 1] = engine.bars_in_position / RTH_MINUTES
        # side is 0 when flat, so these read 0 without a branch.
        obs[:, k + 2] = side * (close - engine.entry) / atr
        obs[:, k + 3] = side * (close - engine.stop) / atr
        obs[:, k + 4] = side * (engine.target - close) / atr
        k += len(POSITION_FEATURES)
        limit = engine.config.drawdown_limit
        obs[:, k] = engine.at_breakeven
        obs[:, k + 1] = engine.trailing
        obs[:, k + 2] = (engine.equity - engine.floor) / limit
        if self.phase == 3:
            k += len(STATE_FEATURES)
            obs[:, k: k + len(CONTEXT_FEATURES)] = market.context_features[t]
            k += len(CONTEXT_FEATURES)
            obs[:, k] = (engine.equity - engine.config.starting_balance) / limit
            obs[:, k + 1] = engine.realized_today / limit
            obs[:, k + 2] = np.minimum(engine.consecutive_losses / 5.0, 1.0)
            obs[:, k + 3] = engine.recent_win_rate()
            obs[:, k + 4] = in_position * engine.mae / atr
            obs[:, k + 5] = in_position * engine.mfe / atr
            obs[:, k + 6] = engine.trades_today / 10.0
        return obs
