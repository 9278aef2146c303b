"""Nodes of ``phase3``: thin wrappers over :mod:`hybrid_trader.advisor` (and, later, the hybrid agent)."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from hybrid_trader.advisor.advisor import Advisor
from hybrid_trader.advisor.cache import AdviceCache
from hybrid_trader.advisor.prescore import flat_states, prescore

logger = logging.getLogger(__name__)


def prepare_advisor(bar_features: pd.DataFrame, day_splits: pd.DataFrame, advice_cache: AdviceCache,
                    advisor_params: dict[str, Any],
                    environment_params: dict[str, Any]) -> tuple[dict[str, Any], pd.DataFrame]:
    """Load the advisor (failing here, before any training, if it cannot) and pre-score the
    flat-account prompts of train and validation bars into the persistent cache.

    Returns:
        A readiness report (model identity and device, prompt tokens, pre-scoring counts)
        and every answer given (empty unless ``save_llm_responses``).
    """
    advisor = Advisor.from_params(advisor_params, cache=advice_cache)
    development = day_splits.loc[day_splits["split"].isin(["train", "validation"]), "session_date"]
    rows = bar_features.loc[bar_features["session_date"].isin(development)]
    states = flat_states(rows, environment_params["engine"]["drawdown_limit"])
    settings = advisor_params["prescore"]
    counts = prescore(advisor, states, batch_size=settings["batch_size"], max_prompts=settings["max_prompts"])
    report = {
        "model": advisor.backend.identity,
        "device": advisor.backend.device,
        "method": advisor.config.tag,
        "prompt_version": advisor.builder.template.version,
        "prefix_tokens": advisor.backend.count_tokens(advisor.builder.template.prefix),
        "cache_entries": len(advisor.cache),
        **counts,
        "ms_per_scored_prompt": 1e3 * counts["seconds"] / max(counts["scored"], 1),
    }
    logger.info("Advisor %s on %s ready: %d of %d distinct flat prompts scored in %.1f s; cache holds %d answers",
                report["model"], report["device"], counts["scored"], counts["distinct_prompts"], counts["seconds"],
                report["cache_entries"])
    return report, advisor.responses()
