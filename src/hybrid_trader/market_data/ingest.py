"""Turn a raw bar table (a CSV export or the synthetic market) into typed bars.

Two file formats are understood, told apart by their columns:

* ``databento``: a Databento GLBX ``ohlcv-1m`` export with ``ts_event``
  (ISO-8601 text or integer nanoseconds since the epoch, UTC), ``open``,
  ``high``, ``low``, ``close``, ``volume``, ``symbol``;
* ``plain``: ``timestamp, open, high, low, close, volume`` (``symbol``
  optional). Timestamps with an offset are converted to UTC; naive ones are
  taken to be in ``assume_timezone`` (default UTC).

Prices in Databento's fixed-point format (integers in units of 1e-9: DBN
files, and CSV written with ``pretty_px=False``) are recognised and divided by
1e9 (rule ``fixed_point_price``).

A raw table carries a ``source_row`` column (the 1-based line of the row in
its file, the header being line 1) and ``attrs["source"]`` (the file), so that
every error can name file, row and rule.
"""

from __future__ import annotations

import re
import numpy as np
import pandas as pd

from hybrid_trader.market_data.quality import DataQualityError, QualityLog, source_rows as _rows

__all__ = ["FORMATS", "FIXED_POINT_SCALE", "detect_format", "parse_raw_bars", "select_outright_contract"]

PRICE_COLUMNS = ("open", "high", "low", "close")
# Databento's fixed-point prices count units of 1e-9. No futures price reaches 1e9 index points,
# so a file whose prices are all integers with a median close >= 1e9 is in those units.
FIXED_POINT_SCALE = 1_000_000_000
FORMATS: dict[str, tuple[str, ...]] = {
    "databento": ("ts_event", "open", "high", "low", "close", "volume", "symbol"),
    "plain": ("timestamp", "open", "high", "low", "close", "volume"),
}
# Outright futures symbol: root, month code, 1-2 year digits (e.g. NQZ5, ESH24).
_OUTRIGHT = re.compile(r"^(?P<root>[A-Z0-9]{1,4}?)(?P<month>[FGHJKMNQUVXZ])(?P<year>\d{1,2})$")


def detect_format(columns: list[str] | pd.Index, source: str) -> str:
    """Name the format whose columns the table has.

    Raises:
        DataQualityError: (rule ``required_columns``) when no format matches.
    """
    present = {str(c).strip().lower() for c in columns}
    if "ts_event" in present:
        fmt = "databento"
    elif "timestamp" in present:
        fmt = "plain"
    else:
        raise DataQualityError(
            source, None, "required_columns",
            f"no timestamp column; expected a Databento export ({', '.join(FORMATS['databento'])}) "
            f"or a plain file ({', '.join(FORMATS['plain'])}); found {sorted(present)}",
        )
    missing = [c for c in FORMATS[fmt] if c not in present]
    if missing:
        raise DataQualityError(source, None, "required_columns", f"{fmt} file lacks columns {missing}")
    return fmt


def parse_raw_bars(
    raw: pd.DataFrame,
    log: QualityLog,
    *,
    assume_timezone: str = "UTC",
    default_symbol: str = "UNKNOWN",
) -> tuple[pd.DataFrame, str, int]:
    """Parse timestamps and numbers of a raw table.

    Args:
        raw: The table as read (strings or already-typed columns).
        log: Where rule outcomes are recorded; its ``source`` names the file.
        assume_timezone: Zone of timestamps that carry no offset.
        default_symbol: Symbol for plain files without a ``symbol`` column.

    Returns:
        ``(bars, format, naive)``: ``bars`` with ``timestamp`` (tz-aware UTC),
        float prices, float volume, ``symbol`` and ``source_row``, in file
        order; ``naive``: how many timestamps carried no offset and were read
        in ``assume_timezone``.

    Raises:
        DataQualityError: no data rows, missing columns, or an unparseable
            timestamp or value (the error names the first offending row).
    """
    frame = raw.rename(columns=lambda c: str(c).strip().lower())
    if frame.empty and not [c for c in frame.columns if c != "source_row"]:
        raise DataQualityError(log.source, None, "no_data_rows", "the file is empty (no header, no data rows)")
    fmt = detect_format(frame.columns, log.source)
    if frame.empty:
        raise DataQualityError(log.source, None, "no_data_rows", "the file has a header but no data rows")
    log.record("no_data_rows", 0)
    if "source_row" not in frame:
        frame = frame.assign(source_row=np.arange(2, len(frame) + 2))
    ts_col = "ts_event" if fmt == "databento" else "timestamp"

    timestamps, naive = _parse_timestamps(frame, ts_col, log, assume_timezone)
    out = pd.DataFrame({"timestamp": timestamps}, index=frame.index)
    integral = True  # every price written as an integer: the first sign of fixed-point prices
    for col in (*PRICE_COLUMNS, "volume"):
        values = pd.to_numeric(frame[col], errors="coerce")
        bad = values.isna() | ~np.isfinite(values.astype(float))
        if bad.any():
            row = _rows(frame, bad, 1)[0]
            raise DataQualityError(
                log.source, row, "unparseable_value",
                f"column {col!r} value {frame.loc[bad, col].iloc[0]!r} is not a finite number",
            )
        out[col] = values.astype(float)
        if col in PRICE_COLUMNS:
            integral = integral and _written_as_integers(frame[col])
    if integral and out["close"].abs().median() >= FIXED_POINT_SCALE:
        out[list(PRICE_COLUMNS)] = out[list(PRICE_COLUMNS)] / FIXED_POINT_SCALE
        log.record("fixed_point_price", len(out), _rows(frame, np.ones(len(frame), bool)),
                   detail=f"prices were integers in units of 1e-9 (median close {out['close'].median():g} "
                          "after dividing by 1e9)")
    else:
        log.record("fixed_point_price", 0)
    out["symbol"] = frame["symbol"].astype(str).str.strip() if "symbol" in frame else default_symbol
    out["source_row"] = frame["source_row"].astype(np.int64)
    if "regime" in frame:  # the synthetic market's hidden label travels separately
        out["regime"] = frame["regime"].astype(str)
    log.record("unparseable_timestamp", 0)
    log.record("unparseable_value", 0)
    return out.reset_index(drop=True), fmt, naive


