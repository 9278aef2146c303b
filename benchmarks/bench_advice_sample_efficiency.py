"""Does the advisor's advice speed learning? Phase 3 hybrids against RL only, planted or default market.

Variants of the same Phase 3 policy start from the same fresh network and are compared at equal
environment steps on held-out sessions.

Input: a Kedro project folder, loaded with Kedro's own API in the environment ``--env``
(``planted``, the default: ``kedro run --env planted --to-nodes=evaluate_advisor_skill`` has run;
``base``, the default market: ``kedro run`` has run), with ``clean_bars``,
``advisor_bar_features``, ``market_spec``, ``advice_cache``, ``advisor_adapter`` and
``model_input_features`` (or the ``bar_features``, ``day_splits`` and ``feature_scaler`` it is
computed from).

1. The fine-tuned advisor's answers to every flat-account prompt of the train and test days are
   put in the project's advice cache (:func:`~hybrid_trader.advisor.prescore.prescore`); after
   that, training and backtests read advice from the cache only (``cached`` mode: no model call
   while training, so runs are fast and repeat exactly). A state whose prompt is not cached (an
   open position, or a flat account whose drawdown buffer is no longer full) gets no advice.
2. On a market planted with an edge (``evaluation.planted_edge`` set and not ``none``), the
   oracle of the edge is backtested once on the test sessions. Without one (``--env base``)
   there is no oracle: no oracle backtest, and no oracle figures.
3. For each seed and each variant of ``--variants`` (``hybrid:<mode>``: the advisor on, fused
   by that fusion mode; ``rl_only``: ``use_advisor`` off, so the observation never carries
   advice, built with the fusion mode ``--fusion`` or ``phase3.fusion``; default
   ``hybrid:<that mode>,rl_only``), a fresh Phase 2 MaskablePPO (random initialisation from the
   seed, Phase 2's ``net_arch``) becomes a Phase 3 model
   (:func:`~hybrid_trader.agents.adapter.phase3_from_phase2`) that trains on train days in
   chunks up to each checkpoint of ``--steps``. All variants of a seed start from the same
   weights, environment seeds and PPO settings: 32 environments x 64 steps (2,048 steps per
   update), 5 epochs, batch 256, constant learning rate 3e-4 (constant, so that a checkpoint's
   model does not depend on the later ones), no adapter-only warm-up; every other PPO value from
   ``phase3.ppo``. An update is a whole rollout, so a checkpoint is reached at the first
   multiple of 2,048 at or past it (``env_steps``: equal for all variants).
4. At each checkpoint, the deterministic masked policy is backtested on the test sessions (one
   full-session episode each) and scored (:func:`score_backtest`).

Figures (per seed, variant and checkpoint, on the test sessions; :func:`score_backtest`):

* ``oracle_capture`` (planted market only): the agent's total net P&L / the oracle's total net
  P&L (:func:`~hybrid_trader.evaluation.learning.learning_figures`);
* ``direction_agreement`` (planted market only): share of the agent's entries on the oracle's
  side, among entries where the oracle has a side;
* ``mean_daily_pnl``: mean net P&L per session ($); ``mean_daily_pnl_se``: its standard error
  over sessions (sample standard deviation / sqrt(sessions));
* ``flat_share``: the share of the agent's decision bars (backtest steps, pooled over the
  sessions) at which it held no position. The step trace has no position column, so the
  position is rebuilt from it (:func:`flat_decisions`): a session starts flat, a step whose
  action is BUY or SELL opens a position (filled at the next bar's open), and a step with a
  closed trade (``trade_pnl`` not NaN: stop, target, EXIT, flat deadline or breach, possibly
  in the same bar as the entry) leaves it flat; the decision at a step sees the position left
  by the steps before it;
* ``trades_per_session``: mean positions opened per session
  (:func:`~hybrid_trader.agents.backtest.summarize`);
* ``breach_share``: the share of sessions ended by a drawdown breach (``end_reason``
  ``drawdown_breach``).

Statistics (:func:`paired_statistics`), per checkpoint: each variant's mean of each figure over
seeds, and, when ``rl_only`` is among the variants, for each other variant the paired difference
variant - rl_only per seed: its mean, standard error (sample standard deviation over seeds /
sqrt(n)) and 95% t-interval (mean +- t(0.975, n - 1) x standard error).

Output: the per-variant table (:func:`variants_table`: one row per checkpoint and variant), and,
for one hybrid against rl_only on a planted market, the paired table (:func:`markdown_table`).

    .venv/bin/python benchmarks/bench_advice_sample_efficiency.py [--project-dir .] [--env planted]
        [--seeds 1 2 3 4 5] [--steps 10000,20000,40000,80000] [--fusion fixed]
        [--variants hybrid:fixed,rl_only] [--out data/08_reporting/advice_sample_efficiency]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from hybrid_trader.env.actions import Action

ORACLE_METRICS = ("oracle_capture", "direction_agreement")
PNL_METRICS = ("mean_daily_pnl", "flat_share", "trades_per_session", "breach_share")
METRICS = ORACLE_METRICS + PNL_METRICS
BASELINE = "rl_only"
HYBRID = "hybrid"
# The rollout shape for checkpoints 10k steps apart: 2,048 steps an update, five updates by the first.
ROLLOUT = {"n_envs": 32, "n_steps": 64, "n_epochs": 5, "batch_size": 256, "learning_rate": 3e-4,
           "lr_schedule": "constant"}
REPO_ROOT = Path(__file__).resolve().parents[1]
_ENTRIES = (int(Action.BUY), int(Action.SELL))


def parse_variants(text: str | None, fusion: str) -> list[str]:
    """The variants to train from ``--variants``: a comma-separated list of ``hybrid:<fusion
    mode>`` and ``rl_only``; a bare ``hybrid`` is ``hybrid:<fusion>``. ``None`` gives the default
    ``hybrid:<fusion>,rl_only``.

    Raises:
        ValueError: an empty list, an unknown variant or fusion mode, or a variant given twice.
    """
    from hybrid_trader.agents.fusion import FUSION_MODES

    if fusion not in FUSION_MODES:
        raise ValueError(f"unknown fusion mode {fusion!r} (one of {', '.join(FUSION_MODES)})")
    if text is None:
        return [f"{HYBRID}:{fusion}", BASELINE]
    variants = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        if item == HYBRID:
            item = f"{HYBRID}:{fusion}"
        kind, _, mode = item.partition(":")
        if not (item == BASELINE or (kind == HYBRID and mode in FUSION_MODES)):
            raise ValueError(f"unknown variant {item!r}: use rl_only or hybrid:<mode>, mode one of "
                             f"{', '.join(FUSION_MODES)}")
        if item in variants:
            raise ValueError(f"variant {item!r} given twice")
        variants.append(item)
    if not variants:
        raise ValueError("--variants lists no variant")
    return variants


def variant_settings(variant: str, fusion: str) -> dict[str, Any]:
    """The Phase 3 settings of a variant: ``hybrid:<mode>`` asks the advisor and fuses by that
    mode; ``rl_only`` never asks (its advice columns are all zero) and is built with ``fusion``."""
    if variant == BASELINE:
        return {"fusion": fusion, "use_advisor": False}
    kind, _, mode = variant.partition(":")
    if kind != HYBRID or not mode:
        raise ValueError(f"unknown variant {variant!r}")
    return {"fusion": mode, "use_advisor": True}


def flat_decisions(trace: pd.DataFrame) -> np.ndarray:
    """Per step of a backtest trace (in step order within each session, as
    :func:`~hybrid_trader.agents.backtest.run_backtest` returns it): whether the agent held no
    position at the decision. Rebuilt from ``action`` and ``trade_pnl`` (module docstring).

    Raises:
        ValueError: the trace opens a position while one is open, or closes one while flat.
    """
    change = (trace["action"].isin(_ENTRIES).astype(np.int64)
              - trace["trade_pnl"].notna().astype(np.int64))
    held_after = change.groupby(trace["session_date"].to_numpy(), sort=False).cumsum()
    held_before = (held_after - change).to_numpy()
    if ((held_before < 0) | (held_before > 1)).any() or ((held_after < 0) | (held_after > 1)).any():
        raise ValueError("the trace's entries and closed trades do not alternate within a session")
    return held_before == 0


def score_backtest(episodes: pd.DataFrame, trace: pd.DataFrame, directions: np.ndarray | None = None,
                   oracle: pd.DataFrame | None = None) -> dict[str, Any]:
    """One backtest's figures (module docstring): the P&L figures always; ``oracle_capture``,
    ``direction_agreement`` (and their ``_se``) only with the oracle's ``directions`` and
    ``oracle`` backtest of the same sessions.

    Args:
        episodes: One row per session (``net_pnl``, ``trades``, ``end_reason``, ``steps``).
        trace: Its step trace (``session_date``, ``row``, ``action``, ``trade_pnl``).
    """
    from hybrid_trader.agents.backtest import summarize

    pnl = episodes["net_pnl"].to_numpy(dtype=float)
    n = len(pnl)
    summary = summarize(episodes)
    flat = flat_decisions(trace)
    figures: dict[str, Any] = {
        "sessions": int(n),
        "entries": int(trace["action"].isin(_ENTRIES).sum()),
        "mean_daily_pnl": float(pnl.mean()) if n else float("nan"),
        "mean_daily_pnl_se": float(pnl.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan"),
        "flat_share": float(flat.mean()) if len(flat) else float("nan"),
        "trades_per_session": summary["trades_per_session"],
        "breach_share": summary["end_reasons"].get("drawdown_breach", 0) / n if n else float("nan"),
    }
    if oracle is not None:
        from hybrid_trader.evaluation.learning import learning_figures

        learned = learning_figures(episodes, trace, directions, oracle)
        for metric in ORACLE_METRICS:
            figures[metric] = float(learned[metric])
            figures[f"{metric}_se"] = float(learned[f"{metric}_se"])
    return figures


def _paired(hybrid: pd.DataFrame, baseline: pd.DataFrame, seeds: list[int], metric: str,
            confidence: float) -> dict[str, Any]:
    diffs = {}
    for seed in seeds:
        a = float(hybrid.loc[seed, metric])
        b = float(baseline.loc[seed, metric])
        if math.isfinite(a) and math.isfinite(b):
            diffs[seed] = a - b
    values = np.array(list(diffs.values()), dtype=float)
    n = len(values)
    mean = float(values.mean()) if n else float("nan")
    se = float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    half = float(stats.t.ppf(1 - (1 - confidence) / 2, n - 1) * se) if n > 1 else float("nan")
    return {"mean": mean, "se": se, "lower": mean - half, "upper": mean + half, "n": n, "per_seed": diffs}


def paired_statistics(runs: Iterable[Mapping[str, Any]], metrics: Iterable[str] = METRICS,
                      confidence: float = 0.95, variants: Sequence[str] | None = None,
                      baseline: str = BASELINE) -> list[dict[str, Any]]:
    """Per checkpoint (``steps``), each variant's mean of each metric over seeds, and the paired
    difference ``variant - baseline`` of every other variant over the seeds that have both (and
    a finite value of both). Metrics absent from the runs (the oracle's, without an oracle) are
    left out.

    Args:
        runs: One row per seed, variant and checkpoint: ``seed``, ``variant``, ``steps``,
            ``env_steps`` and each metric.
        variants: The variants in order (default: in order of first appearance in ``runs``).

    Returns:
        One dict per checkpoint in step order: ``steps``, ``env_steps`` (the largest recorded),
        ``variants`` (the order), for each variant its name -> (metric -> mean over that
        variant's seeds), ``n_seeds`` (variant -> seeds run), and, when ``baseline`` is among the
        variants, ``paired_seeds`` (variant -> paired seeds) and ``differences`` (variant ->
        metric -> ``mean``, ``se`` = sample standard deviation / sqrt(n), ``lower``/``upper`` =
        mean -+ t(1 - (1 - confidence) / 2, n - 1) x se, ``n``, ``per_seed`` {seed:
        difference}) for every other variant. With one pair, ``se`` and the interval are NaN.
        When exactly one variant is compared, also ``seeds`` and ``difference``: its paired
        seeds and differences.
    """
    frame = pd.DataFrame(list(runs))
    metrics = [m for m in metrics if m in frame.columns]
    order = list(variants) if variants is not None else list(pd.unique(frame["variant"]))
    compared = [v for v in order if v != baseline] if baseline in order else []
    out = []
    for steps, block in frame.groupby("steps", sort=True):
        by_variant = {v: block[block["variant"] == v].set_index("seed") for v in order}
        row: dict[str, Any] = {"steps": int(steps), "env_steps": int(block["env_steps"].max()), "variants": order,
                               "n_seeds": {v: int(len(by_variant[v])) for v in order}}
        for variant in order:
            row[variant] = {m: float(by_variant[variant][m].astype(float).mean()) if len(by_variant[variant])
                            else float("nan") for m in metrics}
        if baseline in order:
            row["paired_seeds"], row["differences"] = {}, {}
            for variant in compared:
                seeds = sorted(int(s) for s in set(by_variant[variant].index) & set(by_variant[baseline].index))
                row["paired_seeds"][variant] = seeds
                row["differences"][variant] = {m: _paired(by_variant[variant], by_variant[baseline], seeds, m,
                                                          confidence) for m in metrics}
            if len(compared) == 1:
                row["seeds"] = row["paired_seeds"][compared[0]]
                row["difference"] = row["differences"][compared[0]]
        out.append(row)
    return out


def _num(value: float, fmt: str = ".3f") -> str:
    return format(value, fmt) if isinstance(value, (int, float)) and math.isfinite(value) else "n/a"


def _diff(d: Mapping[str, Any] | None, fmt: str = "+.3f") -> str:
    if d is None:
        return "n/a"
    text = _num(d["mean"], fmt)
    if math.isfinite(d["lower"]):
        text += f" [{_num(d['lower'], fmt)}, {_num(d['upper'], fmt)}]"
    return text


def markdown_table(summary: list[dict[str, Any]], baseline: str = BASELINE) -> str:
    """One row per checkpoint, for one variant against ``baseline``: each one's mean capture,
    agreement and daily P&L over seeds, and the difference with its 95% t-interval."""
    lines = ["| steps | env steps | seeds | capture hybrid | capture RL-only | capture diff [95% CI] "
             "| agreement hybrid | agreement RL-only | agreement diff [95% CI] "
             "| P&L/day hybrid ($) | P&L/day RL-only ($) | P&L/day diff [95% CI] |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in summary:
        [variant] = [v for v in row["variants"] if v != baseline]
        h, r, d = row[variant], row[baseline], row["difference"]
        lines.append(
            f"| {row['steps']:,} | {row['env_steps']:,} | {len(row['seeds'])} "
            f"| {_num(h['oracle_capture'])} | {_num(r['oracle_capture'])} | {_diff(d['oracle_capture'])} "
            f"| {_num(h['direction_agreement'])} | {_num(r['direction_agreement'])} "
            f"| {_diff(d['direction_agreement'])} "
            f"| {_num(h['mean_daily_pnl'], ',.0f')} | {_num(r['mean_daily_pnl'], ',.0f')} "
            f"| {_diff(d['mean_daily_pnl'], '+,.0f')} |")
    return "\n".join(lines)


def variants_table(summary: list[dict[str, Any]], oracle: bool = True, baseline: str = BASELINE) -> str:
    """One row per checkpoint and variant: its means over seeds (capture and agreement only with
    an ``oracle``) and, for each variant but ``baseline``, its paired difference from
    ``baseline`` with the 95% t-interval, of P&L/day (and capture)."""
    head = ["steps", "env steps", "variant", "seeds"]
    head += ["capture", "agreement"] if oracle else []
    head += ["P&L/day ($)", "flat share", "trades/session", "breach share", f"P&L/day - {baseline} [95% CI]"]
    head += [f"capture - {baseline} [95% CI]"] if oracle else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in summary:
        for variant in row["variants"]:
            means = row[variant]
            cells = [f"{row['steps']:,}", f"{row['env_steps']:,}", variant, str(row["n_seeds"][variant])]
            if oracle:
                cells += [_num(means.get("oracle_capture", float("nan"))),
                          _num(means.get("direction_agreement", float("nan")))]
            cells += [_num(means.get("mean_daily_pnl", float("nan")), ",.0f"),
                      _num(means.get("flat_share", float("nan"))),
                      _num(means.get("trades_per_session", float("nan")), ".2f"),
                      _num(means.get("breach_share", float("nan")))]
            differences = row.get("differences", {}).get(variant)
            if differences is None:
                cells += ["—"] * (2 if oracle else 1)
            else:
                cells.append(_diff(differences.get("mean_daily_pnl"), "+,.0f"))
                if oracle:
                    cells.append(_diff(differences.get("oracle_capture")))
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --- the run (needs the Kedro project and its data; not imported by the tests) ------------------

def load_project(project_dir: Path, env: str = "planted") -> tuple[dict[str, Any], dict[str, Any]]:
    """The catalog entries this benchmark reads and the parameters, in Kedro environment ``env``.

    ``model_input_features`` is not among the outputs of ``--to-nodes=evaluate_advisor_skill``:
    when it was never saved, it is computed as the pipeline's ``scale_features`` node does
    (from ``bar_features``, ``day_splits`` and the train-fitted ``feature_scaler``).
    """
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    from hybrid_trader.pipelines.data_split.nodes import scale_features

    bootstrap_project(project_dir)
    names = ("clean_bars", "advisor_bar_features", "market_spec", "advice_cache", "advisor_adapter")
    with KedroSession.create(project_path=project_dir, env=env) as session:
        context = session.load_context()
        catalog = context.catalog
        data = {name: catalog.load(name) for name in names}
        if catalog.exists("model_input_features"):
            data["model_input_features"] = catalog.load("model_input_features")
        else:
            data["model_input_features"] = scale_features(catalog.load("bar_features"), catalog.load("day_splits"),
                                                          catalog.load("feature_scaler"))
        params = context.params
    return data, params


def fill_advice_cache(data: Mapping[str, Any], params: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The fine-tuned advisor, with every flat-account prompt of train and test days in its cache."""
    from hybrid_trader.advisor.advisor import Advisor
    from hybrid_trader.advisor.finetune import with_adapter
    from hybrid_trader.advisor.prescore import flat_states_at_buffers, prescore
    from hybrid_trader.env.factory import split_days

    # Answers are not kept in memory: training asks hundreds of thousands of times.
    advisor_params = {**with_adapter(params["advisor"], data["advisor_adapter"]), "save_llm_responses": False}
    advisor = Advisor.from_params(advisor_params, cache=data["advice_cache"])
    features = data["model_input_features"]
    days = pd.to_datetime(pd.Series(split_days(features, "train") + split_days(features, "test")))
    bars = data["advisor_bar_features"]
    # Flat accounts up to $1,500 below their peak too (the prompt shows the buffer), not only fresh ones.
    limit = float(params["environment"]["engine"]["drawdown_limit"])
    states = flat_states_at_buffers(bars.loc[bars["session_date"].isin(days)], limit,
                                    [limit - 500.0 * k for k in range(4) if limit - 500.0 * k > 0])
    settings = advisor_params["prescore"]
    counts = prescore(advisor, states, batch_size=settings["batch_size"], torch_threads=settings.get("torch_threads"))
    advisor.close()  # prescore flushes too; this keeps the cache written whatever prescore does later
    adapter = (data["advisor_adapter"] or {}).get("adapter_path")
    return advisor, {**counts, "cache_entries": len(advisor.cache), "fine_tuned": bool(adapter),
                     "adapter_path": adapter}


def planted_edge(params: Mapping[str, Any]) -> Any:
    """The market's planted edge (:class:`~hybrid_trader.market_data.synthetic.PlantedEdge`), or
    ``None`` when there is no oracle: no edge (``evaluation.planted_edge`` null, the default
    market) or the no-edge control (kind ``none``)."""
    from hybrid_trader.market_data.synthetic import PlantedEdge

    edge = PlantedEdge.from_params((params.get("evaluation") or {}).get("planted_edge"))
    return None if edge is None or edge.kind == "none" else edge


def oracle_reference(data: Mapping[str, Any], params: Mapping[str, Any], edge: Any) -> tuple[Any, Any]:
    """The oracle's sides at every test-market row and its backtest of the test sessions;
    ``(None, None)`` without an ``edge`` (nothing is loaded or played then)."""
    if edge is None:
        return None, None
    from hybrid_trader.agents.backtest import backtest_vec_env, run_backtest
    from hybrid_trader.env.factory import market_for_split
    from hybrid_trader.evaluation.learning import oracle_policy, split_directions
    from hybrid_trader.pipelines.phase2.nodes import contract_from_spec

    test = market_for_split(data["clean_bars"], data["model_input_features"], contract_from_spec(data["market_spec"]),
                            params["environment"], "test")
    directions = split_directions(data["clean_bars"], data["model_input_features"], "test", edge)
    oracle_env = backtest_vec_env(test, params["environment"])
    return directions, run_backtest(oracle_env, oracle_policy(oracle_env, directions))


def train_and_score(seed: int, variant: str, steps: list[int], fusion: str, data: Mapping[str, Any],
                    params: Mapping[str, Any], advisor: Any, directions: np.ndarray | None = None,
                    oracle: pd.DataFrame | None = None) -> list[dict[str, Any]]:
    """One seed and variant (:func:`variant_settings`; ``fusion``: the mode ``rl_only`` is built
    with): a fresh Phase 2 network made Phase 3, trained up to each checkpoint and backtested
    there on the test sessions (scored against the oracle only when ``oracle`` is given)."""
    import torch
    from sb3_contrib import MaskablePPO

    from hybrid_trader.agents.adapter import phase3_from_phase2
    from hybrid_trader.agents.backtest import backtest_env_count, run_backtest, sb3_policy
    from hybrid_trader.agents.phase2 import PPOConfig, ppo_kwargs
    from hybrid_trader.agents.phase3 import Phase3Config, make_advised_env
    from hybrid_trader.env.factory import make_vec_env, market_for_split, split_days
    from hybrid_trader.pipelines.phase2.nodes import contract_from_spec

    started = time.perf_counter()
    environment = params["environment"]
    contract = contract_from_spec(data["market_spec"])
    budget = max(steps)
    ppo = {**params["phase3"]["ppo"], **ROLLOUT, "seed": seed, "total_timesteps": budget,
           "eval_every_steps": budget, "checkpoint_every_steps": budget}
    config = Phase3Config.from_params({**params["phase3"], "ppo": ppo, "adapter_warmup_steps": 0,
                                       **variant_settings(variant, fusion)})
    metrics = METRICS if oracle is not None else PNL_METRICS
    frames = (data["clean_bars"], data["model_input_features"], data["advisor_bar_features"], contract, environment)
    torch.set_num_threads(1)
    # The fresh Phase 2 network: random initialisation from the seed, as train_phase2 builds it.
    phase2_config = PPOConfig(**{**ppo, "net_arch": list(params["phase2"]["ppo"]["net_arch"])})
    phase2_env = make_vec_env(market_for_split(data["clean_bars"], data["model_input_features"], contract, environment,
                                               "train"), environment, n_envs=1, phase=2, seed=seed)
    phase2 = MaskablePPO("MlpPolicy", phase2_env, policy_kwargs={"net_arch": list(phase2_config.net_arch)},
                         device="cpu", **ppo_kwargs(phase2_config))
    train_env = make_advised_env(*frames, "train", config, advisor=advisor, worker=None, n_envs=config.ppo.n_envs,
                                 episode_mode="random_start", seed=seed, mode="cached")
    n_test = len(split_days(data["model_input_features"], "test"))
    test_env = make_advised_env(*frames, "test", config, advisor=advisor, worker=None,
                                n_envs=backtest_env_count(n_test), episode_mode="full_session", mode="cached")
    model = phase3_from_phase2(phase2, train_env, llm_weight=config.llm_weight,
                               learn_llm_weight=config.learn_llm_weight, fusion=config.fusion,
                               critic_adapter=config.critic_adapter, **ppo_kwargs(config.ppo))
    train_env.attach_policy(model.policy)
    test_env.attach_policy(model.policy)
    setup_seconds = time.perf_counter() - started
    rows, train_seconds = [], 0.0
    try:
        for target in steps:
            began = time.perf_counter()
            if target > model.num_timesteps:
                model.learn(total_timesteps=target - model.num_timesteps, reset_num_timesteps=False)
            train_seconds += time.perf_counter() - began
            began = time.perf_counter()
            episodes, trace = run_backtest(test_env, sb3_policy(model), trace=True)
            figures = score_backtest(episodes, trace, directions, oracle)
            rates = train_env.telemetry.rates()
            rows.append({"seed": seed, "variant": variant, "steps": int(target), "env_steps": int(model.num_timesteps),
                         **{m: float(figures[m]) for m in metrics},
                         **{f"{m}_se": float(figures[f"{m}_se"]) for m in (*ORACLE_METRICS, "mean_daily_pnl")
                            if f"{m}_se" in figures},
                         "entries": int(figures["entries"]), "sessions": int(figures["sessions"]),
                         "train_advice_coverage": float(rates["advice_coverage"]),
                         "train_query_rate": float(rates["query_rate"]),
                         "train_override_rate": float(rates["override_rate"]),
                         "train_seconds": train_seconds, "backtest_seconds": time.perf_counter() - began})
            against_oracle = (f"capture {figures['oracle_capture']:7.3f}, agreement "
                              f"{figures['direction_agreement']:6.3f}, " if oracle is not None else "")
            print(f"  seed {seed} {variant:20s} {model.num_timesteps:7,d} steps: {against_oracle}"
                  f"P&L/day {figures['mean_daily_pnl']:8,.0f}, flat {figures['flat_share']:5.3f}, "
                  f"trades/session {figures['trades_per_session']:5.2f}, breaches {figures['breach_share']:5.3f}"
                  f", advice on {100 * np.nan_to_num(rates['advice_coverage']):4.1f}% of training steps"
                  f" ({train_seconds:,.0f} s training)", flush=True)
    finally:
        for env in (train_env, test_env, phase2_env):
            env.close()
    wall = time.perf_counter() - started
    for row in rows:
        row.update(setup_seconds=setup_seconds, run_wall_seconds=wall)
    return rows


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project-dir", type=Path, default=REPO_ROOT)
    parser.add_argument("--env", default="planted",
                        help="Kedro environment (default: planted; base: the default market, no oracle)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--steps", default="10000,20000,40000,80000", help="checkpoints, comma-separated")
    parser.add_argument("--fusion", default=None,
                        help="fusion mode of a bare 'hybrid' and of rl_only's network (default: phase3.fusion)")
    parser.add_argument("--variants", default=None,
                        help="comma-separated: hybrid:<fusion mode> (fixed, confidence, learned_gate, observation) "
                             "and rl_only (default: hybrid:<--fusion>,rl_only)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output stem (default: <project>/data/08_reporting/advice_sample_efficiency)")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    steps = sorted({int(s) for s in args.steps.split(",")})
    project = args.project_dir.resolve()
    out = (args.out.resolve() if args.out else project / "data/08_reporting/advice_sample_efficiency")
    if args.variants is not None:  # refuse a malformed list before loading anything
        try:
            parse_variants(args.variants, args.fusion or "fixed")
        except ValueError as error:
            parser.error(str(error))
    # Paths stored in the project (the adapter's folder, the model cache) are relative to it.
    os.chdir(project)
    started = time.perf_counter()

    from hybrid_trader.agents.fusion import validate_fusion
    from hybrid_trader.env.factory import split_days

    data, params = load_project(project, args.env)
    fusion = args.fusion or str(params["phase3"].get("fusion", "fixed"))
    try:
        variants = parse_variants(args.variants, fusion)
        # Refuse a mode the parameters cannot honour (e.g. learned_gate with llm_weight 0) before any training.
        for variant in variants:
            validate_fusion(variant_settings(variant, fusion)["fusion"], float(params["phase3"]["llm_weight"]),
                            bool(params["phase3"]["learn_llm_weight"]))
    except ValueError as error:
        parser.error(str(error))
    edge = planted_edge(params)
    advised = any(v != BASELINE for v in variants)
    advisor, prescored = fill_advice_cache(data, params) if advised else (None, None)
    if prescored is not None:
        print(f"Advice cache: {prescored['distinct_prompts']:,} distinct flat prompts on train and test days, "
              f"{prescored['scored']:,} newly scored in {prescored['seconds']:,.0f} s "
              f"({'fine-tuned' if prescored['fine_tuned'] else 'base'} advisor); {prescored['cache_entries']:,} answers")

    n_test = len(split_days(data["model_input_features"], "test"))
    directions, oracle = oracle_reference(data, params, edge)
    market = (f"planted {edge.kind} edge, {n_test} test sessions, oracle net P&L ${oracle['net_pnl'].sum():,.0f}"
              if edge is not None else f"env {args.env}: no planted edge (no oracle), {n_test} test sessions")
    print(f"{market[0].upper() + market[1:]}; variants {', '.join(variants)} (rl_only built with fusion {fusion}); "
          f"seeds {args.seeds}; checkpoints {steps}")

    runs: list[dict[str, Any]] = []
    for seed in args.seeds:
        for variant in variants:
            runs += train_and_score(seed, variant, steps, fusion, data, params, advisor, directions, oracle)
    metrics = METRICS if edge is not None else PNL_METRICS
    summary = paired_statistics(runs, metrics, variants=variants)
    paired = (markdown_table(summary) if edge is not None and len(variants) == 2 and BASELINE in variants
              else None)
    table = variants_table(summary, oracle=edge is not None)
    wall = time.perf_counter() - started
    if advisor is not None:
        advisor.close()
    run_walls = {f"{r['seed']}/{r['variant']}": r["run_wall_seconds"] for r in runs}
    compared = f"diff = variant - {BASELINE}, paired by seed, 95% t-interval" if BASELINE in variants else "no rl_only"
    tables = table if paired is None else f"{paired}\n\n{table}"
    print(f"\nTest sessions ({market}), mean over seeds; {compared}\n\n{tables}\n\n({wall:,.0f} s in all; per run: "
          + ", ".join(f"{k} {v:,.0f} s" for k, v in run_walls.items()) + ")")

    report = {
        "project_dir": str(project), "env": args.env,
        "planted_edge": None if edge is None else {"kind": edge.kind, "points_per_minute": edge.points_per_minute,
                                                   "turn": edge.turn},
        "variants": variants, "fusion": fusion, "seeds": args.seeds, "steps": steps, "metrics": list(metrics),
        "rollout": {**ROLLOUT, "adapter_warmup_steps": 0, "advice": "cached"},
        "test_sessions": n_test,
        "oracle": None if oracle is None else {"sessions": int(len(oracle)), "net_pnl": float(oracle["net_pnl"].sum())},
        "advice_cache": prescored, "summary": summary, "runs": runs, "run_wall_seconds": run_walls,
        "wall_seconds": wall,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2, default=str))
    out.with_suffix(".md").write_text(
        "# Does the advice speed learning?\n\n"
        f"{market[0].upper() + market[1:]}; variants {', '.join(variants)} (rl_only built with fusion {fusion}); "
        f"seeds {args.seeds}. Means over seeds; {compared}. Method and definitions: docs/phase3.md.\n\n{tables}\n")
    print(f"Wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
