"""The advisor's GPU path: device placement, half-precision dtype, scoring on CUDA.

Skips without CUDA. Self-contained (runs with ``pytest --noconftest``) so it
can run on a GPU machine that has torch and transformers but not the whole
project stack; the tokenizer folder comes from ``HYBRID_TRADER_TOKENIZER_DIR``
or the default model's converted folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _tokenizer_dir() -> Path:
    configured = os.environ.get("HYBRID_TRADER_TOKENIZER_DIR")
    if configured:
        return Path(configured)
    converted = sorted(Path("data/06_models/llm").glob("*/tokenizer.json"))
    if not converted:
        pytest.skip("no tokenizer folder: run the advisor once on the CPU or set HYBRID_TRADER_TOKENIZER_DIR")
    return converted[0].parent


def test_gpu_backend_places_a_model_on_cuda_in_half_precision_and_scores_like_full_sequences(tmp_path):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from hybrid_trader.advisor.backend import BackendConfig, TransformersBackend

    tokenizer = AutoTokenizer.from_pretrained(_tokenizer_dir())
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    LlamaForCausalLM(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)

    backend = TransformersBackend.load(BackendConfig(model_path=str(tmp_path), device="auto", dtype="auto"))
    parameter = next(backend.model.parameters())
    assert backend.device == "cuda" and parameter.device.type == "cuda"
    assert parameter.dtype in (torch.bfloat16, torch.float16)

    prefix, suffixes, options = "Market note.", [" Up strongly today and", " Down"], [" BUY", " SELL", " HOLD"]
    scores = backend.option_logprobs(prefix, suffixes, options)
    assert scores.shape == (2, 3) and (scores < 0).all()
    for i, suffix in enumerate(suffixes):
        context = tokenizer(prefix, add_special_tokens=False).input_ids + tokenizer(suffix, add_special_tokens=False).input_ids
        for j, option in enumerate(options):
            answer = tokenizer(option, add_special_tokens=False).input_ids
            with torch.inference_mode():
                logits = backend.model(torch.tensor([context + answer], device="cuda")).logits
            logprobs = torch.log_softmax(logits.float(), -1)[0]
            expected = sum(logprobs[len(context) - 1 + k, t].item() for k, t in enumerate(answer))
            assert scores[i, j] == pytest.approx(expected, abs=0.05)  # half precision
