"""The data_ingestion pipeline on an in-memory catalog, and its node functions."""

import pandas as pd
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from hybrid_trader.datasets import SyntheticBarsDataset
from hybrid_trader.pipelines.data_ingestion import create_pipeline
from hybrid_trader.pipelines.data_ingestion.nodes import describe_market

INGESTION_PARAMS = {"strict": False, "assume_timezone": "UTC", "symbol_root": None,
                    "default_symbol": "UNKNOWN", "price_scale_factor": 10, "max_fill_minutes": 5,
                    "min_session_coverage": 0.9}


def test_pipeline_turns_synthetic_bars_into_clean_bars_sessions_regimes_and_report():
    catalog = DataCatalog(
        {
            "raw_bars": SyntheticBarsDataset(n_days=3, seed=1),
            "params:data_ingestion": MemoryDataset(INGESTION_PARAMS),
            "params:market": MemoryDataset({"symbol": "NQ"}),
            **{name: MemoryDataset() for name in (
                "clean_bars", "trading_sessions", "synthetic_day_regimes", "data_quality_report", "market_spec")},
        }
    )
    SequentialRunner().run(create_pipeline(), catalog)
    bars = catalog.load("clean_bars")
    sessions = catalog.load("trading_sessions")
    regimes = catalog.load("synthetic_day_regimes")
    report = catalog.load("data_quality_report")
    assert len(bars) == 3 * 510 and not bars["is_filled"].any()
    assert sessions["n_bars"].tolist() == [510, 510, 510]
    assert len(regimes) == 3 and "regime" not in bars.columns  # the label never rides with the bars
    assert report["rows_in"] == report["rows_out"] == 1530
    assert report["format"] == "synthetic"
    assert catalog.load("market_spec")["tick_value"] == 5.0
    assert pd.api.types.is_datetime64_any_dtype(bars["timestamp"])


def test_describe_market_applies_overrides():
    spec = describe_market({"symbol": "MES", "commission_per_side": 0.5, "slippage_ticks": 2})
    assert spec == {"symbol": "MES", "multiplier": 5.0, "tick_size": 0.25, "commission_per_side": 0.5,
                    "slippage_ticks": 2.0, "tick_value": 1.25}
