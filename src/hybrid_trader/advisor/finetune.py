"""Fine-tuning the advisor on train-day outcomes: a LoRA adapter (peft) on the base model.

Each training example is one distinct flat-account prompt; its target is the
distribution of the labels of the train bars that show that prompt
(:func:`~hybrid_trader.advisor.labels.soft_targets`), weighted by how many bars
show it. The loss is the weighted cross-entropy of that target against the
advisor's answer distribution: the softmax, over the answer words, of each
whole word's log-likelihood after the prompt (every token of the word, as the
scorer reads it). The fine-tuned model is thus trained to give calibrated
answers itself, and the advisor does not apply contextual calibration on top
of those answers (:func:`with_adapter`; in-position answers, not trained, stay
calibrated).

Why it fits in minutes on two CPU cores:

* **LoRA on the top layers only** (``top_layers``, ``q_proj``/``v_proj``):
  the layers below are frozen and unchanged, so their output for every prompt
  is computed once, without gradients (the *trunk*), and each step runs only
  the top layers forward and backward.
* **The static prefix is computed once per step**, not once per example: its
  top-layer keys and values (with gradients, since LoRA changes them) are
  shared by every prompt of the batch, which then runs only its ~45 state
  tokens (and one more pass for the answer words' later tokens). In the
  trunk the prefix's key/value cache is computed once for all.
* **Aggregated labels per distinct prompt**: ~100k train bars become ~1k
  examples.

On a GPU the same code runs with ``device: cuda``; a larger model wants more
``top_layers`` (or all, ``top_layers: null``), and then the trunk holds
nothing and each step is a plain LoRA step.

The adapter is saved with ``save_pretrained`` and loads through
``advisor.model.adapter_path`` (:class:`~hybrid_trader.advisor.backend.TransformersBackend`),
whose identity (and so the advice cache's keys) then includes the adapter's hash.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import torch
from transformers import DynamicCache

from hybrid_trader.advisor.backend import BackendConfig, TransformersBackend, resolve_device
from hybrid_trader.advisor.prescore import FLAT_OPTIONS

__all__ = ["FinetuneConfig", "finetune_key", "train_lora_adapter", "fit_advisor_adapter", "with_adapter"]

logger = logging.getLogger(__name__)
_OBJECTIVE = "whole-word answer distribution, weighted soft cross-entropy"  # a new objective is a new key


@dataclass(frozen=True)
class FinetuneConfig:
    """``advisor.finetune`` parameters.

    Attributes:
        enabled: Fine-tune (else the advisor is the base model).
        rank, alpha, dropout: LoRA rank, scaling numerator and dropout.
        target_modules: Projections that get an adapter.
        top_layers: How many of the last decoder layers get adapters (``None``: all).
        epochs: Passes over the distinct prompts.
        batch_size: Prompts per optimizer step.
        learning_rate: AdamW step size (constant).
        max_prompts: Train on the most frequent distinct prompts only (``None``: all).
        seed: Shuffling and adapter initialisation.
        torch_threads: Intra-op threads while training (nothing else runs then).
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
    """

    enabled: bool = True
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    top_layers: int | None = 4
    epochs: int = 6
    batch_size: int = 16
    learning_rate: float = 2e-3
    max_prompts: int | None = None
    seed: int = 0
    torch_threads: int | None = 2
    device: str = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "target_modules", tuple(self.target_modules))
        if self.rank < 1 or self.epochs < 1 or self.batch_size < 1:
            raise ValueError("advisor.finetune: rank, epochs and batch_size must be >= 1")
        if self.top_layers is not None and self.top_layers < 1:
            raise ValueError("advisor.finetune.top_layers must be >= 1 or null (all layers)")
        if not self.learning_rate > 0:
            raise ValueError("advisor.finetune.learning_rate must be > 0")


def finetune_key(base_identity: str, prefix: str, targets: pd.DataFrame, config: FinetuneConfig) -> str:
    """A hash of everything the adapter depends on: the base model, the prompt prefix, the
    training examples (prompts, targets, counts) and the configuration."""
    digest = hashlib.sha256()
    digest.update(_OBJECTIVE.encode())
    digest.update(base_identity.encode())
    digest.update(prefix.encode())
    digest.update(pd.util.hash_pandas_object(targets[["prompt", "p_hold", "p_buy", "p_sell", "count"]],
                                             index=False).to_numpy().tobytes())
    digest.update(json.dumps(asdict(config), sort_keys=True, default=str).encode())
    return digest.hexdigest()


@contextlib.contextmanager
def _only_layers(model: Any, layers: list[Any]) -> Iterator[None]:
    """Run the decoder with ``layers`` only, numbered from 0 for the key/value cache."""
    inner = model.get_decoder()
    original, indices = inner.layers, [layer.self_attn.layer_idx for layer in layers]
    inner.layers = torch.nn.ModuleList(layers)
    for i, layer in enumerate(layers):
        layer.self_attn.layer_idx = i
    try:
        yield
    finally:
        inner.layers = original
        for layer, index in zip(layers, indices):
            layer.self_attn.layer_idx = index


def _suffix_mask(prefix_len: int, lengths: torch.Tensor) -> torch.Tensor:
    """Attention mask of right-padded suffixes after a prefix: the prefix and each row's own tokens."""
    width = int(lengths.max())
    mask = torch.zeros((len(lengths), prefix_len + width), dtype=torch.long)
    mask[:, :prefix_len] = 1
    mask[:, prefix_len:] = (torch.arange(width)[None, :] < lengths[:, None]).long()
    return mask


