"""Custom Kedro datasets of the project."""

from hybrid_trader.datasets.market_bars import BarsCSVDataset, SyntheticBarsDataset

__all__ = ["BarsCSVDataset", "SyntheticBarsDataset"]
