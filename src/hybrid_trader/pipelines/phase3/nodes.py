"""Nodes of ``phase3``: thin wrappers over :mod:`hybrid_trader.advisor` and :mod:`hybrid_trader.agents`."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import mlflow

from hybrid_trader.advisor.advisor import Advisor
from hybrid_trader.advisor.finetune import fit_advisor_adapter, with_adapter
from hybrid_trader.advisor.labels import (
    LABEL_ACTIONS, LABEL_WORDS, advisor_examples, describe_labels, round_trip_cost_points, soft_targets,
)
from hybrid_trader.advisor.prompts import PromptBuilder
from hybrid_trader.advisor.cache import AdviceCache
from hybrid_trader.advisor.prescore import FLAT_OPTIONS, prescore_days
from hybrid_trader.advisor.worker import AsyncAdvisor, ProcessAdvisor
from hybrid_trader.agents.backtest import backtest_env_count, summarize
from hybrid_trader.agents.health import HealthCheckFailed, health_notes, health_report, measure, render_markdown
from hybrid_trader.agents.phase3 import (
    Phase3Config, backtest_hybrid, make_advised_env, overfitting_gap, start_worker, train_phase3,
)
from hybrid_trader.agents.registry import load_registered_sb3, register_model
from hybrid_trader.agents.serving import TradingRules
from hybrid_trader.env.factory import split_days
from hybrid_trader.evaluation.advisor_skill import evaluate_advisors, render_skill_markdown, template_fields
from hybrid_trader.market_data.synthetic import PlantedEdge
from hybrid_trader.features.registry import HYBRID_DIM
from hybrid_trader.pipelines.phase2.nodes import contract_from_spec, stop_training_run

logger = logging.getLogger(__name__)


def build_advisor_examples(clean_bars: pd.DataFrame, advisor_bar_features: pd.DataFrame, day_splits: pd.DataFrame,
                           market_spec: dict[str, Any], advisor_params: dict[str, Any],
                           environment_params: dict[str, Any], evaluation_params: dict[str, Any]) -> pd.DataFrame:
    """Every flat tradable bar's prompt and the answer that paid off (the planted edge's oracle
    on a planted market), with its split."""
    edge = PlantedEdge.from_params(evaluation_params.get("planted_edge"))
    examples = advisor_examples(
        clean_bars, advisor_bar_features, day_splits, PromptBuilder.from_params(advisor_params["prompt"]),
        horizon_bars=int(advisor_params["labels"]["horizon_bars"]),
        cost_points=round_trip_cost_points(contract_from_spec(market_spec)),
        drawdown_limit=environment_params["engine"]["drawdown_limit"],
        entry_window=environment_params["entry_window"], edge=edge)
    logger.info("Advisor examples (%s labels): %s", "oracle" if edge else "outcome", describe_labels(examples))
    return examples


def finetune_advisor(advisor_examples: pd.DataFrame, advisor_params: dict[str, Any]) -> dict[str, Any]:
    """Fit (or reuse, when nothing changed) the advisor's LoRA adapter on the train rows; log it to MLflow."""
    train = advisor_examples.loc[advisor_examples["split"] == "train"]
    report = fit_advisor_adapter(soft_targets(train), advisor_params, advisor_params["finetune"]["work_dir"],
                                 list(LABEL_WORDS))
    if report.get("adapter_path") and mlflow.active_run() is not None:
        mlflow.log_artifacts(report["adapter_path"], artifact_path="advisor_adapter")
    return report


