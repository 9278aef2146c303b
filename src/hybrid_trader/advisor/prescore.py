"""Advice computed ahead of training, for the situations the data contains.

Every bucket combination of the full prompt is far too many to score
(thousands of market buckets times position, P&L, buffer and time buckets);
the situations worth scoring first are those the data shows. The flat-account
prompts of every tradable bar (position flat, no open P&L, a full drawdown
buffer, the bar's own time to the deadline) are collected, deduplicated by
prompt text and scored in batches into the advice cache.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
import torch

from hybrid_trader.advisor.advisor import Advisor
from hybrid_trader.env.actions import N_ACTIONS, Action
from hybrid_trader.features.registry import RTH_MINUTES
from hybrid_trader.features.scaling import VOL_RATIO, FeatureScaler, session_vol_ratio

__all__ = ["ADVISOR_MARKET_INPUTS", "FLAT_OPTIONS", "advisor_bar_features", "flat_states", "flat_states_at_buffers",
           "prescore", "prescore_days"]

FLAT_OPTIONS = tuple(sorted((int(Action.HOLD), int(Action.BUY), int(Action.SELL))))  # a flat account's answers
ADVISOR_MARKET_INPUTS = ("sma50_slope", "adx14", "rsi14", "momentum30", "vwap_distance", "volatility_percentile", "atr14",
                         "minutes_since_open", "session_move_atr", VOL_RATIO)


def advisor_bar_features(bar_features: pd.DataFrame, scaler: FeatureScaler) -> pd.DataFrame:
    """``bar_features`` with the raw ``session_vol_ratio`` that the prompt reads, from the
    scaler's train-fitted volatility profile (so no other days enter it); NaN everywhere
    for a scaler without a profile."""
    ratio = session_vol_ratio(bar_features, scaler.vol_profile) if scaler.vol_profile else np.nan
    return bar_features.assign(**{VOL_RATIO: ratio})


def flat_states(bar_features: pd.DataFrame, drawdown_limit: float) -> list[dict[str, Any]]:
    """Advisor states of a flat account at every bar valid for trading (raw, unscaled features)."""
    rows = bar_features.loc[bar_features["valid_for_trading"], list(ADVISOR_MARKET_INPUTS) + ["minutes_to_flat"]]
    frame = rows.assign(position_side=0, unrealized_pnl=0.0, drawdown_buffer=float(drawdown_limit),
                        minutes_to_flat=rows["minutes_to_flat"] * RTH_MINUTES)
    return frame.to_dict("records")


def flat_states_at_buffers(bar_features: pd.DataFrame, drawdown_limit: float,
                           levels: list[float]) -> list[dict[str, Any]]:
    """:func:`flat_states` with each drawdown buffer of ``levels`` (dollars above the floor): the
    prompts of flat accounts that lost since their peak."""
    states = flat_states(bar_features, drawdown_limit)
    return [{**state, "drawdown_buffer": level} for level in levels for state in states]


def prescore(advisor: Advisor, states: list[dict[str, Any]], batch_size: int = 16,
             max_prompts: int | None = None, torch_threads: int | None = None) -> dict[str, Any]:
    """Score the distinct flat-account prompts of ``states`` into the advisor's cache.

    Prompts already in the cache are skipped; at most ``max_prompts`` new ones are scored,
    so repeated runs extend the cache. ``torch_threads`` (e.g. every core: nothing else runs
    meanwhile) applies while scoring; the previous setting is restored after.

    Returns:
        ``states`` (inputs), ``distinct_prompts``, ``already_cached`` (distinct prompts
        found in the cache), ``scored`` (model queries made) and ``seconds``.
    """
    mask = np.zeros(N_ACTIONS, dtype=bool)
    mask[[Action.HOLD, Action.BUY, Action.SELL]] = True
    allowed = FLAT_OPTIONS
    unique: dict[str, dict[str, Any]] = {}
    for state in states:
        unique.setdefault(advisor.builder.state_text(state, allowed), state)
    cached = {text for text in unique if advisor.is_cached(text, allowed)}
    todo = [state for text, state in unique.items() if text not in cached]
    if max_prompts is not None:
        todo = todo[:max_prompts]
    start = time.perf_counter()
    before_model = advisor.stats.model_queries
    threads = torch.get_num_threads()
    if torch_threads:
        torch.set_num_threads(torch_threads)
    try:
        for i in range(0, len(todo), batch_size):
            chunk = todo[i: i + batch_size]
            advisor.advise(chunk, np.repeat(mask[None], len(chunk), axis=0))
    finally:
        torch.set_num_threads(threads)
        advisor.close()
    return {
        "states": len(states),
        "distinct_prompts": len(unique),
        "already_cached": len(cached),
        "scored": advisor.stats.model_queries - before_model,
        "seconds": time.perf_counter() - start,
    }


def prescore_days(advisor: Advisor, bar_features: pd.DataFrame, days: Any, drawdown_limit: float,
                  settings: dict[str, Any], max_prompts: int | None = None) -> dict[str, Any]:
    """:func:`prescore` of the flat-account prompts of the sessions ``days`` (``settings``: the
    advisor's ``prescore`` parameters)."""
    rows = bar_features.loc[bar_features["session_date"].isin(days)]
    return prescore(advisor, flat_states(rows, drawdown_limit), batch_size=settings["batch_size"],
                    max_prompts=max_prompts, torch_threads=settings.get("torch_threads"))
