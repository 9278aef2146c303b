"""Databento files written by Databento's own library (databento-dbn), as its batch downloads are.

Bars become OHLCV-1m records with fixed-point prices (1e-9 units) and ns
timestamps; the metadata maps each raw symbol (``NQH4``) to its instrument id
for the dates of the bars, as a GLBX.MDP3 download with ``stype_in=raw_symbol``
does.
"""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import databento_dbn as dbn
import pandas as pd


def dbn_bytes(bars_by_symbol: dict[str, pd.DataFrame], *, schema: dbn.Schema = dbn.Schema.OHLCV_1M) -> bytes:
    """Uncompressed DBN: metadata, then one OHLCV record per bar, in time order.

    Instrument ids are 100, 101, ... in the order of ``bars_by_symbol``.
    """
    records, mappings = [], []
    all_times = pd.concat([bars["timestamp"] for bars in bars_by_symbol.values()])
    for instrument_id, (symbol, bars) in enumerate(bars_by_symbol.items(), start=100):
        ns = bars["timestamp"].dt.tz_convert("UTC").astype("datetime64[ns, UTC]").astype("int64").to_numpy()
        fixed = {col: (bars[col] * dbn.FIXED_PRICE_SCALE).round().astype("int64").to_numpy()
                 for col in ("open", "high", "low", "close")}
        volume = bars["volume"].round().astype("int64").to_numpy()
        for i in range(len(bars)):
            records.append(dbn.OHLCVMsg(
                rtype=int(dbn.RType.OHLCV_1M.value), publisher_id=1, instrument_id=instrument_id, ts_event=int(ns[i]),
                open=int(fixed["open"][i]), high=int(fixed["high"][i]), low=int(fixed["low"][i]),
                close=int(fixed["close"][i]), volume=int(volume[i]),
            ))
        days = bars["timestamp"].dt.tz_convert("UTC").dt.date
        mappings.append(SimpleNamespace(raw_symbol=symbol, intervals=[SimpleNamespace(
            start_date=days.min(), end_date=days.max() + pd.Timedelta(days=1), symbol=str(instrument_id))]))
    records.sort(key=lambda record: (record.ts_event, record.instrument_id))
    start = int(all_times.min().value)
    metadata = dbn.Metadata(
        dataset="GLBX.MDP3", start=start, end=int(all_times.max().value) + 60_000_000_000,
        stype_in=dbn.SType.RAW_SYMBOL, stype_out=dbn.SType.INSTRUMENT_ID, schema=schema,
        symbols=list(bars_by_symbol), mappings=mappings,
    )
    return bytes(metadata) + b"".join(bytes(record) for record in records)


def write_dbn(path: Path, bars_by_symbol: dict[str, pd.DataFrame], **kwargs) -> Path:
    """A ``.dbn`` file, or a zstd-compressed one when the name ends in ``.zst``."""
    data = dbn_bytes(bars_by_symbol, **kwargs)
    if path.suffix == ".zst":
        out = io.BytesIO()
        with dbn.Transcoder(out, dbn.Encoding.DBN, dbn.Compression.ZSTD) as transcoder:
            transcoder.write(data)
        data = out.getvalue()
    path.write_bytes(data)
    return path


def write_databento_csv(path: Path, bars_by_symbol: dict[str, pd.DataFrame], *, pretty_px: bool,
                        pretty_ts: bool = True) -> Path:
    """The CSV Databento writes for these records (``map_symbols`` adds the ``symbol`` column)."""
    out = io.BytesIO()
    with dbn.Transcoder(out, dbn.Encoding.CSV, dbn.Compression.NONE, pretty_px=pretty_px,
                        pretty_ts=pretty_ts, map_symbols=True) as transcoder:
        transcoder.write(dbn_bytes(bars_by_symbol))
    path.write_bytes(out.getvalue())
    return path