def evaluate_advisor_skill(advisor_examples: pd.DataFrame, advisor_adapter: dict[str, Any], advice_cache: AdviceCache,
                           market_spec: dict[str, Any], advisor_params: dict[str, Any],
                           evaluation_params: dict[str, Any]) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """The skill report on validation and test bars: always-BUY, the logistic baseline, the base
    model and (when fine-tuning is on) the fine-tuned model; JSON, Markdown and MLflow metrics."""
    contract = contract_from_spec(market_spec)
    edge = PlantedEdge.from_params(evaluation_params.get("planted_edge"))
    settings = advisor_params["skill"]
    variants = {"base_model": advisor_params}
    if advisor_adapter.get("adapter_path"):
        variants["fine_tuned"] = with_adapter(advisor_params, advisor_adapter)
    answers: dict[str, dict[str, np.ndarray]] = {}
    splits = ("validation", "test")
    for name, params in variants.items():
        advisor = Advisor.from_params(params, cache=advice_cache)
        try:
            answers[name] = {split: advisor.distributions(
                advisor_examples.loc[advisor_examples["split"] == split, "prompt"].tolist(), FLAT_OPTIONS,
                batch_size=settings["batch_size"])[:, list(LABEL_ACTIONS)] for split in splits}
        finally:
            advisor.close()
    report = evaluate_advisors(
        advisor_examples, answers, template_fields(advisor_params["prompt"]["state"], advisor_examples),
        splits=splits, cost_points=round_trip_cost_points(contract), point_value=contract.multiplier,
        horizon_bars=int(advisor_params["labels"]["horizon_bars"]),
        label_rule=f"oracle of the planted {edge.kind} edge" if edge else "outcome net of costs",
        market=f"planted {edge.kind}" if edge else "default", bootstrap_draws=settings["bootstrap_draws"])
    metrics = {f"advisor_skill/{split}/{name}/{figure}": {"value": float(value), "step": 0}
               for split, block in report["splits"].items() for name, figures in block["advisors"].items()
               for figure, value in figures.items()
               if figure in ("direction_accuracy", "log_loss", "brier", "lean_correlation", "follow_net_dollars")
               and np.isfinite(value)}
    return report, render_skill_markdown(report), metrics


def prepare_advisor(bar_features: pd.DataFrame, day_splits: pd.DataFrame, advice_cache: AdviceCache,
                    advisor_adapter: dict[str, Any], advisor_params: dict[str, Any],
                    environment_params: dict[str, Any]) -> tuple[dict[str, Any], pd.DataFrame]:
    """Load the advisor (failing here, before any training, if it cannot) and pre-score the
    flat-account prompts of train and validation bars into the persistent cache.

    Returns:
        A readiness report (model identity and device, prompt tokens, pre-scoring counts)
        and every answer given (empty unless ``save_llm_responses``).
    """
    advisor_params = with_adapter(advisor_params, advisor_adapter)
    advisor = Advisor.from_params(advisor_params, cache=advice_cache)
    development = day_splits.loc[day_splits["split"].isin(["train", "validation"]), "session_date"]
    settings = advisor_params["prescore"]
    counts = prescore_days(advisor, bar_features, development, environment_params["engine"]["drawdown_limit"],
                           settings, max_prompts=settings["max_prompts"])
    report = {
        "model": advisor.backend.identity,
        "device": advisor.backend.device,
        "method": advisor.config.tag,
        "prompt_version": advisor.builder.template.version,
        "prefix_tokens": advisor.backend.count_tokens(advisor.builder.template.prefix),
        "cache_entries": len(advisor.cache),
        **counts,
        "ms_per_scored_prompt": 1e3 * counts["seconds"] / max(counts["scored"], 1),
    }
    logger.info("Advisor %s on %s ready: %d of %d distinct flat prompts scored in %.1f s; cache holds %d answers",
                report["model"], report["device"], counts["scored"], counts["distinct_prompts"], counts["seconds"],
                report["cache_entries"])
    return report, advisor.responses()


def _load_phase2(phase2_best_policy: Any, source: str) -> Any:
    if str(source) == "catalog":
        return phase2_best_policy
    name = "phase2_policy"
    try:
        return load_registered_sb3(name, str(source))
    except Exception as error:  # mlflow raises several types for a missing model/alias
        raise ValueError(f"phase3.phase2_source: cannot load {name} '{source}' from the MLflow registry ({error}). "
                         "Run `kedro run --pipelines=phase2` first, or use phase2_source: catalog.") from error


def _close(advisor: Advisor | None, worker: AsyncAdvisor | ProcessAdvisor | None, *envs: Any) -> bool:
    """Close everything; ``True`` when all closed without error."""
    clean = True
    for env in envs:
        try:
            env.close()
        except Exception as error:
            logger.error("closing an environment failed: %s", error)
            clean = False
    if worker is not None:
        worker.close()
        clean &= not worker.alive and not worker.forced_stop
    elif advisor is not None:
        advisor.close()
    return clean


