"""Nodes of ``data_ingestion``: thin wrappers over :mod:`hybrid_trader.market_data`."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import pandas as pd

from hybrid_trader.market_data.clean import CleaningConfig, ingest_bars, require_bars_left
from hybrid_trader.markets import resolve_contract

logger = logging.getLogger(__name__)


def validate_and_clean_bars(
    raw_bars: pd.DataFrame, ingestion_params: dict[str, Any], market_params: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Validate, clean and align raw bars to the CME session grid.

    Zero bars out is not an error here, so that the report is saved; the
    next node, :func:`require_clean_bars`, stops the run then.

    Args:
        raw_bars: The raw table from the ``raw_bars`` dataset.
        ingestion_params: ``data_ingestion`` parameters (see :class:`CleaningConfig`).
        market_params: ``market`` parameters; the contract's plausible price
            range bounds every price.

    Returns:
        Clean bars, the sessions they cover, the hidden regime per session
        (synthetic data only; empty otherwise) and the data-quality report.
    """
    config = CleaningConfig(**ingestion_params)
    source = raw_bars.attrs.get("source", "raw_bars")
    result = ingest_bars(raw_bars, config, source=source, contract=resolve_contract(market_params),
                         require_bars=False)
    report = result.report
    logger.info(
        "Ingested %s: %d rows in, %d bars out, %d sessions kept (%d dropped), %d bars filled",
        source, report["rows_in"], report["rows_out"], report["sessions"]["kept"],
        len(report["sessions"]["dropped"]), report["filled_bars"],
    )
    return result.bars, result.sessions, result.day_regimes, report


def require_clean_bars(
    bars: pd.DataFrame, sessions: pd.DataFrame, day_regimes: pd.DataFrame, report: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Pass the ingested frames on, or stop the run when no bar is left (rule ``no_bars_left``)."""
    require_bars_left(report)
    return bars, sessions, day_regimes


def describe_market(market_params: dict[str, Any]) -> dict[str, Any]:
    """Resolve the ``market`` parameters to a contract spec (with costs) for later stages."""
    spec = resolve_contract(market_params)
    logger.info("Market %s: $%g/point, tick %g ($%g), commission $%g/side, slippage %g tick(s)",
                spec.symbol, spec.multiplier, spec.tick_size, spec.tick_value,
                spec.commission_per_side, spec.slippage_ticks)
    return {**dataclasses.asdict(spec), "tick_value": spec.tick_value}
