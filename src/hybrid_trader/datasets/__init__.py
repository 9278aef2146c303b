"""Custom Kedro datasets of the project."""

from hybrid_trader.datasets.advice_cache import AdviceCacheDataset
from hybrid_trader.datasets.market_bars import BarsCSVDataset, BarsDBNDataset, SyntheticBarsDataset
from hybrid_trader.datasets.sb3_model import SB3ModelDataset

__all__ = ["AdviceCacheDataset", "BarsCSVDataset", "BarsDBNDataset", "SyntheticBarsDataset", "SB3ModelDataset"]