def train_phase3_policy(
    phase2_best_policy: Any,
    clean_bars: pd.DataFrame,
    model_input_features: pd.DataFrame,
    bar_features: pd.DataFrame,
    market_spec: dict[str, Any],
    advice_cache: AdviceCache,
    advisor_report: dict[str, Any],
    advisor_adapter: dict[str, Any],
    environment_params: dict[str, Any],
    advisor_params: dict[str, Any],
    phase3_params: dict[str, Any],
):
    """Train the hybrid policy from the Phase 2 policy on train days, asking the advisor.

    ``advisor_report`` (from ``prepare_advisor``) orders this node after the load check and
    pre-scoring. Returns the last model, the best on validation, a training summary (config,
    warm-up, telemetry, histories, clean exit) and the advisor's answers during training.
    """
    config = Phase3Config.from_params(phase3_params)
    advisor_params = with_adapter(advisor_params, advisor_adapter)
    phase2 = _load_phase2(phase2_best_policy, phase3_params["phase2_source"])
    contract = contract_from_spec(market_spec)
    advisor = Advisor.from_params(advisor_params, cache=advice_cache) if config.use_advisor else None
    worker = start_worker(config, advisor, advisor_params) if advisor is not None else None
    frames = (clean_bars, model_input_features, bar_features, contract, environment_params)
    train_env = make_advised_env(*frames, "train", config, advisor=advisor, worker=worker, n_envs=config.ppo.n_envs,
                                 episode_mode="random_start", seed=config.ppo.seed)
    # Validation during training reads the cache only (pre-scored): repeatable, and no load on the worker.
    n_validation = backtest_env_count(len(split_days(model_input_features, "validation")))
    eval_env = make_advised_env(*frames, "validation", config, advisor=advisor, worker=None, n_envs=n_validation,
                                episode_mode="full_session", seed=config.ppo.seed, mode="cached")
    clean_exit = False
    try:
        result, warmup = train_phase3(config, phase2, train_env, eval_env, eval_env.engine.market.n_sessions,
                                      Path(phase3_params["work_dir"]), resume=phase3_params["resume"],
                                      progress_bar=phase3_params["progress_bar"])
    except KeyboardInterrupt as stop:
        stop_training_run(stop, "Phase 3", "phase3")
    finally:
        clean_exit = _close(advisor, worker, train_env, eval_env)
    rates = train_env.telemetry.rates()
    summary = {
        "config": config.as_dict(),
        "phase2_source": str(phase3_params["phase2_source"]),
        "num_timesteps": int(result.model.num_timesteps),
        "resumed_from": str(result.resumed_from) if result.resumed_from else None,
        "warmup": {"steps": config.adapter_warmup_steps, "unfrozen_at": warmup.unfrozen_at,
                   "warmup_env_steps": warmup.warmup_env_steps, "trainable_parameters": warmup.counts},
        "updates": warmup.updates,
        "telemetry": {**dataclasses.asdict(train_env.telemetry), **rates},
        "query_triggers": dict(train_env.schedule.trigger_counts),
        "advisor_stats": dataclasses.asdict(advisor.stats) if advisor is not None else None,
        "worker": {"submitted": worker.submitted, "superseded": worker.superseded, "answered": worker.answered}
        if worker is not None else None,
        "llm_weight": float(result.model.policy.llm_weight().detach()),
        "train_end_reasons": result.end_reasons,
        "episode_lengths": result.episode_lengths,
        "history": {k: v for k, v in result.history.items() if k.startswith(("train/", "rollout/", "advisor/",
                                                                              "phase3/", "eval/"))},
        "clean_exit": clean_exit,
    }
    logger.info("Phase 3 trained %d steps: query rate %.1f%%, cache hits %.0f%%, disagreement %.0f%%, "
                "override %.1f%%, clean exit %s", result.model.num_timesteps, 100 * rates["query_rate"],
                100 * np.nan_to_num(rates["cache_hit_rate"]), 100 * np.nan_to_num(rates["disagreement_rate"]),
                100 * rates["override_rate"], clean_exit)
    responses = advisor.responses() if advisor is not None else pd.DataFrame()
    return result.model, result.best_model or result.model, summary, responses


