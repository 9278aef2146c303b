"""Phase 2: a MaskablePPO policy on the 228-dim view.

:func:`train_phase2` builds (or resumes) the model, trains it with telemetry,
masked evaluation on validation sessions and checkpoints, and returns the
last and the best-on-validation models. Ctrl-C saves a checkpoint and raises
:class:`TrainingInterrupted`.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from sb3_contrib import MaskablePPO
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, EventCallback
from stable_baselines3.common.logger import Logger

from hybrid_trader.agents.backtest import run_backtest, sb3_policy
from hybrid_trader.agents.callbacks import (
    EpisodeStatsCallback, MlflowOutputFormat, StepCheckpointCallback, latest_checkpoint, save_checkpoint,
)
from hybrid_trader.env.vec_env import TradingVecEnv

__all__ = ["PPOConfig", "linear_schedule", "train_phase2", "train_masked_ppo", "ppo_kwargs", "TrainingInterrupted", "TrainingResult"]

logger = logging.getLogger(__name__)


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by Ctrl-C after a checkpoint was written to ``checkpoint``."""

    def __init__(self, checkpoint: Path) -> None:
        super().__init__(f"training interrupted; checkpoint saved to {checkpoint}")
        self.checkpoint = checkpoint


@dataclass(frozen=True)
class PPOConfig:
    """MaskablePPO hyperparameters and the training budget (``phase2`` parameters).

    Attributes:
        net_arch: Hidden layer sizes, shared by the policy and value networks' own MLPs.
        learning_rate: Initial Adam learning rate.
        lr_schedule: ``constant`` or ``linear`` (decays to ``lr_final_fraction`` x the
            initial rate by the end of training).
        lr_final_fraction: Final rate as a fraction of the initial one (``linear`` only).
        n_steps: Steps per environment per rollout (rollout = ``n_steps x n_envs``).
        batch_size: Minibatch size of each gradient step.
        n_epochs: Passes over each rollout.
        gamma: Discount factor.
        gae_lambda: GAE bias/variance trade-off.
        clip_range: PPO ratio clip.
        ent_coef: Entropy bonus coefficient.
        vf_coef: Value loss coefficient.
        max_grad_norm: Gradient clipping norm.
        target_kl: Stop an update's epochs early when the approximate KL exceeds it (``None``: never).
        seed: Seed of the policy, the environments and the sampling.
        n_envs: Training environments stepped together.
        total_timesteps: Environment steps of training.
        eval_every_steps: Validation evaluation period, in environment steps.
        checkpoint_every_steps: Checkpoint period, in environment steps.
        torch_threads: Torch intra-op threads (1 is fastest for small MLPs on few cores).
    """

    net_arch: list[int] = field(default_factory=lambda: [128, 128])
    learning_rate: float = 3e-4
    lr_schedule: str = "linear"
    lr_final_fraction: float = 0.1
    n_steps: int = 256
    batch_size: int = 256
    n_epochs: int = 5
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    target_kl: float | None = 0.05
    seed: int = 7
    n_envs: int = 8
    total_timesteps: int = 60_000
    eval_every_steps: int = 10_000
    checkpoint_every_steps: int = 10_000
    torch_threads: int = 1

    def __post_init__(self) -> None:
        if self.lr_schedule not in ("constant", "linear"):
            raise ValueError("ppo.lr_schedule must be 'constant' or 'linear'")
        if (self.n_steps * self.n_envs) % self.batch_size:
            raise ValueError(
                f"ppo.batch_size ({self.batch_size}) must divide n_steps x n_envs "
                f"({self.n_steps} x {self.n_envs})"
            )
        if self.total_timesteps < self.n_steps * self.n_envs:
            raise ValueError("ppo.total_timesteps is shorter than one rollout (n_steps x n_envs)")
        for name in ("learning_rate", "n_steps", "batch_size", "n_epochs", "n_envs", "eval_every_steps",
                     "checkpoint_every_steps", "torch_threads"):
            if not getattr(self, name) > 0:
                raise ValueError(f"ppo.{name} must be > 0")

    def learning_rate_schedule(self) -> float | Callable[[float], float]:
        if self.lr_schedule == "constant":
            return self.learning_rate
        return linear_schedule(self.learning_rate, self.learning_rate * self.lr_final_fraction)


