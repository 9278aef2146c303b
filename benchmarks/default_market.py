"""The default run's market and its frames, prepared as the pipeline prepares them, for
benchmarks that measure on the default data without running Kedro."""

from __future__ import annotations

from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from hybrid_trader.features.bar_features import compute_bar_features
from hybrid_trader.market_data.clean import CleaningConfig, ingest_bars
from hybrid_trader.market_data.synthetic import SyntheticMarketConfig, generate_synthetic_bars
from hybrid_trader.markets import resolve_contract
from hybrid_trader.pipelines.data_split.nodes import fit_feature_scaler, scale_features, split_trading_days


def base_conf() -> dict[str, Any]:
    """``conf/base``'s parameters (shared, ingestion, split, Phase 2) and the raw market's settings
    (``raw``: the ``raw_bars`` catalog entry's generator arguments)."""
    def load(name: str) -> dict[str, Any]:
        return OmegaConf.to_container(OmegaConf.load(f"conf/base/{name}"))

    catalog = load("catalog.yml")["raw_bars"]
    return {"raw": {k: catalog[k] for k in ("n_days", "seed", "start_date", "start_price")},
            **load("parameters.yml"), **load("parameters_data_ingestion.yml"),
            **load("parameters_data_split.yml"), **load("parameters_phase2.yml")}


def default_frames(conf: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """Clean bars, scaled features with their ``split`` (the pipeline's day split, the scaler
    fitted on train days) and each session's hidden regime, for the market ``conf["raw"]``."""
    raw = generate_synthetic_bars(SyntheticMarketConfig(**conf["raw"]))
    result = ingest_bars(raw, CleaningConfig(**conf["data_ingestion"]), source="default synthetic market",
                         contract=resolve_contract(conf["market"]))
    features = compute_bar_features(result.bars, result.sessions)
    day_splits, _ = split_trading_days(result.bars, conf["data_split"])
    scaler = fit_feature_scaler(features, day_splits, conf["scaling"])
    regimes = result.day_regimes.set_index("session_date")["regime"]
    return result.bars, scale_features(features, day_splits, scaler), regimes