def evaluate_phase3_policy(
    phase3_policy: Any,
    clean_bars: pd.DataFrame,
    model_input_features: pd.DataFrame,
    bar_features: pd.DataFrame,
    market_spec: dict[str, Any],
    advice_cache: AdviceCache,
    advisor_adapter: dict[str, Any],
    environment_params: dict[str, Any],
    advisor_params: dict[str, Any],
    phase3_params: dict[str, Any],
) -> dict[str, Any]:
    """The overfitting gap (train minus validation mean episode reward, deterministic and masked,
    equal numbers of sessions) of the hybrid, and its validation backtest beside the RL part alone."""
    config = Phase3Config.from_params(phase3_params)
    contract = contract_from_spec(market_spec)
    advisor_params = with_adapter(advisor_params, advisor_adapter)
    advisor = Advisor.from_params(advisor_params, cache=advice_cache) if config.use_advisor else None
    frames = (clean_bars, model_input_features, bar_features, contract, environment_params)
    n = min(len(split_days(model_input_features, "train")), len(split_days(model_input_features, "validation")))
    # Cached answers only (the flat prompts of these days are pre-scored): the backtests repeat exactly.
    envs = {split: make_advised_env(*frames, split, config, advisor=advisor, worker=None, n_envs=backtest_env_count(n),
                                    episode_mode="full_session", max_sessions=n, mode="cached")
            for split in ("train", "validation")}
    try:
        gap = overfitting_gap(phase3_policy, envs["train"], envs["validation"])
        rl_only = summarize(backtest_hybrid(phase3_policy, envs["validation"], llm_weight=0.0))
    finally:
        _close(advisor, None, *envs.values())
    logger.info("Phase 3 overfitting gap %.3f (train %.3f, validation %.3f mean episode reward over %d sessions)",
                gap["gap"], gap["train_mean_reward"], gap["validation_mean_reward"], n)
    return {"overfitting_gap": gap, "validation_rl_only": rl_only}


def register_phase3_policy(
    phase3_policy: Any,
    feature_scaler: dict[str, Any],
    observation_layout: dict[str, Any],
    phase3_evaluation: dict[str, Any],
    clean_bars: pd.DataFrame,
    model_input_features: pd.DataFrame,
    market_spec: dict[str, Any],
    environment_params: dict[str, Any],
    phase3_params: dict[str, Any],
) -> dict[str, Any]:
    """Register the hybrid policy as ``phase3_hybrid`` (aliases ``newest``, and ``good`` when its
    validation net P&L beat the RL part alone)."""
    gap = phase3_evaluation["overfitting_gap"]
    return register_model(phase3_policy, name=phase3_params["registered_model_name"], observation_dim=HYBRID_DIM,
                          feature_scaler=feature_scaler, observation_layout=observation_layout,
                          trading_rules=TradingRules.from_environment(contract_from_spec(market_spec),
                                                                      environment_params),
                          clean_bars=clean_bars, model_input_features=model_input_features,
                          good=gap["validation_mean_net_pnl"] > phase3_evaluation["validation_rl_only"]["mean_net_pnl"],
                          validation_mean_net_pnl=gap["validation_mean_net_pnl"])


def write_phase3_health_report(
    phase3_training_summary: dict[str, Any], phase3_evaluation: dict[str, Any],
) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """The training-health report: JSON, Markdown, and this run's values as MLflow metrics."""
    summary = phase3_training_summary
    values = measure(summary["updates"], summary["telemetry"], summary["episode_lengths"],
                     phase3_evaluation["overfitting_gap"]["gap"], summary["clean_exit"])
    report = health_report(values)
    report["num_timesteps"] = summary["num_timesteps"]
    metrics = {f"health/{row['metric']}": {"value": float(row["this_run"]), "step": 0}
               for row in report["rows"] if row["this_run"] is not None}
    for row in report["rows"]:
        logger.log(logging.INFO if row["passed"] else logging.WARNING, "health %-18s %12s  target %-11s %s",
                   row["metric"], "n/a" if row["this_run"] is None else f"{row['this_run']:.4g}", row["target"],
                   "PASS" if row["passed"] else "FAIL")
    return report, render_markdown(report, health_notes(summary, phase3_evaluation)), metrics


def check_phase3_health(phase3_health_report: dict[str, Any], phase3_params: dict[str, Any]) -> None:
    """Fail the run when a health target is missed and ``phase3.health.fail_on_miss`` is on
    (the report is already written)."""
    if not phase3_health_report["all_passed"] and phase3_params["health"]["fail_on_miss"]:
        raise HealthCheckFailed(f"Phase 3 health targets missed: {', '.join(phase3_health_report['failed'])} "
                                "(see data/08_reporting/phase3_health_report.md)")
