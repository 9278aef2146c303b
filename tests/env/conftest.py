import pandas as pd
import pytest

from hybrid_trader.env.market import MarketData
from hybrid_trader.features.bar_features import compute_bar_features
from hybrid_trader.features.scaling import FeatureScaler
from hybrid_trader.market_data.clean import CleaningConfig, ingest_bars
from hybrid_trader.market_data.synthetic import SyntheticMarketConfig, generate_synthetic_bars
from hybrid_trader.markets import CONTRACTS


@pytest.fixture(scope="session")
def synthetic_frames():
    """Three synthetic sessions (one an early close) with scaled features."""
    raw = generate_synthetic_bars(SyntheticMarketConfig(n_days=3, seed=8, start_date="2024-11-27"))
    result = ingest_bars(raw, CleaningConfig(), source="synthetic")
    features = compute_bar_features(result.bars, result.sessions)
    scaler = FeatureScaler.fit(features[features["valid_for_trading"]])
    return result.bars, scaler.transform(features)


@pytest.fixture(scope="session")
def synthetic_market(synthetic_frames) -> MarketData:
    bars, features = synthetic_frames
    return MarketData.from_frames(bars, features, CONTRACTS["NQ"])
