"""A Kedro dataset for Stable-Baselines3 models (zip files).

SB3 zips contain pickled objects: load them only from places you trust.
"""

from __future__ import annotations

import importlib
from pathlib import PurePosixPath
from typing import Any

import fsspec
from kedro.io import AbstractDataset, DatasetError
from kedro.io.core import get_filepath_str, get_protocol_and_path

__all__ = ["SB3ModelDataset"]


class SB3ModelDataset(AbstractDataset[Any, Any]):
    """Saves ``model.save(path)`` and loads ``<algorithm>.load(path)`` on the CPU.

    Example::

        phase2_policy:
          type: hybrid_trader.datasets.SB3ModelDataset
          filepath: data/06_models/phase2_policy.zip
          algorithm: sb3_contrib.MaskablePPO
          produced_by: phase2   # the pipeline that writes it (named in the missing-file error)
    """

    def __init__(self, filepath: str, algorithm: str = "sb3_contrib.MaskablePPO", produced_by: str | None = None,
                 metadata: dict[str, Any] | None = None) -> None:
        protocol, path = get_protocol_and_path(filepath)
        if protocol != "file":
            raise DatasetError("SB3ModelDataset supports local files only")
        self._filepath = PurePosixPath(path)
        self._algorithm = algorithm
        self._produced_by = produced_by
        self._fs = fsspec.filesystem(protocol)
        self.metadata = metadata

    def _algorithm_class(self):
        module, _, name = self._algorithm.rpartition(".")
        return getattr(importlib.import_module(module), name)

    def load(self) -> Any:
        path = get_filepath_str(self._filepath, "file")
        if not self._fs.exists(path):
            run = f"`kedro run --pipelines={self._produced_by}`" if self._produced_by else "the pipeline that trains it"
            raise DatasetError(f"no model at {path}: run {run} first")
        return self._algorithm_class().load(path, device="cpu")

    def save(self, model: Any) -> None:
        self._fs.mkdirs(str(self._filepath.parent), exist_ok=True)
        model.save(get_filepath_str(self._filepath, "file"))

    def _exists(self) -> bool:
        return self._fs.exists(get_filepath_str(self._filepath, "file"))

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "algorithm": self._algorithm}
