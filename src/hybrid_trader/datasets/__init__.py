"""Custom Kedro datasets of the project."""

from hybrid_trader.datasets.market_bars import BarsCSVDataset, SyntheticBarsDataset
from hybrid_trader.datasets.sb3_model import SB3ModelDataset

__all__ = ["BarsCSVDataset", "SyntheticBarsDataset", "SB3ModelDataset"]