def linear_schedule(initial: float, final: float) -> Callable[[float], float]:
    """A rate that moves linearly from ``initial`` to ``final`` over training.

    SB3 calls it with ``progress_remaining``, which goes from 1 (start) to 0 (end).
    """

    def rate(progress_remaining: float) -> float:
        return final + (initial - final) * progress_remaining

    return rate


@dataclass
class TrainingResult:
    """The trained model, the best model on validation (or ``None``), and run facts.

    ``end_reasons``: training episodes per end reason; ``last_logged``: the last
    value SB3 logged for each key (``train/approx_kl``, ``rollout/ep_len_mean``, ...);
    ``history``: every logged value of each key with its step; ``episode_lengths``: the
    length of every training episode that ended (this process only).
    """

    model: MaskablePPO
    best_model: MaskablePPO | None
    resumed_from: Path | None
    end_reasons: dict[str, int]
    last_logged: dict[str, float]
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    episode_lengths: list[int] = field(default_factory=list)


class SessionEvalCallback(EventCallback):
    """Every ``eval_freq`` calls, a deterministic, masked backtest of the first ``n_sessions``
    sessions of ``eval_env`` (:func:`~hybrid_trader.agents.backtest.run_backtest`: all of
    them side by side when the environment has that many accounts). Logs
    ``eval/mean_reward`` (mean summed reward per session) and ``eval/mean_ep_length``, and
    saves the model as ``best_model.zip`` in ``best_model_save_path`` on each new best mean
    reward, then calls ``callback_on_new_best``.
    """

    def __init__(self, eval_env: Any, n_sessions: int, eval_freq: int, best_model_save_path: str | Path,
                 callback_on_new_best: BaseCallback | None = None) -> None:
        super().__init__(callback_on_new_best, verbose=0)
        self.eval_env, self.n_sessions, self.eval_freq = eval_env, n_sessions, eval_freq
        self.best_model_save_path = Path(best_model_save_path)
        self.best_mean_reward = -float("inf")

    def _on_step(self) -> bool:
        if self.eval_freq <= 0 or self.n_calls % self.eval_freq:
            return True
        episodes = run_backtest(self.eval_env, sb3_policy(self.model), sessions=self.n_sessions)
        mean_reward = float(episodes["reward"].mean())
        self.logger.record("eval/mean_reward", mean_reward)
        self.logger.record("eval/mean_ep_length", float(episodes["steps"].mean()))
        self.logger.record("time/total_timesteps", self.num_timesteps, exclude="tensorboard")
        self.logger.dump(self.num_timesteps)
        if mean_reward > self.best_mean_reward:
            self.best_mean_reward = mean_reward
            self.best_model_save_path.mkdir(parents=True, exist_ok=True)
            self.model.save(self.best_model_save_path / "best_model")
            return self._on_event()
        return True


