"""Phase 3: the hybrid agent, trained from a Phase 2 policy.

:func:`train_phase3` builds the hybrid policy from Phase 2
(:func:`~hybrid_trader.agents.adapter.phase3_from_phase2`: adapter, fusion),
trains it with the adapter-only warm-up (:class:`WarmupCallback`) and the
advisor's telemetry (:class:`AdvisorTelemetryCallback`) on
:class:`~hybrid_trader.agents.advised_env.AdvisedVecEnv` environments, and
shares Phase 2's loop (masked validation, best model, checkpoints, Ctrl-C).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
from sb3_contrib import MaskablePPO
from stable_baselines3.common.callbacks import BaseCallback

from hybrid_trader.advisor.schedule import QueryScheduleConfig
from hybrid_trader.advisor.worker import AsyncAdvisor, ProcessAdvisor
from hybrid_trader.agents.adapter import phase3_from_phase2, set_adapter_only, trainable_parameters, validate_warmup
from hybrid_trader.agents.advised_env import AdvisedVecEnv, AdvisorTelemetry, advisor_market_inputs
from hybrid_trader.agents.backtest import run_backtest, sb3_policy
from hybrid_trader.agents.fusion import validate_fusion
from hybrid_trader.env.factory import make_vec_env, market_for_split, split_days
from hybrid_trader.markets import ContractSpec
from hybrid_trader.agents.phase2 import PPOConfig, TrainingResult, ppo_kwargs, train_masked_ppo

__all__ = ["Phase3Config", "start_worker", "WarmupCallback", "AdvisorTelemetryCallback", "train_phase3", "make_advised_env",
           "backtest_hybrid", "overfitting_gap", "reward_gap", "GAP_UNIT_DOLLARS"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Phase3Config:
    """Phase 3's own settings (``phase3`` parameters; nothing is inherited from Phase 2).

    Attributes:
        ppo: PPO hyperparameters and budget (``net_arch`` is Phase 2's and ignored).
        adapter_warmup_steps: Steps during which only the adapter trains; must be shorter
            than ``ppo.total_timesteps``.
        llm_weight: ``w`` of the fusion ``(1 - w) pi_RL + w pi_LLM``, in [0, 1).
        learn_llm_weight: Learn ``w`` (as ``sigmoid(theta)``, starting at ``llm_weight``);
            ``fixed`` and ``confidence`` fusion only.
        fusion: How ``w`` becomes each bar's weight: ``fixed``, ``confidence``,
            ``learned_gate`` or ``observation`` (:mod:`~hybrid_trader.agents.fusion`).
        critic_adapter: Give the value network its own adapter (same initialisation).
        use_advisor: Ask the advisor at all (``False``: RL only, no queries).
        queries: When environments ask (:class:`QueryScheduleConfig`).
        query_mode: ``async`` (cache hits at once, misses answered by a background worker)
            or ``sync`` (each step waits for the model).
        max_advice_age: Bars after which an opinion is dropped.
        worker_batch_size: Largest batch the background worker sends to the model.
        worker: ``process`` (the model in a child process) or ``thread``.
    """

    ppo: PPOConfig
    adapter_warmup_steps: int = 10_000
    llm_weight: float = 0.2
    learn_llm_weight: bool = False
    fusion: str = "fixed"
    critic_adapter: bool = True
    use_advisor: bool = True
    queries: QueryScheduleConfig = field(default_factory=QueryScheduleConfig)
    query_mode: str = "async"
    max_advice_age: int = 10
    worker_batch_size: int = 16
    worker: str = "process"

    def __post_init__(self) -> None:
        validate_warmup(self.adapter_warmup_steps, self.ppo.total_timesteps)
        validate_fusion(self.fusion, self.llm_weight, self.learn_llm_weight)
        if self.query_mode not in ("sync", "async"):
            raise ValueError("phase3.advisor_queries.mode must be 'sync' or 'async'")
        if self.worker not in ("process", "thread"):
            raise ValueError("phase3.advisor_queries.worker must be 'process' or 'thread'")

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "Phase3Config":
        queries = dict(params["advisor_queries"])
        mode = queries.pop("mode")
        max_age = queries.pop("max_advice_age")
        batch = queries.pop("worker_batch_size")
        worker = queries.pop("worker", "process")
        return cls(ppo=PPOConfig(**params["ppo"]), adapter_warmup_steps=int(params["adapter_warmup_steps"]),
                   llm_weight=float(params["llm_weight"]), learn_llm_weight=bool(params["learn_llm_weight"]),
                   fusion=str(params.get("fusion", "fixed")), critic_adapter=bool(params.get("critic_adapter", True)),
                   use_advisor=bool(params["use_advisor"]), queries=QueryScheduleConfig(**queries),
                   query_mode=mode, max_advice_age=int(max_age), worker_batch_size=int(batch), worker=worker)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def start_worker(config: Phase3Config, advisor: Any, advisor_params: Mapping[str, Any]) -> Any:
    """The background worker ``config`` asks for (``None`` in ``sync`` mode)."""
    if config.query_mode != "async":
        return None
    if config.worker == "process":
        return ProcessAdvisor(advisor, advisor_params, batch_size=config.worker_batch_size)
    return AsyncAdvisor(advisor, batch_size=config.worker_batch_size)


class WarmupCallback(BaseCallback):
    """Only the adapter trains until ``warmup_steps``; then everything does.

    An update trains the adapter alone when its rollout began before ``warmup_steps``
    (so a warm-up shorter than one rollout still gets one adapter-only update); the
    unfreeze happens at the start of the first rollout at or after ``warmup_steps``.
    Records, per rollout, ``phase3/warmup_active``, ``phase3/trainable_parameters`` and
    ``phase3/adapter_trainable`` (1 when the adapter receives gradients: always, by
    construction), and keeps every update's ``train/`` values in ``updates`` with
    whether it was adapter-only.
    """

    UPDATE_KEYS = ("train/approx_kl", "train/clip_fraction", "train/explained_variance", "train/entropy_loss",
                   "train/value_loss", "train/policy_gradient_loss")

    def __init__(self, warmup_steps: int) -> None:
        super().__init__()
        self.warmup_steps = warmup_steps
        self.active = False
        self.unfrozen_at: int | None = None
        self.counts: dict[str, int] = {}
        self.warmup_env_steps = 0
        self.updates: list[dict[str, Any]] = []
        self._rollout_start = 0

    def _on_training_start(self) -> None:
        if self.num_timesteps < self.warmup_steps:
            before, after = set_adapter_only(self.model, True)
            self.active = True
            self.counts = {"total": before, "warmup": after}
            logger.info("Phase 3 warm-up: only the adapter trains until step %d (%d of %d parameters)",
                        self.warmup_steps, after, before)
        else:
            set_adapter_only(self.model, False)
            self.counts = {"total": trainable_parameters(self.model)}

    def _collect_update(self) -> None:
        # Between an update and the next dump, SB3's logger holds that update's train/ values.
        values = {k: float(v) for k, v in self.model.logger.name_to_value.items() if k in self.UPDATE_KEYS}
        if values:
            self.updates.append({"step": int(self.num_timesteps), "adapter_only": self.active, **values})

    def _on_rollout_start(self) -> None:
        self._collect_update()
        if self.active and self.num_timesteps >= self.warmup_steps:
            before, after = set_adapter_only(self.model, False)
            self.active, self.unfrozen_at = False, self.num_timesteps
            self.counts["after_unfreeze"] = after
            logger.info("Phase 3 warm-up over at step %d: trainable parameters %d -> %d",
                        self.num_timesteps, before, after)
        self._rollout_start = self.num_timesteps

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        if self.active:
            self.warmup_env_steps += self.num_timesteps - self._rollout_start
        adapter = self.model.policy.features_extractor.linear.weight
        self.logger.record("phase3/warmup_active", float(self.active))
        self.logger.record("phase3/trainable_parameters", float(trainable_parameters(self.model)))
        self.logger.record("phase3/adapter_trainable", float(adapter.requires_grad))

    def _on_training_end(self) -> None:
        self._collect_update()


class AdvisorTelemetryCallback(BaseCallback):
    """Per rollout, the advisor's figures over that rollout (``advisor/<rate>``, see
    :meth:`AdvisorTelemetry.rates`), its failures and abstentions so far, and ``w`` (in the
    gated fusion modes, the mean effective weight over the rollout's advised steps,
    :meth:`~hybrid_trader.agents.fusion.FusedMaskablePolicy.rollout_llm_weight`); also one
    console line per rollout."""

    def __init__(self, env: AdvisedVecEnv) -> None:
        super().__init__()
        self.env = env
        self._previous = AdvisorTelemetry()

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        now = AdvisorTelemetry(**asdict(self.env.telemetry))
        window = now.minus(self._previous).rates()
        self._previous = now
        for name, value in window.items():
            if np.isfinite(value):
                self.logger.record(f"advisor/{name}", value)
        advisor = self.env.advisor
        if advisor is not None:
            self.logger.record("advisor/failures", float(advisor.stats.failures))
            self.logger.record("advisor/abstentions", float(advisor.stats.abstentions))
            self.logger.record("advisor/disabled", float(advisor.stats.disabled))
        if self.env.worker is not None:
            self.logger.record("advisor/worker_waiting", float(self.env.worker.waiting))
        weight = self.model.policy.rollout_llm_weight()  # gated modes: the rollout's mean effective weight
        if np.isfinite(weight):
            self.logger.record("phase3/llm_weight", weight)
        logger.info("Phase 3 step %d: query rate %.1f%%, cache hits %.0f%%, advice on %.0f%% of steps, "
                    "confidence %.2f, disagreement %.0f%%, override %.1f%%, advisor %.2f ms/step, w %.2f",
                    self.num_timesteps, 100 * window["query_rate"], 100 * np.nan_to_num(window["cache_hit_rate"]),
                    100 * window["advice_coverage"], np.nan_to_num(window["mean_confidence"]),
                    100 * np.nan_to_num(window["disagreement_rate"]), 100 * window["override_rate"],
                    window["advisor_ms_per_step"], weight)


def train_phase3(
    config: Phase3Config,
    phase2: MaskablePPO,
    train_env: AdvisedVecEnv,
    eval_env: AdvisedVecEnv,
    n_eval_episodes: int,
    work_dir: Path,
    *,
    resume: bool = False,
    progress_bar: bool = True,
) -> tuple[TrainingResult, WarmupCallback]:
    """Train the hybrid policy built from ``phase2`` (see :func:`train_masked_ppo`).

    Returns:
        The training result and the warm-up callback (when the unfreeze happened, the
        parameter counts, the env steps of warm-up).
    """
    def build() -> MaskablePPO:
        return phase3_from_phase2(phase2, train_env, llm_weight=config.llm_weight,
                                  learn_llm_weight=config.learn_llm_weight, fusion=config.fusion,
                                  critic_adapter=config.critic_adapter,
                                  **ppo_kwargs(config.ppo))

    def attach(model: MaskablePPO) -> None:
        train_env.attach_policy(model.policy)
        eval_env.attach_policy(model.policy)

    warmup = WarmupCallback(config.adapter_warmup_steps)
    result = train_masked_ppo(config.ppo, train_env, eval_env, n_eval_episodes, work_dir, build, resume=resume,
                              progress_bar=progress_bar, on_model=attach,
                              extra_callbacks=[warmup, AdvisorTelemetryCallback(train_env)])
    return result, warmup


def make_advised_env(
    clean_bars: pd.DataFrame, model_input_features: pd.DataFrame, bar_features: pd.DataFrame,
    contract: ContractSpec, environment_params: dict[str, Any], split: str, config: Phase3Config, *,
    advisor: Any, worker: Any, n_envs: int, episode_mode: str, seed: int | None = None,
    max_sessions: int | None = None, mode: str | None = None,
) -> AdvisedVecEnv:
    """Phase 3 environments over one split's sessions, asking ``advisor`` as ``config`` says
    (never when ``config.use_advisor`` is off or ``advisor`` is ``None``) in ``mode`` (default:
    ``config.query_mode``)."""
    market = market_for_split(clean_bars, model_input_features, contract, environment_params, split, max_sessions)
    days = split_days(model_input_features, split, max_sessions)
    rows = bar_features["session_date"].isin(pd.to_datetime(pd.Series(days))).to_numpy()
    venv = make_vec_env(market, environment_params, n_envs=n_envs, phase=3, seed=seed, episode_mode=episode_mode)
    return AdvisedVecEnv(venv, advisor_market_inputs(bar_features, rows), advisor if config.use_advisor else None,
                         config.queries, mode=mode or config.query_mode, worker=worker,
                         max_advice_age=config.max_advice_age)


def backtest_hybrid(model: MaskablePPO, env: AdvisedVecEnv, llm_weight: float | None = None) -> pd.DataFrame:
    """Deterministic, masked, one episode per session (:func:`run_backtest`) of the hybrid policy;
    ``llm_weight`` overrides ``w`` for this backtest (e.g. 0: the RL part alone)."""
    env.attach_policy(model.policy)
    model.policy.llm_weight_override = llm_weight
    try:
        return run_backtest(env, sb3_policy(model))
    finally:
        model.policy.llm_weight_override = None


# The overfitting gap's unit: one per $1,000, the reward unit the health target (< 0.5) was
# adopted with, so that reward_scale (a tuning knob) cannot move the metric.
GAP_UNIT_DOLLARS = 1_000.0


def reward_gap(train: pd.DataFrame, validation: pd.DataFrame, breach_penalty_dollars: float) -> dict[str, Any]:
    """Train minus validation mean session score, a session's score being its episode reward
    at one unit per $1,000: ``(net_pnl - breach_penalty_dollars x breached) / 1,000``
    (``breached``: the episode ended by a drawdown breach). Also both means, the session
    counts, the mean net P&L of each side, and the gap's standard error
    ``sqrt(s_train^2 / n_train + s_validation^2 / n_validation)`` (sample standard
    deviations of the sessions' scores).
    """
    def scores(episodes: pd.DataFrame) -> pd.Series:
        breached = (episodes["end_reason"] == "drawdown_breach").astype(float)
        return (episodes["net_pnl"] - breach_penalty_dollars * breached) / GAP_UNIT_DOLLARS

    train_scores, validation_scores = scores(train), scores(validation)
    standard_error = float(np.sqrt(train_scores.var(ddof=1) / len(train_scores)
                                   + validation_scores.var(ddof=1) / len(validation_scores)))
    return {"train_mean_reward": float(train_scores.mean()),
            "validation_mean_reward": float(validation_scores.mean()),
            "train_sessions": int(len(train)), "validation_sessions": int(len(validation)),
            "train_mean_net_pnl": float(train["net_pnl"].mean()),
            "validation_mean_net_pnl": float(validation["net_pnl"].mean()),
            "gap": float(train_scores.mean() - validation_scores.mean()),
            "gap_standard_error": standard_error}


def overfitting_gap(model: MaskablePPO, train_env: AdvisedVecEnv, validation_env: AdvisedVecEnv) -> dict[str, Any]:
    """:func:`reward_gap` of the hybrid policy's backtests on train and validation sessions
    (the environments should hold the same number of sessions), the breach penalty counted
    at its dollars (``breach_penalty / reward_scale``)."""
    config = train_env.engine.config
    return reward_gap(backtest_hybrid(model, train_env), backtest_hybrid(model, validation_env),
                      config.breach_penalty / config.reward_scale)
