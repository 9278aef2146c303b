"""Shared fixtures: small bar tables written as the files users bring."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import settings
from omegaconf import OmegaConf

from hybrid_trader.advisor.backend import BackendConfig, TransformersBackend
from hybrid_trader.advisor.prompts import Buckets, PromptBuilder, PromptTemplate

from hybrid_trader.env.market import MarketData
from hybrid_trader.features.bar_features import compute_bar_features
from hybrid_trader.features.scaling import FeatureScaler
from hybrid_trader.market_data.clean import CleaningConfig, ingest_bars
from hybrid_trader.market_data.synthetic import SyntheticMarketConfig, generate_synthetic_bars
from hybrid_trader.markets import CONTRACTS

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Property tests draw the same examples on every run and machine, so a failure reproduces: examples
# derive from each test's own code (derandomize), no example database carries state between runs,
# and no per-example deadline (a loaded machine is slow, not wrong). HYPOTHESIS_PROFILE=explore
# (or pytest --hypothesis-profile=explore) searches with fresh random examples instead.
settings.register_profile("ci", derandomize=True, database=None, max_examples=50, deadline=None, print_blob=True)
settings.register_profile("explore", max_examples=500, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def two_day_bars() -> pd.DataFrame:
    """Two full synthetic sessions (2024-03-08 EST and 2024-03-11 EDT, across DST)."""
    bars = generate_synthetic_bars(SyntheticMarketConfig(n_days=2, seed=3, start_date="2024-03-08"))
    return bars.drop(columns=["regime"])


@pytest.fixture(scope="session")
def synthetic_ingestion():
    """Three synthetic sessions (one an early close): clean bars, raw features and a scaler fitted on them."""
    raw = generate_synthetic_bars(SyntheticMarketConfig(n_days=3, seed=8, start_date="2024-11-27"))
    result = ingest_bars(raw, CleaningConfig(), source="synthetic")
    features = compute_bar_features(result.bars, result.sessions)
    return result.bars, features, FeatureScaler.fit(features)


@pytest.fixture(scope="session")
def synthetic_frames(synthetic_ingestion):
    """Three synthetic sessions (one an early close) with scaled features."""
    bars, features, scaler = synthetic_ingestion
    return bars, scaler.transform(features)


@pytest.fixture(scope="session")
def synthetic_market(synthetic_frames) -> MarketData:
    bars, features = synthetic_frames
    return MarketData.from_frames(bars, features, CONTRACTS["NQ"])


@pytest.fixture(scope="session")
def advisor_params():
    return OmegaConf.to_container(OmegaConf.load(PROJECT_ROOT / "conf/base/parameters_advisor.yml"))["advisor"]


@pytest.fixture(scope="session")
def builder(advisor_params):
    prompt = advisor_params["prompt"]
    return PromptBuilder(PromptTemplate(prompt["version"], prompt["prefix"], prompt["state"]),
                         Buckets(**prompt["buckets"]))


@pytest.fixture(scope="session")
def llm_cache_dir(tmp_path_factory):
    """Where the real default model is converted, once per session."""
    return tmp_path_factory.mktemp("llm")


@pytest.fixture(scope="session")
def real_backend(llm_cache_dir):
    """The real default model (SmolLM2-135M-Instruct), loaded offline."""
    return TransformersBackend.load(BackendConfig(cache_dir=str(llm_cache_dir), torch_threads=1))


@pytest.fixture(scope="session")
def tiny_backend(real_backend):
    """A random 2-layer model with the real SmolLM2 tokenizer: answers in milliseconds."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tok = real_backend.tokenizer
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512)
    return TransformersBackend(LlamaForCausalLM(config), tok, "tiny-random", "cpu")


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory):
    """A real PostgreSQL server for the session (tests/pg_server.py); take a database of your own
    with ``postgres_server.create_database(name)``. Skipped only where no server binaries exist."""
    from tests.pg_server import find_bindir, running_postgres

    if find_bindir() is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found; `make postgres` installs them")
    with running_postgres(tmp_path_factory.mktemp("postgres")) as server:
        yield server


def to_plain_csv(bars: pd.DataFrame, path: Path, *, local_offsets: bool = True) -> Path:
    """Write bars as a plain ``timestamp,open,high,low,close,volume`` file.

    With ``local_offsets`` the timestamps carry New York offsets, so a file that
    spans a DST change mixes -05:00 and -04:00.
    """
    ts = bars["timestamp"].dt.tz_convert("America/New_York") if local_offsets else bars["timestamp"]
    out = bars.assign(timestamp=ts.map(lambda t: t.isoformat()))
    out[["timestamp", "open", "high", "low", "close", "volume"]].to_csv(path, index=False)
    return path
