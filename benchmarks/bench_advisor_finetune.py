"""What fine-tuning the advisor costs, and what the frozen trunk and shared prefix save.

Side by side in one run, on the project's train prompts
(``data/05_model_input/advisor_examples.parquet``, written by ``build_advisor_examples``)
and the configured base model and settings (``advisor.finetune``):

* **as built**: :func:`hybrid_trader.advisor.finetune.train_lora_adapter` with the
  configured settings (adapters on the top layers, the frozen trunk computed once,
  the static prefix once per step), timed in full;
* **plain LoRA**: the same adapters on every layer, each step a forward and backward
  pass of the whole model over full prompts (prefix and state) of a batch, as a
  textbook LoRA loop does; timed over ``--plain-steps`` steps and projected to the
  same epochs and prompts.

Prints seconds, seconds per prompt per epoch, and the ratio.

    .venv/bin/python -m benchmarks.bench_advisor_finetune [--project-dir .] [--plain-steps 3]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from omegaconf import OmegaConf

from hybrid_trader.advisor.backend import BackendConfig, TransformersBackend
from hybrid_trader.advisor.finetune import FinetuneConfig, train_lora_adapter
from hybrid_trader.advisor.labels import LABEL_WORDS, soft_targets


def plain_lora_seconds_per_prompt(backend: TransformersBackend, prefix: str, prompts: list[str],
                                  config: FinetuneConfig, steps: int) -> float:
    """Seconds per prompt of a plain LoRA step (every layer adapted, whole prompts, first answer token)."""
    from peft import LoraConfig, get_peft_model

    import copy

    model = get_peft_model(copy.deepcopy(backend.model), LoraConfig(
        r=config.rank, lora_alpha=config.alpha, target_modules=list(config.target_modules), task_type="CAUSAL_LM"))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate)
    tok = backend.tokenizer
    tok.padding_side = "left"  # the last position is every row's last token
    buy = tok("BUY", add_special_tokens=False).input_ids[0]
    model.train()
    elapsed = 0.0
    for step in range(steps + 1):
        batch = [prefix + p for p in prompts[step * config.batch_size:(step + 1) * config.batch_size]]
        encoded = tok(batch, return_tensors="pt", padding=True, add_special_tokens=False)
        began = time.perf_counter()
        logits = model(**encoded).logits[:, -1].float()
        loss = torch.nn.functional.cross_entropy(logits, torch.full((len(batch),), buy))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step:  # the first step warms up allocators and kernels
            elapsed += time.perf_counter() - began
    return elapsed / (steps * config.batch_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project-dir", default=".")
    parser.add_argument("--plain-steps", type=int, default=3)
    args = parser.parse_args()
    root = Path(args.project_dir)
    params = OmegaConf.to_container(OmegaConf.load(root / "conf/base/parameters_advisor.yml"))["advisor"]
    settings = {k: v for k, v in params["finetune"].items() if k != "work_dir"}
    config = FinetuneConfig(**settings)
    examples = pd.read_parquet(root / "data/05_model_input/advisor_examples.parquet")
    targets = soft_targets(examples.loc[examples["split"] == "train"])
    backend = TransformersBackend.load(BackendConfig(**{**params["model"], "torch_threads": config.torch_threads}))
    prefix = params["prompt"]["prefix"]
    print(f"{len(targets)} distinct train prompts ({int(targets['count'].sum()):,} bars), {config.epochs} epochs, "
          f"batch {config.batch_size}, {config.torch_threads} threads, {backend.identity}")
    with tempfile.TemporaryDirectory() as folder:
        report = train_lora_adapter(backend.model, backend.tokenizer, prefix, targets, list(LABEL_WORDS), config,
                                    folder)
    built = report["seconds"]
    per_epoch = (built - report["trunk_seconds"]) / config.epochs
    print(f"as built  (top {config.top_layers} layers, trunk once, prefix once per step): {built:.0f} s "
          f"(trunk {report['trunk_seconds']:.0f} s, {per_epoch:.0f} s per epoch, "
          f"{1e3 * built / (config.epochs * len(targets)):.0f} ms per prompt per epoch); losses "
          + ", ".join(f"{x:.3f}" for x in report["epoch_losses"]))
    torch.set_num_threads(config.torch_threads or torch.get_num_threads())
    plain = plain_lora_seconds_per_prompt(backend, prefix, list(targets["prompt"].sample(frac=1, random_state=0)),
                                          config, args.plain_steps)
    projected = plain * len(targets) * config.epochs
    print(f"plain LoRA (all {len(backend.model.get_decoder().layers)} layers, whole prompts): "
          f"{1e3 * plain:.0f} ms per prompt per step, projected {projected:.0f} s "
          f"({projected / 60:.1f} min) for the same epochs")
    print(f"ratio plain / as built: {projected / built:.1f}x" if math.isfinite(projected) else "")


if __name__ == "__main__":
    main()
