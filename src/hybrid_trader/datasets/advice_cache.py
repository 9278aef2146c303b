"""A Kedro dataset for the advisor's persistent answer cache (Parquet).

Loading returns an :class:`~hybrid_trader.advisor.cache.AdviceCache` bound to
the file (empty when there is none yet); the cache writes itself back to that
file when flushed, so every run reuses and extends the answers of earlier ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset

from hybrid_trader.advisor.cache import AdviceCache

__all__ = ["AdviceCacheDataset"]


class AdviceCacheDataset(AbstractDataset[AdviceCache, AdviceCache]):
    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = Path(filepath)
        self.metadata = metadata

    def load(self) -> AdviceCache:
        return AdviceCache(self._filepath)

    def save(self, data: AdviceCache) -> None:
        data.path = self._filepath
        data._dirty = True
        data.flush()

    def _exists(self) -> bool:
        return self._filepath.exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}
