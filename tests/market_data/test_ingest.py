"""Every validation rule, exercised by a small bad file through the real dataset."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hybrid_trader.datasets import BarsCSVDataset, SyntheticBarsDataset
from hybrid_trader.market_data.clean import BAR_COLUMNS, CleaningConfig, ingest_bars
from hybrid_trader.market_data.quality import DataQualityError
from hybrid_trader.markets import CONTRACTS, resolve_contract
from tests.conftest import to_plain_csv
from tests.market_data.databento_files import write_databento_csv


def _ingest(path: Path, contract=None, **config):
    raw = BarsCSVDataset(filepath=str(path)).load()
    return ingest_bars(raw, CleaningConfig(**config), source=raw.attrs["source"], contract=contract)


def _write(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


def _plain_frame(bars: pd.DataFrame) -> pd.DataFrame:
    ts = bars["timestamp"].dt.tz_convert("America/New_York").map(lambda t: t.isoformat())
    return bars.assign(timestamp=ts)[["timestamp", "open", "high", "low", "close", "volume"]].reset_index(drop=True)


def test_clean_file_round_trips_unchanged(tmp_path, two_day_bars):
    result = _ingest(to_plain_csv(two_day_bars, tmp_path / "bars.csv"))
    bars = result.bars
    assert list(bars.columns) == BAR_COLUMNS
    assert len(bars) == len(two_day_bars) == 2 * 510
    assert bars["timestamp"].notna().all()
    np.testing.assert_array_equal(bars["close"].to_numpy(), two_day_bars["close"].to_numpy())
    pd.testing.assert_index_equal(
        pd.DatetimeIndex(bars["timestamp"]).tz_convert("UTC"), pd.DatetimeIndex(two_day_bars["timestamp"])
    )
    report = result.report
    assert report["rows_in"] == report["rows_out"] == 1020
    assert all(rule["count"] == 0 for rule in report["rules"].values())
    assert report["sessions"]["kept"] == 2 and not report["sessions"]["dropped"]


def test_missing_column_names_file_and_rule(tmp_path, two_day_bars):
    path = _write(_plain_frame(two_day_bars).drop(columns=["volume"]), tmp_path / "no_volume.csv")
    with pytest.raises(DataQualityError, match=r"no_volume\.csv: rule 'required_columns'.*volume"):
        _ingest(path)


def test_unparseable_timestamp_names_the_file_row(tmp_path, two_day_bars):
    frame = _plain_frame(two_day_bars)
    frame.loc[5, "timestamp"] = "2024-03-08 9:35 in the morning"
    with pytest.raises(DataQualityError, match=r"bad_ts\.csv, row 7: rule 'unparseable_timestamp'") as err:
        _ingest(_write(frame, tmp_path / "bad_ts.csv"))
    assert err.value.row == 7  # header is line 1, frame row 5 is line 7


def test_unparseable_price_is_an_error(tmp_path, two_day_bars):
    frame = _plain_frame(two_day_bars).astype({"close": object})
    frame.loc[3, "close"] = "n/a"
    with pytest.raises(DataQualityError, match=r"row 5: rule 'unparseable_value'.*'close'"):
        _ingest(_write(frame, tmp_path / "bad_value.csv"))


@pytest.mark.parametrize(
    ("column", "value", "rule"),
    [("low", 0.0, "non_positive_price"), ("volume", -3, "negative_volume"), ("high", 1.0, "high_below_low")],
)
def test_error_rules_stop_the_run(tmp_path, two_day_bars, column, value, rule):
    frame = _plain_frame(two_day_bars)
    if rule == "high_below_low":
        frame.loc[10, "high"] = frame.loc[10, "low"] - 1.0
    else:
        frame.loc[10, column] = value
    with pytest.raises(DataQualityError, match=rf"row 12: rule '{rule}'"):
        _ingest(_write(frame, tmp_path / f"{rule}.csv"))


def test_duplicate_timestamp_keeps_first_or_fails_when_strict(tmp_path, two_day_bars):
    frame = _plain_frame(two_day_bars)
    dup = frame.iloc[[20]].assign(close=frame.loc[20, "close"] + 1.0, high=frame.loc[20, "high"] + 1.0)
    frame = pd.concat([frame.iloc[:21], dup, frame.iloc[21:]], ignore_index=True)
    path = _write(frame, tmp_path / "dup.csv")
    result = _ingest(path)
    assert result.report["rules"]["duplicate_timestamp"]["count"] == 1
    assert result.report["rules"]["duplicate_timestamp"]["rows"] == [23]
    assert result.bars["close"].iloc[20] == two_day_bars["close"].iloc[20]  # the first row wins
    assert len(result.bars) == 1020
    with pytest.raises(DataQualityError, match=r"row 23: rule 'duplicate_timestamp'.*strict"):
        _ingest(path, strict=True)


def test_out_of_order_rows_are_sorted_and_counted(tmp_path, two_day_bars):
    frame = _plain_frame(two_day_bars)
    order = list(range(len(frame)))
    order[100], order[101] = 101, 100
    path = _write(frame.iloc[order], tmp_path / "swapped.csv")
    result = _ingest(path)
    assert result.report["rules"]["out_of_order"]["count"] == 1
    np.testing.assert_array_equal(result.bars["close"].to_numpy(), two_day_bars["close"].to_numpy())
    with pytest.raises(DataQualityError, match="out_of_order"):
        _ingest(path, strict=True)


def test_open_close_outside_range_is_widened(tmp_path, two_day_bars):
    frame = _plain_frame(two_day_bars)
    frame.loc[30, "open"] = frame.loc[30, "high"] + 2.0
    result = _ingest(_write(frame, tmp_path / "wide.csv"))
    assert result.report["rules"]["open_close_outside_range"]["count"] == 1
    assert result.bars.loc[30, "high"] == frame.loc[30, "open"]


def test_price_off_by_100_is_dropped_then_filled_as_a_missing_bar(tmp_path, two_day_bars):
    frame = _plain_frame(two_day_bars)
    for col in ("open", "high", "low", "close"):
        frame.loc[200, col] = frame.loc[200, col] / 100.0
    result = _ingest(_write(frame, tmp_path / "scaled.csv"))
    rules = result.report["rules"]
    assert rules["price_scale"]["count"] == 1 and rules["price_scale"]["rows"] == [202]
    assert rules["missing_bars"]["count"] == 1
    bar = result.bars.iloc[200]
    previous_close = two_day_bars["close"].iloc[199]
    assert bar["is_filled"] and bar["volume"] == 0
    assert bar[["open", "high", "low", "close"]].tolist() == [previous_close] * 4


def test_short_gap_is_filled_long_gap_drops_the_session(tmp_path, two_day_bars):
    frame = _plain_frame(two_day_bars)
    short_gap = frame.drop(index=range(300, 303))  # 3 minutes on day one
    result = _ingest(_write(short_gap, tmp_path / "short_gap.csv"))
    assert result.bars["is_filled"].sum() == 3 and len(result.bars) == 1020
    assert result.report["gaps"] == [
        {"session_date": "2024-03-08", "start": result.bars["timestamp"].iloc[300].isoformat(),
         "minutes": 3, "action": "filled"}
    ]
    with pytest.raises(DataQualityError, match="missing_bars"):
        _ingest(tmp_path / "short_gap.csv", strict=True)

    long_gap = frame.drop(index=range(600, 620))  # 20 minutes on day two
    result = _ingest(_write(long_gap, tmp_path / "long_gap.csv"))
    assert result.report["sessions"]["kept"] == 1
    assert result.report["sessions"]["dropped"] == [
        {"session_date": "2024-03-11", "bars_present": 490, "bars_expected": 510, "longest_gap_minutes": 20}
    ]
    assert result.report["rules"]["incomplete_session"]["count"] == 490
    assert len(result.bars) == 510
    assert result.report["row_accounting"]["rows_out"] == 510


def test_bars_outside_the_session_and_on_holidays_are_filtered(tmp_path, two_day_bars):
    frame = _plain_frame(two_day_bars)
    extra = pd.DataFrame(
        {
            "timestamp": ["2024-03-08T03:00:00-05:00",   # overnight Globex bar
                          "2024-03-08T17:30:00-05:00",   # after the close
                          "2024-03-09T10:00:00-05:00"],  # Saturday
            "open": 20000.0, "high": 20001.0, "low": 19999.0, "close": 20000.0, "volume": 5,
        }
    )
    result = _ingest(_write(pd.concat([extra, frame], ignore_index=True), tmp_path / "outside.csv"))
    assert result.report["rules"]["outside_session"]["count"] == 3
    assert result.report["rules"]["outside_session"]["rows"] == [2, 3, 4]
    assert len(result.bars) == 1020
    assert result.report["rules"]["out_of_order"]["count"] == 1  # the Saturday row precedes Friday's bars


def test_second_level_data_is_refused_not_dropped(tmp_path, two_day_bars):
    frame = _plain_frame(two_day_bars)
    frame.loc[4, "timestamp"] = frame.loc[4, "timestamp"].replace(":00-", ":30-")
    with pytest.raises(DataQualityError, match="not_minute_bars"):
        _ingest(_write(frame, tmp_path / "seconds.csv"))


def _databento(bars: pd.DataFrame, symbol: str, volume_scale: float = 1.0) -> pd.DataFrame:
    ts = bars["timestamp"].dt.tz_convert("America/New_York").map(lambda t: t.isoformat())
    return pd.DataFrame(
        {
            "ts_event": ts, "rtype": 33, "publisher_id": 1, "instrument_id": 42,
            "open": bars["open"], "high": bars["high"], "low": bars["low"], "close": bars["close"],
            "volume": (bars["volume"] * volume_scale).round().astype(int), "symbol": symbol,
        }
    )


def test_databento_export_round_trips_with_spreads_months_duplicates_and_dst(tmp_path, two_day_bars):
    front = _databento(two_day_bars, "NQH4")
    back = _databento(two_day_bars.iloc[::10], "NQM4", volume_scale=0.05)   # thin next month
    back = back.assign(close=back["close"] + 150.0, high=back["high"] + 150.0,
                       open=back["open"] + 150.0, low=back["low"] + 150.0)
    spread = _databento(two_day_bars.iloc[::50], "NQH4-NQM4")
    spread[["open", "high", "low", "close"]] = [[-150.0, -149.0, -151.0, -150.0]] * len(spread)
    duplicate = front.iloc[[77]]
    export = pd.concat([front, back, spread, duplicate]).sort_values("ts_event", kind="stable")
    csv_path = tmp_path / "glbx-mdp3-20240308-20240311.ohlcv-1m.csv"
    export.to_csv(csv_path, index=False)
    zip_path = tmp_path / "glbx-mdp3.ohlcv-1m.csv.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        archive.write(csv_path, arcname=csv_path.name)

    offsets = set(export["ts_event"].str[-6:])
    assert offsets == {"-05:00", "-04:00"}  # the file really mixes offsets

    result = _ingest(zip_path)
    rules = result.report["rules"]
    assert rules["calendar_spread"]["count"] == len(spread)
    assert rules["non_front_contract"]["count"] == len(back)
    assert rules["duplicate_timestamp"]["count"] == 1
    bars = result.bars
    assert bars["timestamp"].notna().all() and len(bars) == 1020
    assert set(bars["symbol"]) == {"NQH4"}
    np.testing.assert_array_equal(bars["close"].to_numpy(), two_day_bars["close"].to_numpy())
    assert str(bars["timestamp"].dt.tz) == "America/New_York"
    assert result.report["row_accounting"]["rows_in"] == len(export)


def test_databento_integer_nanoseconds_and_symbol_root(tmp_path, two_day_bars):
    export = _databento(two_day_bars, "ESH4")
    export["ts_event"] = two_day_bars["timestamp"].astype("datetime64[ns, UTC]").astype("int64").astype(str)
    other = _databento(two_day_bars.iloc[:5], "NQH4")
    other["ts_event"] = export["ts_event"].iloc[:5]
    path = _write(pd.concat([export, other]), tmp_path / "two_roots.csv")
    with pytest.raises(DataQualityError, match="several instruments.*symbol_root"):
        _ingest(path)
    result = _ingest(path, symbol_root="ES")
    assert result.report["rules"]["other_instrument"]["count"] == 5
    assert len(result.bars) == 1020 and set(result.bars["symbol"]) == {"ESH4"}


def test_naive_timestamps_use_the_configured_zone(tmp_path, two_day_bars):
    frame = _plain_frame(two_day_bars)
    frame["timestamp"] = two_day_bars["timestamp"].dt.tz_convert("America/New_York").dt.strftime("%Y-%m-%d %H:%M:%S")
    path = _write(frame, tmp_path / "naive.csv")
    result = _ingest(path, assume_timezone="America/New_York")
    assert len(result.bars) == 1020 and result.report["rules"]["outside_session"]["count"] == 0
    assert result.report["timestamps_without_offset"] == 1020


def test_missing_file_says_what_to_do(tmp_path):
    with pytest.raises(Exception, match="does not exist.*raw_bars"):
        BarsCSVDataset(filepath=str(tmp_path / "nope.csv")).load()


def test_bad_cleaning_config_is_rejected():
    with pytest.raises(ValueError, match="min_session_coverage"):
        CleaningConfig(min_session_coverage=0)
    with pytest.raises(TypeError):
        CleaningConfig(unknown_option=True)


def test_plain_file_with_symbols_gets_the_same_contract_selection(tmp_path, two_day_bars):
    frame = _plain_frame(two_day_bars).assign(symbol="NQH4")
    other = frame.iloc[::7].assign(symbol="NQM4", volume=1, close=frame["close"].iloc[::7] + 150,
                                   high=frame["high"].iloc[::7] + 150, open=frame["open"].iloc[::7] + 150,
                                   low=frame["low"].iloc[::7] + 150)
    spread = frame.iloc[::50].assign(symbol="NQH4-NQM4", open=-150.0, high=-149.0, low=-151.0, close=-150.0)
    # The other month and the spreads come first in the file.
    result = _ingest(_write(pd.concat([spread, other, frame], ignore_index=True), tmp_path / "mixed.csv"))
    rules = result.report["rules"]
    assert rules["calendar_spread"]["count"] == len(spread)
    assert rules["non_front_contract"]["count"] == len(other)
    assert set(result.bars["symbol"]) == {"NQH4"}
    np.testing.assert_array_equal(result.bars["close"].to_numpy(), two_day_bars["close"].to_numpy())


def test_strict_mode_refuses_a_dropped_session(tmp_path, two_day_bars):
    frame = _plain_frame(two_day_bars).drop(index=range(600, 620))
    with pytest.raises(DataQualityError, match="incomplete_session"):
        _ingest(_write(frame, tmp_path / "gap.csv"), strict=True)


@pytest.mark.parametrize(
    "header",
    ["timestamp,open,high,low,close,volume",
     "ts_event,rtype,publisher_id,instrument_id,open,high,low,close,volume,symbol"],
    ids=["plain", "databento"],
)
def test_header_only_file_names_file_and_rule(tmp_path, header):
    path = tmp_path / "header_only.csv"
    path.write_text(header + "\n")
    with pytest.raises(DataQualityError, match=r"header_only\.csv: rule 'no_data_rows'.*header but no data") as err:
        _ingest(path)
    assert (err.value.rule, err.value.row) == ("no_data_rows", None)


def test_empty_file_names_file_and_rule(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(DataQualityError, match=r"empty\.csv: rule 'no_data_rows'.*empty"):
        _ingest(path)


def test_every_row_of_another_root_stops_the_run_naming_the_filter(tmp_path, two_day_bars):
    path = _write(_databento(two_day_bars, "NQH4"), tmp_path / "nq_only.csv")
    with pytest.raises(DataQualityError, match=r"nq_only\.csv: rule 'no_bars_left'") as err:
        _ingest(path, symbol_root="ES")
    assert "other_instrument removed 1020" in err.value.detail
    assert "symbol_root" in err.value.detail
    assert err.value.report["rows_out"] == 0
    assert err.value.report["rules"]["other_instrument"]["count"] == 1020


def test_new_york_local_times_read_as_utc_stop_the_run_suggesting_assume_timezone(tmp_path, two_day_bars):
    frame = _plain_frame(two_day_bars)
    frame["timestamp"] = two_day_bars["timestamp"].dt.tz_convert("America/New_York").dt.strftime("%Y-%m-%d %H:%M:%S")
    path = _write(frame, tmp_path / "new_york_naive.csv")
    with pytest.raises(DataQualityError, match=r"new_york_naive\.csv: rule 'no_bars_left'") as err:
        _ingest(path)  # assume_timezone defaults to UTC
    # Read as UTC, 08:30-16:59 New York lands at 03:30-11:59 EST on 2024-03-08 (300 bars before 08:30 ET)
    # and 04:30-12:59 EDT on 2024-03-11 (240 before 08:30): 540 outside the session; the 210 + 270 left
    # cover too little of their sessions, which are dropped whole.
    detail = err.value.detail
    assert "of the 1020 rows read: outside_session removed 540, incomplete_session removed 480" in detail
    assert "Likeliest cause: outside_session" in detail
    assert "1020 timestamps carry no offset and were read as UTC" in detail
    assert "assume_timezone: America/New_York" in detail
    report = err.value.report
    assert report["rows_out"] == 0 and report["sessions"]["kept"] == 0
    assert [d["session_date"] for d in report["sessions"]["dropped"]] == ["2024-03-08", "2024-03-11"]


def test_dropped_sessions_with_offsets_suggest_coverage_not_the_zone(tmp_path, two_day_bars):
    frame = _plain_frame(two_day_bars).drop(index=list(range(100, 120)) + list(range(600, 620)))
    with pytest.raises(DataQualityError, match="no_bars_left") as err:
        _ingest(_write(frame, tmp_path / "gappy.csv"))
    assert "incomplete_session removed 980" in err.value.detail
    assert "min_session_coverage" in err.value.detail and "assume_timezone:" not in err.value.detail


def test_an_empty_result_can_be_returned_with_its_report(tmp_path, two_day_bars):
    frame = _plain_frame(two_day_bars)
    frame["timestamp"] = two_day_bars["timestamp"].dt.tz_convert("America/New_York").dt.strftime("%Y-%m-%d %H:%M:%S")
    raw = BarsCSVDataset(filepath=str(_write(frame, tmp_path / "naive.csv"))).load()
    result = ingest_bars(raw, CleaningConfig(), source="naive.csv", require_bars=False)
    assert len(result.bars) == 0 and len(result.sessions) == 0
    accounting = result.report["row_accounting"]
    assert (accounting["rows_in"], accounting["minus_outside_session"], accounting["rows_out"]) == (1020, -540, 0)
    assert result.report["timestamps_without_offset"] == 1020


def _with_blank_lines(frame: pd.DataFrame, after_lines: list[int]) -> str:
    """The CSV text of ``frame`` with an empty line inserted after each given file line (header = 1)."""
    lines = frame.to_csv(index=False).splitlines()
    for line in sorted(after_lines, reverse=True):
        lines.insert(line, "")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("suffix", [".csv", ".csv.zip"])
def test_rows_are_file_lines_even_after_blank_lines(tmp_path, two_day_bars, suffix):
    frame = _plain_frame(two_day_bars)
    frame.loc[50, "timestamp"] = "not a time"  # line 52 without the blank line, line 53 with it
    text = _with_blank_lines(frame, after_lines=[10])
    assert text.splitlines()[52].startswith("not a time,")  # line 53 of the file
    path = tmp_path / f"blank{suffix}"
    if suffix == ".csv.zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("blank.csv", text)
    else:
        path.write_text(text)
    with pytest.raises(DataQualityError, match=r"row 53: rule 'unparseable_timestamp'") as err:
        _ingest(path)
    assert err.value.row == 53


def test_blank_and_whitespace_lines_are_not_rows(tmp_path, two_day_bars):
    frame = _plain_frame(two_day_bars)
    frame = pd.concat([frame.iloc[:21], frame.iloc[[20]], frame.iloc[21:]], ignore_index=True)  # duplicate
    text = _with_blank_lines(frame, after_lines=[5, 6])  # two blank lines before the duplicate
    text = text.replace("\n\n\n", "\n  \n\n", 1) + "\n"  # one of them whitespace-only; a trailing blank line
    path = tmp_path / "blanks.csv"
    path.write_text(text)
    result = _ingest(path)
    # Data row 21 (0-based) is line 23 without blank lines, line 25 with the two.
    assert result.report["rules"]["duplicate_timestamp"]["rows"] == [25]
    assert result.report["rows_in"] == 1021 and len(result.bars) == 1020


@pytest.mark.parametrize("empty_fields", [",,,,,", " , ,,,,"])
def test_a_line_of_empty_fields_is_a_row_that_stops_the_run_with_its_line(tmp_path, two_day_bars, empty_fields):
    """Only a line with nothing but whitespace is blank; a line of separators is a row without a time."""
    frame = _plain_frame(two_day_bars)
    lines = frame.to_csv(index=False).splitlines()
    lines.insert(8, "   ")  # a whitespace-only line 9: not a row
    lines.insert(30, empty_fields)  # line 31: a row of six empty fields
    path = tmp_path / "empty_fields.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataQualityError, match=r"empty_fields\.csv, row 31: rule 'unparseable_timestamp'") as err:
        _ingest(path)
    assert err.value.row == 31


def test_databento_csv_with_fixed_point_prices_is_converted_and_reported(tmp_path, two_day_bars):
    path = write_databento_csv(tmp_path / "glbx-mdp3.ohlcv-1m.csv", {"NQH4": two_day_bars}, pretty_px=False)
    first_row = path.read_text().splitlines()[1].split(",")
    assert first_row[4] == str(round(two_day_bars["open"].iloc[0] * 1e9))  # the file holds 1e-9 units
    result = _ingest(path, strict=True)  # decoding an encoding is no repair: strict mode accepts it
    np.testing.assert_array_equal(result.bars["close"].to_numpy(), two_day_bars["close"].to_numpy())
    np.testing.assert_array_equal(result.bars["low"].to_numpy(), two_day_bars["low"].to_numpy())
    rule = result.report["rules"]["fixed_point_price"]
    assert (rule["kind"], rule["count"], rule["rows"][:3]) == ("conversion", 1020, [2, 3, 4])
    assert result.report["row_accounting"]["rows_out"] == 1020


def test_decimal_prices_and_small_integer_prices_are_not_fixed_point(tmp_path, two_day_bars):
    pretty = write_databento_csv(tmp_path / "pretty.csv", {"NQH4": two_day_bars}, pretty_px=True, pretty_ts=False)
    assert _ingest(pretty).report["rules"]["fixed_point_price"]["count"] == 0
    frame = _plain_frame(two_day_bars)  # whole-point prices written as integers: YM-like, not fixed-point
    frame[["open", "high", "low", "close"]] = frame[["open", "high", "low", "close"]].round().astype(int)
    frame["high"] = frame[["open", "high", "close"]].max(axis=1)
    frame["low"] = frame[["open", "low", "close"]].min(axis=1)
    result = _ingest(_write(frame, tmp_path / "integers.csv"))
    assert result.report["rules"]["fixed_point_price"]["count"] == 0
    assert result.bars["close"].iloc[0] == frame["close"].iloc[0]


def test_every_price_off_by_100_is_refused_against_the_contract(tmp_path, two_day_bars):
    frame = _plain_frame(two_day_bars)
    frame[["open", "high", "low", "close"]] *= 100  # e.g. prices in cents: the file's own median moves too
    path = _write(frame, tmp_path / "cents.csv")
    with pytest.raises(DataQualityError, match=r"cents\.csv, row 2: rule 'implausible_price'.*NQ's plausible range"):
        _ingest(path, contract=CONTRACTS["NQ"])
    assert _ingest(path).report["rules"]["price_scale"]["count"] == 0  # what the relative check alone sees


def test_unrecognised_fixed_point_prices_are_refused_against_the_contract(tmp_path, two_day_bars):
    frame = _plain_frame(two_day_bars)
    frame[["open", "high", "low", "close"]] *= 1e9  # written with a decimal point: not taken as fixed-point
    with pytest.raises(DataQualityError, match=r"row 2: rule 'implausible_price'"):
        _ingest(_write(frame, tmp_path / "scaled.csv"), contract=CONTRACTS["ES"])


@pytest.mark.parametrize(("symbol", "typical_price"), [
    ("ES", 6_000.0), ("MES", 6_000.0), ("NQ", 21_000.0), ("MNQ", 21_000.0),
    ("YM", 43_000.0), ("MYM", 43_000.0), ("RTY", 2_300.0), ("M2K", 2_300.0),
])
def test_each_contract_range_holds_its_price_and_refuses_100x_errors(symbol, typical_price):
    low, high = CONTRACTS[symbol].plausible_price_range
    assert low < typical_price < high
    assert typical_price / 100 < low and typical_price * 100 > high


@pytest.mark.parametrize("symbol", sorted(CONTRACTS))
def test_the_synthetic_market_ingests_whatever_contract_is_traded(symbol):
    raw = SyntheticBarsDataset(n_days=2, seed=5).load()
    result = ingest_bars(raw, CleaningConfig(), source=raw.attrs["source"], contract=CONTRACTS[symbol])
    assert len(result.bars) == 1020
    assert result.report["rules"]["implausible_price"]["detail"] == "not checked: the synthetic market"


def test_a_custom_contract_may_carry_a_plausible_range():
    spec = resolve_contract({"symbol": "MBT", "custom_contracts": {"MBT": {
        "multiplier": 0.1, "tick_size": 5.0, "commission_per_side": 2.5,
        "min_plausible_price": 1_000, "max_plausible_price": 1_000_000}}})
    assert spec.plausible_price_range == (1_000.0, 1_000_000.0)
    assert resolve_contract({"symbol": "MBT", "custom_contracts": {"MBT": {
        "multiplier": 0.1, "tick_size": 5.0, "commission_per_side": 2.5}}}).plausible_price_range is None
    with pytest.raises(ValueError, match="plausible"):
        resolve_contract({"symbol": "MBT", "custom_contracts": {"MBT": {
            "multiplier": 0.1, "tick_size": 5.0, "commission_per_side": 2.5, "min_plausible_price": 10}}})
