"""The data_ingestion pipeline on an in-memory catalog, and its node functions."""

import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from hybrid_trader.datasets import BarsCSVDataset, SyntheticBarsDataset
from hybrid_trader.market_data.quality import DataQualityError
from hybrid_trader.pipelines.data_ingestion import create_pipeline
from hybrid_trader.pipelines.data_ingestion.nodes import describe_market

INGESTION_PARAMS = {"strict": False, "assume_timezone": "UTC", "symbol_root": None,
                    "default_symbol": "UNKNOWN", "price_scale_factor": 10, "max_fill_minutes": 5,
                    "min_session_coverage": 0.9}


class KeptDataset(MemoryDataset):
    """A memory dataset the runner does not release once consumed, as a file on disk is not."""

    def _release(self) -> None:
        pass


def test_pipeline_turns_synthetic_bars_into_clean_bars_sessions_regimes_and_report():
    catalog = DataCatalog(
        {
            "raw_bars": SyntheticBarsDataset(n_days=3, seed=1),
            "params:data_ingestion": MemoryDataset(INGESTION_PARAMS),
            "params:market": MemoryDataset({"symbol": "NQ"}),
            **{name: KeptDataset() for name in (
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
                    "slippage_ticks": 2.0, "min_plausible_price": 300.0, "max_plausible_price": 30_000.0,
                    "tick_value": 1.25}


def test_zero_bars_out_stops_the_run_after_saving_the_report(tmp_path, two_day_bars):
    """New York wall-clock times without an offset, read with the default assume_timezone (UTC)."""
    local = two_day_bars["timestamp"].dt.tz_convert("America/New_York").dt.strftime("%Y-%m-%d %H:%M:%S")
    path = tmp_path / "new_york_local.csv"
    two_day_bars.assign(timestamp=local)[["timestamp", "open", "high", "low", "close", "volume"]].to_csv(
        path, index=False)
    outputs = ("clean_bars", "trading_sessions", "synthetic_day_regimes", "data_quality_report", "market_spec")
    catalog = DataCatalog({
        "raw_bars": BarsCSVDataset(filepath=str(path)),
        "params:data_ingestion": MemoryDataset(INGESTION_PARAMS),
        "params:market": MemoryDataset({"symbol": "NQ"}),
        **{name: KeptDataset() for name in outputs},
    })
    with pytest.raises(DataQualityError, match=r"new_york_local\.csv: rule 'no_bars_left'.*assume_timezone"):
        SequentialRunner().run(create_pipeline(), catalog)
    report = catalog.load("data_quality_report")
    assert (report["rows_in"], report["rows_out"]) == (1020, 0)
    assert report["rules"]["outside_session"]["count"] == 540
    for name in ("clean_bars", "trading_sessions", "synthetic_day_regimes"):
        assert not catalog.exists(name)  # nothing downstream sees an empty series


def test_the_market_contract_bounds_the_prices_of_a_file(tmp_path, two_day_bars):
    scaled = two_day_bars.assign(**{col: two_day_bars[col] * 100 for col in ("open", "high", "low", "close")})
    path = tmp_path / "cents.csv"
    scaled.assign(timestamp=scaled["timestamp"].map(lambda t: t.isoformat()))[
        ["timestamp", "open", "high", "low", "close", "volume"]].to_csv(path, index=False)
    catalog = DataCatalog({
        "raw_bars": BarsCSVDataset(filepath=str(path)),
        "params:data_ingestion": MemoryDataset(INGESTION_PARAMS),
        "params:market": MemoryDataset({"symbol": "MNQ"}),
    })
    with pytest.raises(DataQualityError, match=r"cents\.csv, row 2: rule 'implausible_price'.*MNQ"):
        SequentialRunner().run(create_pipeline(), catalog)
