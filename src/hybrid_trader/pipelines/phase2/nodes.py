"""Nodes of ``phase2``: thin wrappers over :mod:`hybrid_trader.agents`."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd

from hybrid_trader.agents.backtest import (
    backtest_vec_env, flat_policy, random_policy, run_backtest, sb3_policy, summarize,
)
from hybrid_trader.agents.phase2 import PPOConfig, TrainingInterrupted, train_phase2
from hybrid_trader.agents.registry import register_model
from hybrid_trader.agents.serving import TradingRules
from hybrid_trader.env.factory import make_vec_env, market_for_split
from hybrid_trader.features.registry import PHASE2_DIM
from hybrid_trader.markets import ContractSpec

logger = logging.getLogger(__name__)
_HEALTH_KEYS = ("train/approx_kl", "train/clip_fraction", "train/explained_variance", "train/entropy_loss",
                "train/value_loss", "train/learning_rate", "rollout/ep_len_mean", "rollout/ep_rew_mean")


def contract_from_spec(market_spec: dict[str, Any]) -> ContractSpec:
    fields = {f.name for f in dataclasses.fields(ContractSpec)}
    return ContractSpec(**{k: v for k, v in market_spec.items() if k in fields})


def stop_training_run(stop: KeyboardInterrupt, phase: str, section: str) -> None:
    """Ctrl-C during training: mark the MLflow run KILLED and exit with status 130 (no traceback)."""
    # TrainingInterrupted carries a checkpoint; a bare KeyboardInterrupt may not.
    where = f"; {stop}" if isinstance(stop, TrainingInterrupted) else " before a checkpoint could be saved"
    logger.warning("%s interrupted%s. The MLflow run is marked KILLED; %s.resume: true continues.", phase, where,
                   section)
    if mlflow.active_run() is not None:
        mlflow.end_run(status="KILLED")
    raise SystemExit(130) from None


def train_phase2_policy(
    clean_bars: pd.DataFrame,
    model_input_features: pd.DataFrame,
    market_spec: dict[str, Any],
    environment_params: dict[str, Any],
    phase2_params: dict[str, Any],
):
    """Train the Phase 2 policy on train days, evaluating on validation days as it goes.

    Returns:
        The last model, the best model on validation (the last when no evaluation ran),
        and a training summary (config, steps, end reasons, last telemetry values).
    """
    config = PPOConfig(**phase2_params["ppo"])
    contract = contract_from_spec(market_spec)
    train_market = market_for_split(clean_bars, model_input_features, contract, environment_params, "train")
    val_market = market_for_split(clean_bars, model_input_features, contract, environment_params, "validation")
    train_env = make_vec_env(train_market, environment_params, n_envs=config.n_envs, phase=2, seed=config.seed,
                             episode_mode="random_start")
    eval_env = backtest_vec_env(val_market, environment_params, seed=config.seed)
    try:
        result = train_phase2(config, train_env, eval_env, val_market.n_sessions, Path(phase2_params["work_dir"]),
                              resume=phase2_params["resume"], progress_bar=phase2_params["progress_bar"])
    except KeyboardInterrupt as stop:
        stop_training_run(stop, "Phase 2", "phase2")
    finally:
        train_env.close()
        eval_env.close()
    health = {k: result.last_logged[k] for k in _HEALTH_KEYS if k in result.last_logged}
    logger.info("Phase 2 trained %d steps; last iteration: %s", result.model.num_timesteps,
                ", ".join(f"{k}={v:.4g}" for k, v in health.items()))
    summary = {
        "config": dataclasses.asdict(config),
        "num_timesteps": int(result.model.num_timesteps),
        "resumed_from": str(result.resumed_from) if result.resumed_from else None,
        "train_sessions": int(train_market.n_sessions),
        "validation_sessions": int(val_market.n_sessions),
        "train_end_reasons": result.end_reasons,
        "last_iteration": health,
    }
    return result.model, result.best_model or result.model, summary


def evaluate_phase2_policy(
    phase2_policy: Any,
    clean_bars: pd.DataFrame,
    model_input_features: pd.DataFrame,
    market_spec: dict[str, Any],
    environment_params: dict[str, Any],
    phase2_params: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """Masked, deterministic backtest of the policy on validation days, beside flat and random."""
    contract = contract_from_spec(market_spec)
    market = market_for_split(clean_bars, model_input_features, contract, environment_params, "validation")

    def backtest(policy) -> dict[str, Any]:
        return summarize(run_backtest(backtest_vec_env(market, environment_params), policy))

    report = {
        "split": "validation",
        "phase2": backtest(sb3_policy(phase2_policy)),
        "flat": backtest(flat_policy),
        "random": backtest(random_policy(phase2_params["ppo"]["seed"])),
    }
    report["beats_random"] = report["phase2"]["mean_net_pnl"] > report["random"]["mean_net_pnl"]
    logger.info("Phase 2 on validation: mean net P&L $%.2f/session (flat $%.2f, random $%.2f), "
                "mean episode %.1f bars", report["phase2"]["mean_net_pnl"], report["flat"]["mean_net_pnl"],
                report["random"]["mean_net_pnl"], report["phase2"]["mean_episode_length"])
    metrics = {
        f"validation/{agent}_{name}": {"value": float(report[agent][name]), "step": 0}
        for agent in ("phase2", "flat", "random")
        for name in ("mean_net_pnl", "total_net_pnl", "mean_episode_length", "trades_per_session")
    }
    return report, metrics


def register_phase2_policy(
    phase2_policy: Any,
    feature_scaler: dict[str, Any],
    observation_layout: dict[str, Any],
    phase2_validation_report: dict[str, Any],
    clean_bars: pd.DataFrame,
    model_input_features: pd.DataFrame,
    market_spec: dict[str, Any],
    environment_params: dict[str, Any],
    phase2_params: dict[str, Any],
) -> dict[str, Any]:
    """Register the policy as a pyfunc model; alias ``good`` only if it beat random on validation."""
    report = phase2_validation_report
    return register_model(phase2_policy, name=phase2_params["registered_model_name"], observation_dim=PHASE2_DIM,
                          feature_scaler=feature_scaler, observation_layout=observation_layout,
                          trading_rules=TradingRules.from_environment(contract_from_spec(market_spec),
                                                                      environment_params),
                          clean_bars=clean_bars, model_input_features=model_input_features,
                          good=bool(report["beats_random"]),
                          validation_mean_net_pnl=report["phase2"]["mean_net_pnl"])
