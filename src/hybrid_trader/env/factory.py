"""Build environments from pipeline data and the ``environment`` parameters."""

from __future__ import annotations

from typing import Any

import pandas as pd

from hybrid_trader.env.engine import EngineConfig
from hybrid_trader.env.market import MarketData
from hybrid_trader.env.vec_env import TradingVecEnv
from hybrid_trader.markets import ContractSpec

__all__ = ["engine_config", "market_for_split", "make_vec_env"]


def engine_config(environment_params: dict[str, Any], **overrides: Any) -> EngineConfig:
    """The :class:`EngineConfig` of ``environment.engine``, with overrides (e.g. ``episode_mode``)."""
    return EngineConfig(**{**environment_params["engine"], **overrides})


def market_for_split(clean_bars: pd.DataFrame, model_input_features: pd.DataFrame, contract: ContractSpec,
                     environment_params: dict[str, Any], split: str) -> MarketData:
    """Market arrays of the days of one split (``train``, ``validation`` or ``test``).

    Raises:
        ValueError: the split has no days.
    """
    days = model_input_features.loc[model_input_features["split"] == split, "session_date"].unique()
    if len(days) == 0:
        raise ValueError(f"the '{split}' split has no days; check the data_split parameters")
    window = environment_params["entry_window"]
    return MarketData.from_frames(clean_bars, model_input_features, contract, entry_start=window["start"],
                                  entry_end=window["end"], sessions=list(days))


def make_vec_env(market: MarketData, environment_params: dict[str, Any], *, n_envs: int, phase: int,
                 seed: int | None = None, **overrides: Any) -> TradingVecEnv:
    """A :class:`TradingVecEnv` over ``market`` with the configured rules."""
    return TradingVecEnv(market, engine_config(environment_params, **overrides), n_envs=n_envs, phase=phase,
                         seed=seed)
