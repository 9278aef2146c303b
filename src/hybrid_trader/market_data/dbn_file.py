"""Read Databento's native DBN files (``.dbn``, zstd-compressed ``.dbn.zst``) as a raw bar table.

Decoding is done by Databento's own library (``databento-dbn``). The result
follows the raw-table contract of :mod:`hybrid_trader.market_data.ingest`,
with the columns of a Databento CSV export, so the same rules and report apply:

* ``ts_event``: tz-aware UTC (DBN stores nanoseconds since the epoch);
* ``open``, ``high``, ``low``, ``close``: DBN's fixed-point integers (units of
  1e-9), decoded by the ``fixed_point_price`` rule like a CSV written with
  ``pretty_px=False``;
* ``symbol``: the symbol the file's metadata maps the record's instrument id
  to on the record's UTC date (the ``symbol`` column Databento's own CSV
  export adds); a record without a mapping gets its instrument id as text;
* ``source_row``: the record's position in the file, the first record being 1
  (a DBN file has no lines).
"""

from __future__ import annotations

from typing import BinaryIO

import databento_dbn as dbn
import numpy as np
import pandas as pd

from hybrid_trader.market_data.quality import DataQualityError

__all__ = ["read_dbn_bars", "is_dbn_path"]

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"  # the first four bytes of every zstd frame
_CHUNK_BYTES = 1 << 22
_FIELDS = ("ts_event", "rtype", "publisher_id", "instrument_id", "open", "high", "low", "close", "volume")


def is_dbn_path(path: str) -> bool:
    """Whether a file name says DBN (``.dbn`` or ``.dbn.zst``)."""
    return path.lower().endswith((".dbn", ".dbn.zst"))


def read_dbn_bars(stream: BinaryIO, source: str) -> pd.DataFrame:
    """Decode an OHLCV-1m DBN stream, compressed with zstd or not (told by its first bytes).

    Args:
        stream: The file, opened for binary reading.
        source: Name of the file, for errors and ``attrs["source"]``.

    Returns:
        The raw table described in the module docstring; ``attrs`` holds
        ``source`` and ``format`` (``"databento-dbn"``).

    Raises:
        DataQualityError: (rule ``dbn_schema``) not DBN, truncated, or not
            ``ohlcv-1m`` records.
    """
    head = stream.read(len(_ZSTD_MAGIC))
    decoder = dbn.DBNDecoder(compression=dbn.Compression.ZSTD if head == _ZSTD_MAGIC else dbn.Compression.NONE)
    metadata: dbn.Metadata | None = None
    columns: dict[str, list[int]] = {name: [] for name in (*_FIELDS, "source_row")}
    position = 0
    chunk = head
    while chunk:
        try:
            decoded = decoder.write_and_decode(chunk)
        except dbn.DBNError as err:
            raise DataQualityError(source, None, "dbn_schema", f"not a readable DBN file: {err}") from err
        for item in decoded:
            if isinstance(item, dbn.Metadata):
                metadata = _checked(item, source)
                continue
            position += 1
            if isinstance(item, dbn.OHLCVMsg) and item.rtype == dbn.RType.OHLCV_1M:
                for name in _FIELDS:
                    columns[name].append(getattr(item, name))
                columns["source_row"].append(position)
        chunk = stream.read(_CHUNK_BYTES)
    if metadata is None or decoder.buffer():
        raise DataQualityError(source, None, "dbn_schema",
                               "the file ends inside its metadata or a record (an incomplete download?)")

    frame = pd.DataFrame({name: np.asarray(values, dtype=np.int64) for name, values in columns.items()})
    frame["ts_event"] = pd.to_datetime(frame["ts_event"], unit="ns", utc=True)
    frame["symbol"] = _symbols(frame, metadata)
    frame.attrs.update(source=source, format="databento-dbn")
    return frame


def _checked(metadata: dbn.Metadata, source: str) -> dbn.Metadata:
    if metadata.schema != dbn.Schema.OHLCV_1M:
        schema = getattr(metadata.schema, "value", metadata.schema) or "mixed"
        raise DataQualityError(source, None, "dbn_schema",
                               f"the file holds {schema} records; download the ohlcv-1m schema")
    return metadata


def _symbols(frame: pd.DataFrame, metadata: dbn.Metadata) -> pd.Series:
    """Each record's symbol on its UTC date, from the metadata's mapping intervals ([start, end))."""
    inverse = metadata.stype_in == dbn.SType.INSTRUMENT_ID and metadata.stype_out != dbn.SType.INSTRUMENT_ID
    intervals = [
        # stype_out instrument_id: raw symbol -> ids over dates; the inverse maps an id to symbols.
        (int(key), interval["start_date"], interval["end_date"], interval["symbol"]) if inverse
        else (int(interval["symbol"]), interval["start_date"], interval["end_date"], key)
        for key, key_intervals in metadata.mappings.items()
        for interval in key_intervals
        if interval["symbol"] and (key if inverse else interval["symbol"]).isdigit()
    ]
    fallback = frame["instrument_id"].astype(str)
    if not intervals or frame.empty:
        return fallback
    table = pd.DataFrame(intervals, columns=["instrument_id", "start", "end", "symbol"])
    table["start"], table["end"] = pd.to_datetime(table["start"]), pd.to_datetime(table["end"])
    records = pd.DataFrame({
        "record": np.arange(len(frame)),
        "instrument_id": frame["instrument_id"].to_numpy(),
        "date": frame["ts_event"].dt.tz_localize(None).dt.normalize().to_numpy(),
    })
    matched = records.merge(table, on="instrument_id")
    matched = matched.loc[(matched["date"] >= matched["start"]) & (matched["date"] < matched["end"])]
    symbol = matched.drop_duplicates("record").set_index("record")["symbol"]
    return symbol.reindex(records["record"]).fillna(fallback).set_axis(frame.index).astype(str)
