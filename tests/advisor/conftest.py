import numpy as np
import pytest
from omegaconf import OmegaConf

from hybrid_trader.advisor.backend import BackendConfig, TransformersBackend
from hybrid_trader.advisor.prompts import Buckets, PromptBuilder, PromptTemplate
from tests.conftest import PROJECT_ROOT


@pytest.fixture(scope="session")
def advisor_params():
    return OmegaConf.to_container(OmegaConf.load(PROJECT_ROOT / "conf/base/parameters_advisor.yml"))["advisor"]


@pytest.fixture(scope="session")
def builder(advisor_params):
    prompt = advisor_params["prompt"]
    return PromptBuilder(PromptTemplate(prompt["version"], prompt["prefix"], prompt["state"]),
                         Buckets(**prompt["buckets"]))


@pytest.fixture(scope="session")
def real_backend(tmp_path_factory):
    """The real default model (SmolLM2-135M-Instruct), loaded offline; converted once per session."""
    cache = tmp_path_factory.mktemp("llm")
    return TransformersBackend.load(BackendConfig(cache_dir=str(cache), torch_threads=1))


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


def up_state(**overrides):
    state = dict(sma50_slope=1.0, adx14=35.0, rsi14=68.0, momentum30=0.006, vwap_distance=2.0,
                 volatility_percentile=0.5, atr14=18.0, position_side=0, unrealized_pnl=0.0,
                 drawdown_buffer=2500.0, minutes_to_flat=300.0)
    state.update(overrides)
    return state


def mirrored(state):
    """The same situation upside down."""
    return dict(state, sma50_slope=-state["sma50_slope"], rsi14=100 - state["rsi14"],
                momentum30=-state["momentum30"], vwap_distance=-state["vwap_distance"])


FLAT_MASK = np.array([True, True, True, False, False, False])
LONG_MASK = np.array([True, False, False, True, True, False])