def _padded(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.as_tensor([len(r) for r in rows])
    ids = torch.full((len(rows), int(lengths.max())), pad, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
    return ids, lengths


def _decode(model: Any, inputs: torch.Tensor, cache: Any, mask: torch.Tensor, positions: torch.Tensor,
            *, embeds: bool) -> torch.Tensor:
    """Run ``inputs`` (token ids, or hidden states entering the running layers) on ``cache``;
    ``mask`` covers the cache and the inputs, ``positions`` are the inputs' own positions."""
    device = inputs.device
    start, width = mask.shape[1] - inputs.shape[1], inputs.shape[1]
    out = model.get_decoder()(**({"inputs_embeds": inputs} if embeds else {"input_ids": inputs}),
                              attention_mask=mask.to(device), position_ids=positions.to(device),
                              cache_position=torch.arange(start, start + width, device=device),
                              past_key_values=cache, use_cache=True)
    return out.last_hidden_state


def _word_passes(model: Any, suffix: torch.Tensor, continuation: torch.Tensor | None, cache: Any, prefix_len: int,
                 lengths: torch.Tensor, k: int, *, embeds: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The two passes of whole-word scoring (as :meth:`TransformersBackend.option_logprobs`):
    the suffixes after the prefix, then every answer's tokens but the last after each suffix
    (rows ``i * k + j``: suffix ``i``, answer ``j``). Returns both passes' hidden states."""
    b, width = suffix.shape[:2]
    mask = _suffix_mask(prefix_len, lengths)
    positions = torch.arange(prefix_len, prefix_len + width).expand(b, width)
    first = _decode(model, suffix, cache, mask, positions, embeds=embeds)
    if continuation is None:
        return first, None
    tail = continuation.shape[1]
    cache.batch_repeat_interleave(k)
    mask2 = torch.cat([mask.repeat_interleave(k, dim=0), torch.ones((b * k, tail), dtype=torch.long)], dim=1)
    positions2 = (prefix_len + lengths).repeat_interleave(k)[:, None] + torch.arange(tail)[None, :]
    return first, _decode(model, continuation, cache, mask2, positions2, embeds=embeds)


def with_adapter(advisor_params: dict[str, Any], adapter: dict[str, Any] | None) -> dict[str, Any]:
    """The ``advisor`` parameters with ``model.adapter_path`` set to a fitted adapter (unchanged
    when fine-tuning is off). Contextual calibration is skipped for the answers it was trained on
    (a flat account's HOLD, BUY, SELL: dividing by its answer to a blank prompt would undo the
    prior it learned) and kept for the others (in a position), which it was not trained on."""
    if not adapter or not adapter.get("adapter_path"):
        return advisor_params
    return {**advisor_params, "uncalibrated_options": [list(FLAT_OPTIONS)],
            "model": {**advisor_params["model"], "adapter_path": adapter["adapter_path"]}}


def fit_advisor_adapter(train_targets: pd.DataFrame, advisor_params: dict[str, Any], output_root: str | Path,
                        answer_words: list[str]) -> dict[str, Any]:
    """Fine-tune the configured base model on ``train_targets`` (:func:`~hybrid_trader.advisor.labels.soft_targets`
    of train rows), or reuse the adapter already fitted with the same key in ``output_root``.

    Returns the training report with ``enabled``, ``adapter_path``, ``key``, ``base_model`` and
    ``reused`` (``True`` when an unchanged rerun skipped training).
    """
    settings = dict(advisor_params.get("finetune") or {})
    settings.pop("work_dir", None)
    config = FinetuneConfig(**settings)
    if not config.enabled:
        return {"enabled": False, "adapter_path": None}
    if advisor_params["model"].get("adapter_path"):
        raise ValueError("advisor.model.adapter_path is set and advisor.finetune.enabled is true: fine-tuning "
                         "starts from the base model; set one of them off")
    backend = TransformersBackend.load(BackendConfig(**advisor_params["model"]))
    prefix = advisor_params["prompt"]["prefix"]
    key = finetune_key(backend.identity, prefix, train_targets, config)
    folder = Path(output_root) / key[:16]
    report_file = folder / "finetune.json"
    if report_file.exists() and any(folder.glob("adapter_model.*")):
        report = json.loads(report_file.read_text())
        logger.info("Advisor adapter %s is up to date (same base model, prompts, labels and settings)", folder)
        return {**report, "reused": True}
    report = train_lora_adapter(backend.model, backend.tokenizer, prefix, train_targets, answer_words, config, folder)
    report.update(enabled=True, adapter_path=str(folder), key=key, base_model=backend.identity,
                  config=asdict(config), reused=False)
    report_file.write_text(json.dumps(report, indent=2, default=str))
    logger.info("Advisor adapter fitted in %.0f s on %d prompts (%d bars): %s", report["seconds"],
                report["examples"], report["bars"], folder)
    return report


def train_lora_adapter(model: Any, tokenizer: Any, prefix: str, targets: pd.DataFrame, answer_words: list[str],
                       config: FinetuneConfig, output_dir: str | Path) -> dict[str, Any]:
    """Train a LoRA adapter on ``model`` (a causal LM, left unchanged) and save it in ``output_dir``.

    Args:
        targets: One row per distinct prompt: ``prompt`` (the text after ``prefix``), target
            shares ``p_hold``, ``p_buy``, ``p_sell`` (in ``answer_words`` order) and ``count``.
        answer_words: The answers scored, in the targets' order.

    Returns:
        A report: examples, steps, ``seconds`` (``trunk_seconds`` of it computing the frozen
        layers), the weighted loss per epoch and the trainable parameter count.
    """
    from peft import LoraConfig, get_peft_model

    started = time.perf_counter()
    if targets.empty:
        raise ValueError("no training prompts: the train split has no flat tradable bars with a label")
    threads = torch.get_num_threads()
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    torch.manual_seed(config.seed)
    device = resolve_device(config.device, "auto")[0]
    try:
        base = copy.deepcopy(model).to(device).float()
        base.eval()
        n_layers = len(base.get_decoder().layers)
        top = n_layers if config.top_layers is None else min(config.top_layers, n_layers)
        frozen = n_layers - top
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        words = [tokenizer(w, add_special_tokens=False).input_ids for w in answer_words]
        k, tail = len(words), max(len(w) for w in words) - 1
        # Every answer's tokens but the last, fed after each prompt (padding where an answer is shorter).
        feed = torch.full((k, max(tail, 1)), pad, dtype=torch.long)
        for j, w in enumerate(words):
            feed[j, : len(w) - 1] = torch.tensor(w[:-1], dtype=torch.long)
        if config.max_prompts is not None:
            targets = targets.head(config.max_prompts)
        prefix_ids = tokenizer(prefix, return_tensors="pt", add_special_tokens=False).input_ids.to(device)
        prefix_len = prefix_ids.shape[1]
        suffixes = [tokenizer(p, add_special_tokens=False).input_ids for p in targets["prompt"]]
        layers = list(base.get_decoder().layers)
        embed = base.get_input_embeddings()

        # The trunk: hidden states entering the first adapted layer, once, without gradients.
        trunk_start = time.perf_counter()
        suffix_hidden: list[torch.Tensor] = []
        continuation_hidden: list[torch.Tensor] = []
        with torch.inference_mode():
            if frozen:
                with _only_layers(base, layers[:frozen]), _last_output(layers[frozen - 1]) as seen:
                    prefix_cache = base.get_decoder()(input_ids=prefix_ids, use_cache=True).past_key_values
                    prefix_hidden = seen[-1]
                    for i in range(0, len(suffixes), 32):
                        ids, lengths = _padded(suffixes[i: i + 32], pad)
                        cache = copy.deepcopy(prefix_cache)
                        cache.batch_repeat_interleave(len(lengths))
                        seen.clear()
                        _word_passes(base, ids.to(device), feed[:, :tail].repeat(len(lengths), 1).to(device)
                                     if tail else None, cache, prefix_len, lengths, k, embeds=False)
                        suffix_hidden.extend(seen[0][r, : lengths[r]].clone() for r in range(len(lengths)))
                        if tail:
                            continuation_hidden.extend(seen[1].reshape(len(lengths), k, tail, -1).clone())
            else:  # every layer adapted: the trunk is the embedding
                prefix_hidden = embed(prefix_ids)
                for s_ids in suffixes:
                    suffix_hidden.append(embed(torch.tensor(s_ids, device=device)))
                    if tail:
                        continuation_hidden.append(embed(feed[:, :tail].to(device)))
        trunk_seconds = time.perf_counter() - trunk_start
        prefix_hidden = prefix_hidden.detach().clone()

        lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                          target_modules=list(config.target_modules),
                          layers_to_transform=list(range(frozen, n_layers)), task_type="CAUSAL_LM")
        peft_model = get_peft_model(base, lora)
        trainable = [p for p in peft_model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate)
        target = torch.tensor(targets[["p_hold", "p_buy", "p_sell"]].to_numpy(float), dtype=torch.float32)
        weight = torch.tensor(targets["count"].to_numpy(float), dtype=torch.float32)
        weight = weight / weight.mean()
        head = peft_model.get_output_embeddings()
        first_tokens = torch.tensor([w[0] for w in words], device=device)
        later = [(j, step, token) for j, w in enumerate(words) for step, token in enumerate(w[1:])]
        generator = np.random.default_rng(config.seed)
        losses: list[float] = []
        steps = 0
        peft_model.train()
        with _only_layers(peft_model, layers[frozen:]):
            for _ in range(config.epochs):
                order = generator.permutation(len(suffixes))
                total, seen_weight = 0.0, 0.0
                for i in range(0, len(order), config.batch_size):
                    batch = order[i: i + config.batch_size]
                    lengths = torch.as_tensor([len(suffix_hidden[r]) for r in batch])
                    hidden = torch.zeros((len(batch), int(lengths.max()), prefix_hidden.shape[-1]), device=device)
                    for row, r in enumerate(batch):
                        hidden[row, : lengths[row]] = suffix_hidden[r]
                    continuation = torch.cat([continuation_hidden[r] for r in batch]) if tail else None
                    # The prefix through the adapted layers, with gradients, once for the batch.
                    cache = DynamicCache()
                    peft_model.get_decoder()(inputs_embeds=prefix_hidden, past_key_values=cache, use_cache=True)
                    cache.batch_repeat_interleave(len(batch))
                    first, second = _word_passes(peft_model, hidden, continuation, cache, prefix_len, lengths, k,
                                                 embeds=True)
                    last = first[torch.arange(len(batch)), lengths - 1]
                    scores = torch.log_softmax(head(last).float(), dim=-1)[:, first_tokens]
                    if later:
                        logprobs = torch.log_softmax(head(second).float(), dim=-1)
                        extra = torch.zeros_like(scores)
                        for j, step, token in later:
                            extra[:, j] = extra[:, j] + logprobs[j::k, step, token]
                        scores = scores + extra
                    row_loss = -(target[batch].to(device) * torch.log_softmax(scores, dim=-1)).sum(dim=1)
                    loss = (weight[batch].to(device) * row_loss).mean()
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    total += float((weight[batch] * row_loss.detach().cpu()).sum())
                    seen_weight += float(weight[batch].sum())
                    steps += 1
                losses.append(total / seen_weight)
                logger.info("Advisor fine-tuning epoch %d: weighted loss %.4f", len(losses), losses[-1])
        peft_model.eval()
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        peft_model.save_pretrained(output_dir)
    finally:
        torch.set_num_threads(threads)
    return {
        "examples": int(len(targets)),
        "bars": int(targets["count"].sum()),
        "steps": steps,
        "epoch_losses": losses,
        "trainable_parameters": int(sum(p.numel() for p in trainable)),
        "adapted_layers": [frozen, n_layers - 1],
        "prefix_tokens": int(prefix_len),
        "mean_prompt_tokens": float(np.mean([len(t) for t in suffixes])),
        "trunk_seconds": trunk_seconds,
        "seconds": time.perf_counter() - started,
        "device": device,
    }


@contextlib.contextmanager
def _last_output(layer: Any) -> Iterator[list[torch.Tensor]]:
    """The raw outputs of ``layer`` while inside (the decoder's own last hidden state is normalised)."""
    seen: list[torch.Tensor] = []

    def keep(_module: Any, _inputs: Any, output: Any) -> None:
        seen.append(output[0] if isinstance(output, tuple) else output)

    handle = layer.register_forward_hook(keep)
    try:
        yield seen
    finally:
        handle.remove()
