"""Read-only Kedro datasets that supply the raw bar table.

The ``raw_bars`` catalog entry picks the source: the embedded synthetic
market (default), a CSV file (Databento GLBX ``ohlcv-1m`` or plain
``timestamp,open,high,low,close,volume``; ``.zip``/``.gz`` read directly) or
a Databento DBN file (``.dbn``, ``.dbn.zst``). All return the same raw-table
contract (see :mod:`hybrid_trader.market_data.ingest`), with
``attrs["source"]`` naming the input for error messages.
"""

from __future__ import annotations

import csv
import io
from pathlib import PurePosixPath
from typing import Any

import fsspec
import numpy as np
import pandas as pd
from kedro.io import AbstractDataset, DatasetError
from kedro.io.core import get_filepath_str, get_protocol_and_path

from hybrid_trader.market_data.dbn_file import is_dbn_path, read_dbn_bars
from hybrid_trader.market_data.synthetic import SyntheticMarketConfig, generate_synthetic_bars

__all__ = ["BarsCSVDataset", "BarsDBNDataset", "SyntheticBarsDataset"]


class _BarsFileDataset(AbstractDataset[None, pd.DataFrame]):
    """A user's file of 1-minute bars (read-only); subclasses read one format."""

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        protocol, path = get_protocol_and_path(filepath)
        self._protocol = protocol
        self._filepath = PurePosixPath(path)
        self._fs = fsspec.filesystem(protocol)
        self.metadata = metadata

    def _existing_path(self) -> str:
        path = get_filepath_str(self._filepath, self._protocol)
        if not self._fs.exists(path):
            raise DatasetError(
                f"raw bar file {path} does not exist; put your file there or point the "
                "'raw_bars' catalog entry at it (see README, 'Bring your own data')"
            )
        return path

    def save(self, data: None) -> None:
        raise DatasetError(f"{type(self).__name__} is read-only")

    def _exists(self) -> bool:
        return self._fs.exists(get_filepath_str(self._filepath, self._protocol))

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "protocol": self._protocol}


class BarsCSVDataset(_BarsFileDataset):
    """A user's CSV of 1-minute bars, read as text so validation sees every value.

    Example catalog entry::

        raw_bars:
          type: hybrid_trader.datasets.BarsCSVDataset
          filepath: data/01_raw/glbx-mdp3-20240101-20241231.ohlcv-1m.csv.zip
    """

    def __init__(self, filepath: str, load_args: dict[str, Any] | None = None,
                 metadata: dict[str, Any] | None = None) -> None:
        if is_dbn_path(filepath):
            raise DatasetError(f"{filepath} is a DBN file; read it with hybrid_trader.datasets.BarsDBNDataset")
        super().__init__(filepath, metadata)
        self._load_args = {"compression": "infer", **(load_args or {})}

    def load(self) -> pd.DataFrame:
        path = self._existing_path()
        opening = {k: v for k, v in self._load_args.items() if k in _OPENING_ARGS}
        parsing = {k: v for k, v in self._load_args.items() if k not in _OPENING_ARGS}
        try:
            lines = _file_lines(path, opening)
        except pd.errors.EmptyDataError:  # not even a header: validation names the file and rule
            lines = pd.Series([], dtype=str)
        # Only a line of nothing but whitespace is blank: a line of separators is a row (of
        # empty fields, which validation refuses with its line number).
        kept = lines.loc[lines.str.strip() != ""]
        if kept.empty:
            frame = pd.DataFrame()
        else:
            frame = pd.read_csv(io.StringIO("\n".join(kept)), dtype=str, keep_default_na=False, **parsing)
        # Line numbers in the file, as an editor shows them (the first line is line 1).
        frame["source_row"] = kept.index[1: len(frame) + 1].to_numpy() + 1
        frame.attrs["source"] = path
        return frame


# read_csv arguments that open and decode the file rather than parse its lines.
_OPENING_ARGS = ("compression", "encoding", "encoding_errors", "storage_options")


def _file_lines(path: str, opening: dict[str, Any]) -> pd.Series:
    """Every line of the (possibly compressed) file as read, blank ones included, indexed from 0."""
    # One field per line: a separator that no bar file holds, and quotes read as text.
    lines = pd.read_csv(path, header=None, names=["line"], sep="\x1f", quoting=csv.QUOTE_NONE, dtype=str,
                        keep_default_na=False, skip_blank_lines=False, **opening)
    return lines["line"].fillna("")


class BarsDBNDataset(_BarsFileDataset):
    """A Databento DBN file of OHLCV-1m records, zstd-compressed (``.dbn.zst``) or not (``.dbn``).

    Decoded with Databento's ``databento-dbn`` library (see
    :mod:`hybrid_trader.market_data.dbn_file`). Example catalog entry::

        raw_bars:
          type: hybrid_trader.datasets.BarsDBNDataset
          filepath: data/01_raw/glbx-mdp3-20240101-20241231.ohlcv-1m.dbn.zst
    """

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        if not is_dbn_path(filepath):
            raise DatasetError(f"{filepath} does not end in .dbn or .dbn.zst; a CSV is read by BarsCSVDataset")
        super().__init__(filepath, metadata)

    def load(self) -> pd.DataFrame:
        path = self._existing_path()
        with self._fs.open(path, "rb") as stream:
            return read_dbn_bars(stream, source=path)


class SyntheticBarsDataset(AbstractDataset[None, pd.DataFrame]):
    """The embedded synthetic NQ-like market (SYNTHETIC, seeded, deterministic).

    Arguments are those of
    :class:`hybrid_trader.market_data.synthetic.SyntheticMarketConfig`
    (``n_days``, ``seed``, ``start_date``, ``start_price``, ...).
    """

    def __init__(self, metadata: dict[str, Any] | None = None, **config: Any) -> None:
        self._config = SyntheticMarketConfig(**config)
        self.metadata = metadata

    def load(self) -> pd.DataFrame:
        frame = generate_synthetic_bars(self._config)
        frame["source_row"] = np.arange(1, len(frame) + 1)
        frame.attrs["source"] = f"synthetic market (seed {self._config.seed}, {self._config.n_days} days)"
        return frame

    def save(self, data: None) -> None:
        raise DatasetError("SyntheticBarsDataset is read-only; change its arguments in the catalog")

    def _exists(self) -> bool:
        return True

    def _describe(self) -> dict[str, Any]:
        return {"n_days": self._config.n_days, "seed": self._config.seed, "start_date": self._config.start_date}