def _written_as_integers(values: pd.Series) -> bool:
    """Whether every value is an integer as written (integer dtype, or text of digits only)."""
    if pd.api.types.is_integer_dtype(values):
        return True
    if pd.api.types.is_float_dtype(values) or pd.api.types.is_bool_dtype(values):
        return False
    return bool(values.astype(str).str.strip().str.fullmatch(r"[+-]?\d+").all())


def _parse_timestamps(
    frame: pd.DataFrame, col: str, log: QualityLog, assume_timezone: str
) -> tuple[pd.Series, int]:
    """UTC timestamps, and how many carried no offset (read in ``assume_timezone``)."""
    values = frame[col]
    if pd.api.types.is_datetime64_any_dtype(values):
        if values.dt.tz is not None:
            return values.dt.tz_convert("UTC"), 0
        return values.dt.tz_localize(assume_timezone).dt.tz_convert("UTC"), len(values)
    text = values.astype(str).str.strip()
    is_integer = text.str.fullmatch(r"\d{16,19}")
    parsed = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns, UTC]")
    naive = 0
    if is_integer.any():  # Databento's integer nanoseconds since the epoch
        parsed[is_integer] = pd.to_datetime(text[is_integer].astype(np.int64), unit="ns", utc=True)
    rest = ~is_integer
    if rest.any():
        has_offset = text[rest].str.contains(r"(?:Z|[+-]\d{2}:?\d{2})$", regex=True)
        aware_idx = has_offset[has_offset].index
        naive_idx = has_offset[~has_offset].index
        naive = len(naive_idx)
        # utc=True keeps mixed -05:00/-04:00 offsets instead of turning half into NaT.
        if len(aware_idx):
            parsed[aware_idx] = pd.to_datetime(text[aware_idx], utc=True, errors="coerce", format="ISO8601")
        if len(naive_idx):
            local = pd.to_datetime(text[naive_idx], errors="coerce", format="ISO8601")
            parsed[naive_idx] = local.dt.tz_localize(
                assume_timezone, ambiguous="NaT", nonexistent="NaT"
            ).dt.tz_convert("UTC")
    bad = parsed.isna()
    if bad.any():
        row = _rows(frame, bad, 1)[0]
        raise DataQualityError(
            log.source, row, "unparseable_timestamp",
            f"{col} value {values[bad].iloc[0]!r} cannot be parsed as a timestamp"
            + (f" (ambiguous or nonexistent in {assume_timezone})" if assume_timezone != "UTC" else ""),
        )
    return parsed, naive


def select_outright_contract(
    bars: pd.DataFrame, log: QualityLog, *, symbol_root: str | None = None, exchange_tz: str
) -> pd.DataFrame:
    """Keep one outright contract per session day.

    Rules, in order: calendar spreads (outright legs joined by ``-``, e.g.
    ``NQZ5-NQH6``) are dropped (``calendar_spread``); if ``symbol_root`` is given, symbols of
    other roots are dropped (``other_instrument``); then on each New York
    calendar day the outright with the largest total volume is kept and the
    other months dropped (``non_front_contract``): a simple volume roll rule.

    Raises:
        DataQualityError: several roots remain and ``symbol_root`` is unset.
    """
    is_spread = bars["symbol"].map(_is_spread).astype(bool)
    log.record("calendar_spread", int(is_spread.sum()), _rows(bars, is_spread))
    bars = bars.loc[~is_spread]

    roots = bars["symbol"].map(_root_of)
    if symbol_root:
        other = roots != symbol_root.upper()
        log.record("other_instrument", int(other.sum()), _rows(bars, other))
        bars, roots = bars.loc[~other], roots.loc[~other]
    else:
        log.record("other_instrument", 0)
        if roots.nunique() > 1:
            raise DataQualityError(
                log.source, None, "other_instrument",
                f"the file holds several instruments {sorted(roots.unique())}; "
                "set data_ingestion.symbol_root to choose one",
            )
    if bars.empty:
        return bars
    day = bars["timestamp"].dt.tz_convert(exchange_tz).dt.date
    volume_by_day = bars.groupby([day, bars["symbol"]])["volume"].sum()
    front = volume_by_day.groupby(level=0).idxmax().map(lambda key: key[1])
    keep = bars["symbol"].to_numpy() == day.map(front).to_numpy()
    log.record("non_front_contract", int((~keep).sum()), _rows(bars, ~keep))
    return bars.loc[keep]


def _is_spread(symbol: str) -> bool:
    """``NQZ5-NQH6``: outright legs joined by ``-`` (a name like ``NQ-SYNTH`` is not a spread)."""
    legs = symbol.split("-")
    return len(legs) > 1 and all(_OUTRIGHT.match(leg) for leg in legs)


def _root_of(symbol: str) -> str:
    match = _OUTRIGHT.match(symbol)
    return match.group("root") if match else symbol
