"""Build environments from pipeline data and the ``environment`` parameters."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from hybrid_trader.env.engine import EngineConfig
from hybrid_trader.env.market import MarketData
from hybrid_trader.env.vec_env import TradingVecEnv
from hybrid_trader.markets import ContractSpec

__all__ = ["engine_config", "split_days", "market_for_split", "make_vec_env"]


def engine_config(environment_params: dict[str, Any], **overrides: Any) -> EngineConfig:
    """The :class:`EngineConfig` of ``environment.engine``, with overrides (e.g. ``episode_mode``)."""
    return EngineConfig(**{**environment_params["engine"], **overrides})


def split_days(model_input_features: pd.DataFrame, split: str, max_sessions: int | None = None) -> list:
    """The session dates of one split in date order; at most ``max_sessions`` of them, evenly
    spaced over the split when there are more.

    Raises:
        ValueError: the split has no days.
    """
    days = np.sort(model_input_features.loc[model_input_features["split"] == split, "session_date"].unique())
    if len(days) == 0:
        raise ValueError(f"the '{split}' split has no days; check the data_split parameters")
    if max_sessions is not None and len(days) > max_sessions:
        days = days[np.linspace(0, len(days) - 1, max_sessions).round().astype(int)]
    return list(days)


def market_for_split(clean_bars: pd.DataFrame, model_input_features: pd.DataFrame, contract: ContractSpec,
                     environment_params: dict[str, Any], split: str, max_sessions: int | None = None) -> MarketData:
    """Market arrays of the days of one split (``train``, ``validation`` or ``test``); see
    :func:`split_days` for ``max_sessions``.

    Raises:
        ValueError: the split has no days.
    """
    days = split_days(model_input_features, split, max_sessions)
    window = environment_params["entry_window"]
    return MarketData.from_frames(clean_bars, model_input_features, contract, entry_start=window["start"],
                                  entry_end=window["end"], sessions=list(days))


def make_vec_env(market: MarketData, environment_params: dict[str, Any], *, n_envs: int, phase: int,
                 seed: int | None = None, **overrides: Any) -> TradingVecEnv:
    """A :class:`TradingVecEnv` over ``market`` with the configured rules."""
    return TradingVecEnv(market, engine_config(environment_params, **overrides), n_envs=n_envs, phase=phase,
                         seed=seed)
