"""Databento DBN files, written here with Databento's own library, through the same validation and report."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import databento_dbn as dbn
import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog, DatasetError, MemoryDataset
from kedro.runner import SequentialRunner

from hybrid_trader.datasets import BarsCSVDataset, BarsDBNDataset
from hybrid_trader.market_data.clean import CleaningConfig, ingest_bars
from hybrid_trader.market_data.quality import DataQualityError
from hybrid_trader.markets import CONTRACTS
from hybrid_trader.pipelines.data_ingestion import create_pipeline
from tests.market_data.databento_files import dbn_bytes, write_databento_csv, write_dbn
from tests.pipelines.data_ingestion.test_pipeline import INGESTION_PARAMS, KeptDataset


def _months(two_day_bars: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The front month, a thin next month priced 150 points higher, and a calendar spread."""
    back = two_day_bars.iloc[::10].copy()
    back[["open", "high", "low", "close"]] += 150.0
    back["volume"] = 1
    spread = two_day_bars.iloc[::50].copy()
    spread[["open", "high", "low", "close"]] = [150.0, 151.0, 149.0, 150.0]
    return {"NQH4": two_day_bars, "NQM4": back, "NQH4-NQM4": spread}


@pytest.mark.parametrize("name", ["glbx-mdp3-20240308-20240311.ohlcv-1m.dbn",
                                  "glbx-mdp3-20240308-20240311.ohlcv-1m.dbn.zst"])
def test_dbn_file_goes_through_the_same_rules_and_report(tmp_path, two_day_bars, name):
    months = _months(two_day_bars)
    path = write_dbn(tmp_path / name, months)
    if name.endswith(".zst"):
        assert path.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"  # really zstd-compressed

    raw = BarsDBNDataset(filepath=str(path)).load()
    n_records = sum(len(bars) for bars in months.values())
    assert len(raw) == n_records and raw["source_row"].tolist() == list(range(1, n_records + 1))
    assert set(raw["symbol"]) == {"NQH4", "NQM4", "NQH4-NQM4"}

    result = ingest_bars(raw, CleaningConfig(), source=raw.attrs["source"], contract=CONTRACTS["NQ"])
    report = result.report
    assert report["format"] == "databento-dbn" and report["rows_in"] == n_records
    rules = report["rules"]
    assert (rules["fixed_point_price"]["kind"], rules["fixed_point_price"]["count"]) == ("conversion", n_records)
    assert rules["calendar_spread"]["count"] == len(months["NQH4-NQM4"])
    assert rules["non_front_contract"]["count"] == len(months["NQM4"])
    assert rules["implausible_price"]["detail"] == "NQ: [400, 100000]"
    bars = result.bars
    assert len(bars) == 1020 and set(bars["symbol"]) == {"NQH4"}
    for col in ("open", "high", "low", "close"):
        np.testing.assert_array_equal(bars[col].to_numpy(), two_day_bars[col].to_numpy())
    np.testing.assert_array_equal(bars["volume"].to_numpy(), two_day_bars["volume"].to_numpy())
    pd.testing.assert_index_equal(pd.DatetimeIndex(bars["timestamp"]).tz_convert("UTC").as_unit("ns"),
                                  pd.DatetimeIndex(two_day_bars["timestamp"]).as_unit("ns"))


def test_dbn_and_its_databento_csv_give_the_same_bars(tmp_path, two_day_bars):
    months = _months(two_day_bars)
    from_dbn = ingest_bars(BarsDBNDataset(filepath=str(write_dbn(tmp_path / "a.dbn.zst", months))).load(),
                           CleaningConfig(), source="a.dbn.zst")
    csv = BarsCSVDataset(filepath=str(write_databento_csv(tmp_path / "a.csv", months, pretty_px=False))).load()
    from_csv = ingest_bars(csv, CleaningConfig(), source="a.csv")
    pd.testing.assert_frame_equal(from_dbn.bars, from_csv.bars)
    assert from_dbn.report["row_accounting"] == from_csv.report["row_accounting"]


def test_dbn_errors_name_the_record(tmp_path, two_day_bars):
    bars = two_day_bars.copy()
    bars.loc[7, "low"] = bars.loc[7, "high"] + 1.0  # the 8th record
    raw = BarsDBNDataset(filepath=str(write_dbn(tmp_path / "bad.dbn", {"NQH4": bars}))).load()
    with pytest.raises(DataQualityError, match=r"bad\.dbn, row 8: rule 'high_below_low'"):
        ingest_bars(raw, CleaningConfig(), source=raw.attrs["source"])