class BestScoreFile(BaseCallback):
    """Remembers the best validation mean reward on disk (called on each new best)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = Path(path)

    def _on_step(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps({"best_mean_reward": float(self.parent.best_mean_reward),
                                         "num_timesteps": int(self.num_timesteps)}))
        return True

    def read(self) -> float:
        if not self.path.exists():
            return -float("inf")
        return float(json.loads(self.path.read_text())["best_mean_reward"])


def ppo_kwargs(config: PPOConfig) -> dict[str, Any]:
    """MaskablePPO's keyword arguments for ``config`` (all but the policy's shape)."""
    return dict(
        learning_rate=config.learning_rate_schedule(), n_steps=config.n_steps, batch_size=config.batch_size,
        n_epochs=config.n_epochs, gamma=config.gamma, gae_lambda=config.gae_lambda,
        clip_range=config.clip_range, ent_coef=config.ent_coef, vf_coef=config.vf_coef,
        max_grad_norm=config.max_grad_norm, target_kl=config.target_kl, seed=config.seed, verbose=0,
    )


def _new_model(config: PPOConfig, env: TradingVecEnv) -> MaskablePPO:
    return MaskablePPO("MlpPolicy", env, policy_kwargs={"net_arch": list(config.net_arch)}, device="cpu",
                       **ppo_kwargs(config))


def train_phase2(
    config: PPOConfig,
    train_env: TradingVecEnv,
    eval_env: TradingVecEnv,
    n_eval_episodes: int,
    work_dir: Path,
    *,
    resume: bool = False,
    progress_bar: bool = True,
) -> TrainingResult:
    """Train (or resume) a MaskablePPO policy.

    Args:
        config: Hyperparameters and budget.
        train_env: Environments over train sessions (``random_start`` episodes).
        eval_env: Environments over validation sessions (``full_session`` episodes).
        n_eval_episodes: Validation episodes per evaluation (e.g. the number of sessions).
        work_dir: Holds ``checkpoints/`` and ``best/`` (a fresh run empties both).
        resume: Continue from the newest checkpoint in ``work_dir/checkpoints`` if any, with
            the saved model's hyperparameters, its step count, optimizer, environment RNG
            state and the best validation score so far.
        progress_bar: Show SB3's progress bar.

    Raises:
        TrainingInterrupted: on Ctrl-C, after saving a checkpoint.
    """
    return train_masked_ppo(config, train_env, eval_env, n_eval_episodes, work_dir,
                            lambda: _new_model(config, train_env), resume=resume, progress_bar=progress_bar)


def train_masked_ppo(
    config: PPOConfig,
    train_env: Any,
    eval_env: Any,
    n_eval_episodes: int,
    work_dir: Path,
    build_model: Callable[[], MaskablePPO],
    *,
    resume: bool = False,
    progress_bar: bool = True,
    extra_callbacks: Sequence[BaseCallback] = (),
    on_model: Callable[[MaskablePPO], None] | None = None,
) -> TrainingResult:
    """The training loop both phases share (see :func:`train_phase2` for the arguments).

    ``build_model`` makes a fresh model (when not resuming); ``on_model`` is called with the
    model, fresh or resumed, before training (e.g. to attach it to its environments);
    ``extra_callbacks`` run beside the episode statistics, evaluation and checkpoints.
    """
    torch.set_num_threads(config.torch_threads)
    checkpoints, best_dir = Path(work_dir) / "checkpoints", Path(work_dir) / "best"
    found = latest_checkpoint(checkpoints) if resume else None
    if found:
        path, sidecar = found
        # The saved model keeps its own hyperparameters; the budget comes from config.
        model = MaskablePPO.load(path, env=train_env, device="cpu")
        if sidecar.get("env_rng_state"):
            base = getattr(train_env, "venv", train_env)
            base._reset_seeds()  # or the first reset would reseed over the restored state
            base.engine.rng.bit_generator.state = sidecar["env_rng_state"]
        logger.info("Resuming from %s at step %d", path, model.num_timesteps)
    else:
        if resume:
            logger.info("resume: true but no checkpoint in %s; starting fresh", checkpoints)
        # A fresh run must not pick up an earlier run's checkpoints or best model.
        for stale in (checkpoints, best_dir):
            shutil.rmtree(stale, ignore_errors=True)
        model = build_model()
    if on_model is not None:
        on_model(model)
    telemetry = MlflowOutputFormat()
    model.set_logger(Logger(folder=None, output_formats=[telemetry]))

    episode_stats = EpisodeStatsCallback()
    best_score = BestScoreFile(best_dir / "best_score.json")
    evaluation = SessionEvalCallback(eval_env, n_eval_episodes, max(config.eval_every_steps // config.n_envs, 1),
                                     best_dir, callback_on_new_best=best_score)
    if found:
        evaluation.best_mean_reward = best_score.read()  # a resumed run must beat the best so far
    # Extra callbacks first: they may read an update's values before episode_stats dumps them at the end.
    callbacks = CallbackList([
        *extra_callbacks, episode_stats, evaluation, StepCheckpointCallback(checkpoints, config.checkpoint_every_steps),
    ])
    remaining = config.total_timesteps - model.num_timesteps
    try:
        if remaining > 0:
            model.learn(total_timesteps=remaining, callback=callbacks, reset_num_timesteps=not found,
                        progress_bar=progress_bar)
    except KeyboardInterrupt:
        path = save_checkpoint(model, checkpoints, f"interrupted_{model.num_timesteps:010d}")
        raise TrainingInterrupted(path) from None
    best_path = best_dir / "best_model.zip"
    best = MaskablePPO.load(best_path, device="cpu") if best_path.exists() else None
    return TrainingResult(model, best, found[0] if found else None, dict(episode_stats.totals),
                          dict(telemetry.last), dict(telemetry.history), list(episode_stats.lengths))
