"""The advisor's LoRA fine-tuning: its loss is the scorer's, it learns, it loads, it is keyed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hybrid_trader.advisor.backend import BackendConfig, TransformersBackend
from hybrid_trader.advisor.finetune import FinetuneConfig, finetune_key, train_lora_adapter, with_adapter

WORDS = ["HOLD", "BUY", "SELL"]
PREFIX = "<|im_start|>system\nYou are a trader.<|im_end|>\n<|im_start|>user\nPick an action.\n"
PROMPTS = ["10:00, session up 0-5 ATR.<|im_end|>\n<|im_start|>assistant\n",
           "14:30, session down 5-15 ATR, weak trend.<|im_end|>\n<|im_start|>assistant\n",
           "x<|im_end|>\n<|im_start|>assistant\n"]


def _targets() -> pd.DataFrame:
    return pd.DataFrame({"prompt": PROMPTS, "p_hold": [0.0, 0.0, 0.5], "p_buy": [1.0, 0.0, 0.5],
                         "p_sell": [0.0, 1.0, 0.0], "count": [3, 1, 2]})


def _scorer_loss(backend: TransformersBackend, targets: pd.DataFrame) -> float:
    """The weighted soft cross-entropy of the targets against the scorer's answer distribution."""
    scores = backend.option_logprobs(PREFIX, list(targets["prompt"]), WORDS)
    log_answer = scores - np.log(np.exp(scores).sum(axis=1, keepdims=True))
    weight = targets["count"].to_numpy(float)
    rows = -(targets[["p_hold", "p_buy", "p_sell"]].to_numpy() * log_answer).sum(axis=1)
    return float((weight * rows).sum() / weight.sum())


@pytest.mark.parametrize("top_layers", [1, None])
def test_the_first_loss_is_the_scorers_cross_entropy_on_the_tiny_model(tiny_backend, tmp_path, top_layers):
    # A step size of ~0 leaves the model as it was: the first epoch's loss is measured on the base model
    # through the training path (frozen trunk, shared prefix, two passes for the words' later tokens).
    config = FinetuneConfig(epochs=1, batch_size=8, learning_rate=1e-12, top_layers=top_layers, torch_threads=1)
    report = train_lora_adapter(tiny_backend.model, tiny_backend.tokenizer, PREFIX, _targets(), WORDS, config,
                                tmp_path / "adapter")
    assert report["epoch_losses"][0] == pytest.approx(_scorer_loss(tiny_backend, _targets()), rel=1e-4)
    assert report["adapted_layers"] == ([1, 1] if top_layers == 1 else [0, 1])
    assert (tmp_path / "adapter" / "adapter_config.json").exists()


def test_training_leaves_the_base_model_unchanged(tiny_backend, tmp_path):
    before = {k: v.clone() for k, v in tiny_backend.model.state_dict().items()}
    train_lora_adapter(tiny_backend.model, tiny_backend.tokenizer, PREFIX, _targets(), WORDS,
                       FinetuneConfig(epochs=2, batch_size=2, top_layers=1, torch_threads=1), tmp_path / "a")
    after = tiny_backend.model.state_dict()
    assert set(after) == set(before)
    assert all(np.array_equal(before[k].numpy(), after[k].numpy()) for k in before)


def test_the_real_model_learns_its_targets_and_the_advisor_loads_the_adapter(real_backend, llm_cache_dir, tmp_path):
    targets = _targets().iloc[:2].assign(count=1)
    folder = tmp_path / "adapter"
    report = train_lora_adapter(real_backend.model, real_backend.tokenizer, PREFIX, targets, WORDS,
                                FinetuneConfig(epochs=25, batch_size=2, torch_threads=1), folder)
    assert report["epoch_losses"][-1] < 0.5 * report["epoch_losses"][0]
    tuned = TransformersBackend.load(BackendConfig(cache_dir=str(llm_cache_dir), torch_threads=1,
                                                   adapter_path=str(folder)))
    assert tuned.identity.startswith(real_backend.identity + "+adapter:")  # new answers, new cache keys
    scores = tuned.option_logprobs(PREFIX, list(targets["prompt"]), WORDS)
    answers = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    print(f"\nfine-tuned answers (HOLD, BUY, SELL): {np.round(answers, 3).tolist()}")
    assert answers[0].argmax() == 1 and answers[1].argmax() == 2


def test_the_key_changes_with_every_input():
    config = FinetuneConfig()
    base = finetune_key("model-a", PREFIX, _targets(), config)
    changed = _targets()
    changed.loc[0, "count"] = 4
    assert len({base, finetune_key("model-b", PREFIX, _targets(), config),
                finetune_key("model-a", PREFIX + " ", _targets(), config),
                finetune_key("model-a", PREFIX, changed, config),
                finetune_key("model-a", PREFIX, _targets(), FinetuneConfig(rank=4))}) == 5
    assert finetune_key("model-a", PREFIX, _targets(), FinetuneConfig()) == base


def test_bad_settings_are_refused_and_with_adapter_skips_calibration_of_the_trained_answers():
    with pytest.raises(ValueError, match="top_layers"):
        FinetuneConfig(top_layers=0)
    with pytest.raises(ValueError, match="learning_rate"):
        FinetuneConfig(learning_rate=0.0)
    params = {"calibrate": True, "model": {"model_path": None, "adapter_path": None}}
    assert with_adapter(params, {"enabled": False, "adapter_path": None}) is params
    tuned = with_adapter(params, {"adapter_path": "data/x"})
    assert tuned["model"]["adapter_path"] == "data/x" and tuned["calibrate"] is True
    assert tuned["uncalibrated_options"] == [[0, 1, 2]]  # HOLD, BUY, SELL: a flat account's answers
    assert params["model"]["adapter_path"] is None  # the parameters themselves are not changed
