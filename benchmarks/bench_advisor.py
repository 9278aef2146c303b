"""Advisor cost: cache misses at batch 1 and 16, cache hits, prompt tokens, pre-scoring.

Uses the configured model (default SmolLM2-135M-Instruct, offline) and prompt.
Prints, in one run: ms per query for a cache miss at batch 1 and at batch 16
(amortized), ms per cache hit, the prompt's tokens (static prefix, whose
key/value cache is reused, and the per-query state part), the number of
distinct flat-account prompts in the stored data and the time to pre-score
``--prescore`` of them (extrapolated to all), and how often the calibrated
advice leans to BUY more on uptrend states than on their mirror images.

    .venv/bin/python -m benchmarks.bench_advisor [--device auto] [--threads 1]   (after `kedro run`)

``--random-weights FOLDER`` builds a model of the same architecture as the
one whose ``config.json`` and tokenizer are in FOLDER, with random weights:
the same cost per query, meaningless answers (for timing a GPU machine that
cannot hold the real weights).
"""

from __future__ import annotations

import argparse
import tempfile
import time

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from hybrid_trader.advisor.advisor import Advisor, AdvisorConfig
from hybrid_trader.advisor.backend import BackendConfig, TransformersBackend
from hybrid_trader.advisor.cache import AdviceCache
from hybrid_trader.advisor.prescore import flat_states, prescore
from hybrid_trader.advisor.prompts import Buckets, PromptBuilder, PromptTemplate
from hybrid_trader.env.actions import N_ACTIONS, Action

FLAT = np.isin(np.arange(N_ACTIONS), [Action.HOLD, Action.BUY, Action.SELL])  # a flat account's allowed actions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--prescore", type=int, default=64, help="prompts to pre-score and time")
    parser.add_argument("--random-weights", default=None, help="folder with config.json and tokenizer files")
    args = parser.parse_args()
    params = yaml.safe_load(Path("conf/base/parameters_advisor.yml").read_text())["advisor"]
    prompt = params["prompt"]
    builder = PromptBuilder(PromptTemplate(prompt["version"], prompt["prefix"], prompt["state"]),
                            Buckets(**prompt["buckets"]))
    start = time.perf_counter()
    config = BackendConfig(**{**params["model"], "device": args.device, "torch_threads": args.threads})
    backend = random_backend(args.random_weights, config) if args.random_weights else TransformersBackend.load(config)
    print(f"model {backend.identity} on {backend.device}, loaded in {time.perf_counter() - start:.1f} s")

    features = pd.read_parquet("data/05_model_input/advisor_bar_features.parquet")
    states = flat_states(features, 2_500.0)
    rng = np.random.default_rng(0)
    sample = [states[i] for i in rng.choice(len(states), 400, replace=False)]
    prefix_tokens = backend.count_tokens(builder.template.prefix)
    state_tokens = [backend.count_tokens(builder.state_text(s, (0, 1, 2))) for s in sample[:50]]
    print(f"prompt tokens: static prefix {prefix_tokens} (cached once), state part {np.mean(state_tokens):.0f} "
          f"on average (max {max(state_tokens)})")

    advisor = Advisor(backend, builder, AdvisorConfig(calibrate=params["calibrate"]), AdviceCache())
    advisor.advise(sample[:1], FLAT[None])  # warm-up: prefix cache, content-free calibration
    for batch in (1, 16):
        chunk = []
        for state in sample[1:]:
            if not advisor.is_cached(advisor.builder.state_text(state, (0, 1, 2)), (0, 1, 2)):
                chunk.append(state)
            if len(chunk) == batch * 4:
                break
        t0 = time.perf_counter()
        for i in range(0, len(chunk), batch):
            advisor.advise(chunk[i:i + batch], np.repeat(FLAT[None], len(chunk[i:i + batch]), axis=0))
        miss_ms = (time.perf_counter() - t0) * 1e3 / len(chunk)
        print(f"cache miss, batch {batch:2d}: {miss_ms:8.1f} ms per query")
    cached = [s for s in sample if advisor.is_cached(advisor.builder.state_text(s, (0, 1, 2)), (0, 1, 2))][:16]
    t0 = time.perf_counter()
    for _ in range(50):
        advice = advisor.advise(cached, np.repeat(FLAT[None], len(cached), axis=0))
    assert advice.cache_hit.all()
    print(f"cache hit:            {(time.perf_counter() - t0) * 1e3 / (50 * len(cached)):8.3f} ms per query")

    with tempfile.TemporaryDirectory() as tmp:
        fresh = Advisor(backend, builder, AdvisorConfig(calibrate=params["calibrate"]), AdviceCache(f"{tmp}/c.parquet"))
        report = prescore(fresh, states, batch_size=16, max_prompts=args.prescore)
    per_prompt = report["seconds"] / max(report["scored"], 1)
    print(f"pre-scoring: {report['distinct_prompts']} distinct flat-account prompts in {report['states']} bars; "
          f"{report['scored']} scored in {report['seconds']:.1f} s ({per_prompt * 1e3:.0f} ms each); "
          f"all would take ~{per_prompt * report['distinct_prompts'] / 60:.1f} min")

    ups, downs = [], []
    for state in sample:
        if state["sma50_slope"] > 0.3:
            ups.append(state)
            downs.append(dict(state, sma50_slope=-state["sma50_slope"], rsi14=100 - state["rsi14"],
                              momentum30=-state["momentum30"], vwap_distance=-state["vwap_distance"]))
        if len(ups) == 16:
            break
    up = advisor.advise(ups, np.repeat(FLAT[None], len(ups), axis=0)).probabilities
    down = advisor.advise(downs, np.repeat(FLAT[None], len(downs), axis=0)).probabilities
    agree = np.mean((up[:, 1] - up[:, 2]) > (down[:, 1] - down[:, 2]))
    print(f"direction: BUY-minus-SELL is higher on the uptrend than on its mirror in {agree:.0%} of "
          f"{len(ups)} pairs; mean confidence {np.nanmean(np.r_[up.max(1), down.max(1)]):.3f}")


def random_backend(folder: str, config: BackendConfig) -> TransformersBackend:
    """Same architecture as ``folder``'s model, random weights (timing only)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from hybrid_trader.advisor.backend import resolve_device

    device, dtype = resolve_device(config.device, config.dtype)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder)).to(device=device, dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    return TransformersBackend(model, tokenizer, f"random-weights:{Path(folder).name}", device)


if __name__ == "__main__":
    main()