def test_records_without_a_mapping_keep_their_instrument_id(tmp_path, two_day_bars):
    data = dbn_bytes({"NQH4": two_day_bars})
    metadata = dbn.Metadata.decode(data)
    records = data[len(bytes(metadata)):]
    unmapped = dbn.Metadata(dataset="GLBX.MDP3", start=metadata.start, end=metadata.end,
                            stype_in=dbn.SType.RAW_SYMBOL, stype_out=dbn.SType.INSTRUMENT_ID,
                            schema=dbn.Schema.OHLCV_1M, symbols=["NQH4"])
    path = tmp_path / "unmapped.dbn"
    path.write_bytes(bytes(unmapped) + records)
    raw = BarsDBNDataset(filepath=str(path)).load()
    assert set(raw["symbol"]) == {"100"}


def test_a_mapping_applies_only_on_its_dates(tmp_path, two_day_bars):
    """Instrument 100 is NQH4 on 2024-03-08 only (UTC dates, end exclusive): later records keep the id."""
    data = dbn_bytes({"NQH4": two_day_bars})
    metadata = dbn.Metadata.decode(data)
    records = data[len(bytes(metadata)):]
    one_day = [SimpleNamespace(raw_symbol="NQH4", intervals=[SimpleNamespace(
        start_date=dt.date(2024, 3, 8), end_date=dt.date(2024, 3, 9), symbol="100")])]
    path = tmp_path / "one_day.dbn"
    path.write_bytes(bytes(dbn.Metadata(
        dataset="GLBX.MDP3", start=metadata.start, end=metadata.end, stype_in=dbn.SType.RAW_SYMBOL,
        stype_out=dbn.SType.INSTRUMENT_ID, schema=dbn.Schema.OHLCV_1M, symbols=["NQH4"], mappings=one_day))
        + records)
    raw = BarsDBNDataset(filepath=str(path)).load()
    on_day_one = raw["ts_event"].dt.date == dt.date(2024, 3, 8)
    assert on_day_one.sum() == 510
    assert set(raw.loc[on_day_one, "symbol"]) == {"NQH4"} and set(raw.loc[~on_day_one, "symbol"]) == {"100"}


def _load_error(path) -> DataQualityError:
    """The DataQualityError behind Kedro's DatasetError (Kedro wraps what a dataset's load raises)."""
    with pytest.raises(DatasetError) as err:
        BarsDBNDataset(filepath=str(path)).load()
    assert isinstance(err.value.__cause__, DataQualityError)
    return err.value.__cause__


def test_other_schemas_and_broken_files_are_refused(tmp_path, two_day_bars):
    second_bars = write_dbn(tmp_path / "bars.ohlcv-1s.dbn", {"NQH4": two_day_bars.iloc[:5]},
                            schema=dbn.Schema.OHLCV_1S)
    error = _load_error(second_bars)
    assert (error.rule, error.source) == ("dbn_schema", str(second_bars))
    assert "holds ohlcv-1s records" in error.detail

    whole = write_dbn(tmp_path / "whole.dbn", {"NQH4": two_day_bars.iloc[:5]}).read_bytes()
    truncated = tmp_path / "truncated.dbn"
    truncated.write_bytes(whole[:-10])
    error = _load_error(truncated)
    assert error.rule == "dbn_schema" and "ends inside" in error.detail

    not_dbn = tmp_path / "renamed.dbn"
    not_dbn.write_text("ts_event,open\n1,2\n")
    error = _load_error(not_dbn)
    assert error.rule == "dbn_schema" and "not a readable DBN file" in error.detail


def test_each_dataset_points_to_the_other_for_the_wrong_suffix(tmp_path):
    with pytest.raises(DatasetError, match="BarsDBNDataset"):
        BarsCSVDataset(filepath=str(tmp_path / "x.ohlcv-1m.dbn.zst"))
    with pytest.raises(DatasetError, match="BarsCSVDataset"):
        BarsDBNDataset(filepath=str(tmp_path / "x.csv"))


def test_the_ingestion_pipeline_reads_a_dbn_file(tmp_path, two_day_bars):
    path = write_dbn(tmp_path / "glbx-mdp3.ohlcv-1m.dbn.zst", _months(two_day_bars))
    outputs = ("clean_bars", "trading_sessions", "synthetic_day_regimes", "data_quality_report", "market_spec")
    catalog = DataCatalog({
        "raw_bars": BarsDBNDataset(filepath=str(path)),
        "params:data_ingestion": MemoryDataset(INGESTION_PARAMS),
        "params:market": MemoryDataset({"symbol": "NQ"}),
        **{name: KeptDataset() for name in outputs},
    })
    SequentialRunner().run(create_pipeline(), catalog)
    np.testing.assert_array_equal(catalog.load("clean_bars")["close"].to_numpy(), two_day_bars["close"].to_numpy())
    assert catalog.load("data_quality_report")["format"] == "databento-dbn"
