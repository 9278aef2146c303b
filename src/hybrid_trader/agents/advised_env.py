"""Phase 3's environments: the 261 columns plus the advisor's latest opinion.

:class:`AdvisedVecEnv` wraps a Phase 3 :class:`~hybrid_trader.env.vec_env.TradingVecEnv`.
At every bar, before the policy acts, it

1. computes the RL part's masked distribution (the attached hybrid policy's
   :meth:`~hybrid_trader.agents.fusion.FusedMaskablePolicy.rl_probabilities`);
2. asks the :class:`~hybrid_trader.advisor.schedule.QuerySchedule` which
   environments query (interval, uncertainty, position change, cooldown);
3. sends all of this bar's queries to the advisor as one batch. ``mode: sync``
   waits for the model; ``mode: async`` answers cache hits at once and sends
   misses to an :class:`~hybrid_trader.advisor.worker.AsyncAdvisor`, whose
   answers are adopted when they arrive (their age counts from the query);
   ``mode: cached`` answers from the cache only (a miss gets no advice; used by
   backtests, after pre-scoring, so that they are deterministic);
4. appends each environment's opinion (:data:`ADVICE_COLUMNS`) to its
   observation: none at an episode's start, and none once older than
   ``max_advice_age`` bars.

The advisor failing never stops the environment: a failure is counted by the
advisor and the policy acts alone. :class:`AdvisorTelemetry` counts what
happened; its :meth:`~AdvisorTelemetry.rates` are the reported figures.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
from stable_baselines3.common.vec_env import VecEnvWrapper

from hybrid_trader.advisor.advisor import Advisor
from hybrid_trader.advisor.prescore import ADVISOR_MARKET_INPUTS
from hybrid_trader.advisor.schedule import QuerySchedule, QueryScheduleConfig
from hybrid_trader.advisor.worker import AsyncAdvisor
from hybrid_trader.agents.fusion import ADVICE_AGE, ADVICE_CONFIDENCE, ADVICE_PRESENT, ADVICE_PROBABILITIES
from hybrid_trader.env.actions import N_ACTIONS
from hybrid_trader.env.vec_env import TradingVecEnv
from hybrid_trader.features.registry import HYBRID_DIM, PHASE3_DIM, RTH_MINUTES

__all__ = ["AdvisedVecEnv", "AdvisorTelemetry", "advisor_market_inputs"]

# Wrappers may share one background worker: each keys its environments apart.
_WRAPPER_IDS = itertools.count()
_KEYS_PER_WRAPPER = 1_000_000


def advisor_market_inputs(bar_features: pd.DataFrame, rows: np.ndarray | pd.Series) -> np.ndarray:
    """``(T, len(ADVISOR_MARKET_INPUTS) + 1)`` raw (unscaled) market inputs of the prompt for the selected rows, in
    :data:`ADVISOR_MARKET_INPUTS` order then ``minutes_to_flat`` in minutes."""
    selected = bar_features.loc[np.asarray(rows, dtype=bool)]
    values = selected[list(ADVISOR_MARKET_INPUTS)].to_numpy(dtype=np.float64)
    minutes = selected["minutes_to_flat"].to_numpy(dtype=np.float64) * RTH_MINUTES
    return np.column_stack([values, minutes])


@dataclass
class AdvisorTelemetry:
    """Counts over environment steps (one step = one bar of one environment).

    Attributes:
        steps: Environment steps taken (actions sent).
        queries: Queries asked (by the schedule).
        cache_hits: Queries answered from the cache.
        queued: Queries sent to the background worker (cache misses in ``async`` mode).
        answers: Opinions adopted (a cache hit, a model answer, or a worker answer on arrival).
        confidence_sum: Sum of the adopted opinions' confidence (top probability).
        disagreements: Adopted opinions whose masked argmax differs from the RL part's masked
            argmax at the bar of adoption.
        advice_steps: Steps taken with an opinion in the observation (``advice_present`` 1).
        overrides: Steps at which the executed action was the advisor's argmax and not the RL
            part's argmax.
        advisor_ms: Wall time the environment spent in the advisor (prompting, cache, model in
            ``sync`` mode), ms.
    """

    steps: int = 0
    queries: int = 0
    cache_hits: int = 0
    queued: int = 0
    answers: int = 0
    confidence_sum: float = 0.0
    disagreements: int = 0
    advice_steps: int = 0
    overrides: int = 0
    advisor_ms: float = 0.0

    def minus(self, earlier: "AdvisorTelemetry") -> "AdvisorTelemetry":
        return AdvisorTelemetry(**{k: v - getattr(earlier, k) for k, v in asdict(self).items()})

    def rates(self) -> dict[str, float]:
        """The reported figures (NaN when the denominator is 0):

        * ``query_rate``: queries / steps;
        * ``cache_hit_rate``: cache hits / queries;
        * ``mean_confidence``: mean confidence of adopted opinions;
        * ``disagreement_rate``: disagreements / adopted opinions (``agreement_rate`` = 1 - it);
        * ``advice_coverage``: steps with an opinion / steps;
        * ``override_rate``: overrides / steps;
        * ``advisor_ms_per_step``: advisor wall time / steps.
        """
        def ratio(a: float, b: float) -> float:
            return float(a) / b if b else float("nan")

        disagreement = ratio(self.disagreements, self.answers)
        return {
            "query_rate": ratio(self.queries, self.steps),
            "cache_hit_rate": ratio(self.cache_hits, self.queries),
            "mean_confidence": ratio(self.confidence_sum, self.answers),
            "disagreement_rate": disagreement,
            "agreement_rate": 1.0 - disagreement if self.answers else float("nan"),
            "advice_coverage": ratio(self.advice_steps, self.steps),
            "override_rate": ratio(self.overrides, self.steps),
            "advisor_ms_per_step": ratio(self.advisor_ms, self.steps),
        }


class AdvisedVecEnv(VecEnvWrapper):
    """A Phase 3 ``TradingVecEnv`` whose observations carry the advisor's latest opinion.

    Args:
        venv: Phase 3 environments (261 columns).
        market_inputs: :func:`advisor_market_inputs` aligned with ``venv``'s market rows.
        advisor: The advisor; ``None`` never asks (RL only).
        schedule: When to ask.
        mode: ``sync``, ``async`` (needs ``worker``) or ``cached``.
        worker: Background worker for ``async`` cache misses (its advisor is ``advisor``).
        max_advice_age: Bars after which an opinion is dropped.
    """

    def __init__(self, venv: TradingVecEnv, market_inputs: np.ndarray, advisor: Advisor | None,
                 schedule: QueryScheduleConfig, *, mode: str = "sync", worker: AsyncAdvisor | None = None,
                 max_advice_age: int = 10) -> None:
        if venv.observation_space.shape != (PHASE3_DIM,):
            raise ValueError(f"AdvisedVecEnv wraps Phase 3 environments ({PHASE3_DIM} columns)")
        if len(market_inputs) != venv.engine.market.n_bars:
            raise ValueError(f"market_inputs has {len(market_inputs)} rows, the market {venv.engine.market.n_bars}")
        if mode not in ("sync", "async", "cached"):
            raise ValueError("phase3.advisor_queries.mode must be 'sync', 'async' or 'cached'")
        if mode == "async" and advisor is not None and worker is None:
            raise ValueError("async mode needs a worker")
        if max_advice_age < 1:
            raise ValueError("phase3.advisor_queries.max_advice_age must be >= 1")
        space = gym.spaces.Box(low=-np.inf, high=np.inf, shape=(HYBRID_DIM,), dtype=np.float32)
        super().__init__(venv, observation_space=space)
        n = venv.num_envs
        self.engine = venv.engine
        self.market_inputs = market_inputs
        self.advisor, self.worker, self.mode = advisor, worker, mode
        self.schedule = QuerySchedule(schedule, n)
        self.max_advice_age = max_advice_age
        self.policy: Any = None
        self.telemetry = AdvisorTelemetry()
        self.step_count = 0
        self._worker_keys = np.arange(n) + next(_WRAPPER_IDS) * _KEYS_PER_WRAPPER
        self._opinion = np.zeros((n, N_ACTIONS))
        self._confidence = np.zeros(n)
        self._asked_at = np.full(n, -1, dtype=np.int64)  # step of the opinion's query; -1: none
        self._waiting_since = np.full(n, -1, dtype=np.int64)  # step of a query still with the worker
        self._episode_start = np.zeros(n, dtype=np.int64)
        self._rl_argmax = np.zeros(n, dtype=np.int64)
        self._masks = np.ones((n, N_ACTIONS), dtype=bool)

    def attach_policy(self, policy: Any) -> None:
        """The hybrid policy whose RL part decides "uncertain" (without it, never uncertain)."""
        self.policy = policy

    # -- VecEnv ------------------------------------------------------------------------
    def reset(self) -> np.ndarray:
        # A new step number, so that no answer to a query of the episodes left behind passes as fresh.
        self.step_count += 1
        obs = self.venv.reset()
        self.schedule.reset(side=self.engine.side)
        self._forget(np.arange(self.num_envs))
        return self._observe(obs)

    def step_async(self, actions: np.ndarray) -> None:
        actions = np.asarray(actions).reshape(-1)
        present = self._asked_at >= 0
        self.telemetry.steps += self.num_envs
        self.telemetry.advice_steps += int(present.sum())
        if present.any():
            advised = np.where(self._masks, self._opinion, -1.0).argmax(axis=1)
            self.telemetry.overrides += int((present & (actions == advised) & (advised != self._rl_argmax)).sum())
        self.venv.step_async(actions)

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        self.step_count += 1
        finished = np.flatnonzero(dones)
        if len(finished):
            for i in finished:
                terminal = infos[i].get("terminal_observation")
                if terminal is not None:
                    infos[i]["terminal_observation"] = self._with_opinion(terminal[None], np.array([i]))[0]
            self.schedule.reset(finished, side=self.engine.side)
            self._forget(finished)
        return self._observe(obs), rewards, dones, infos

    def close(self) -> None:
        self.venv.close()

    def action_masks(self) -> np.ndarray:
        return self.venv.action_masks()

    # -- the advisor -------------------------------------------------------------------
    def _forget(self, envs: np.ndarray) -> None:
        self._asked_at[envs] = -1
        self._waiting_since[envs] = -1
        self._episode_start[envs] = self.step_count
        self._opinion[envs] = 0.0
        self._confidence[envs] = 0.0

    def _states(self, envs: np.ndarray) -> list[dict[str, Any]]:
        engine = self.engine
        t = engine.t[envs]
        market = engine.market
        point_value = market.contract.multiplier * engine.config.contracts
        side = engine.side[envs]
        unrealized = side * (market.close[t] - engine.entry[envs]) * point_value
        buffer = engine.equity[envs] - engine.floor[envs]
        raw = self.market_inputs[t]
        names = (*ADVISOR_MARKET_INPUTS, "minutes_to_flat")
        return [dict(zip(names, raw[k]), position_side=int(side[k]), unrealized_pnl=float(unrealized[k]),
                     drawdown_buffer=float(buffer[k])) for k in range(len(envs))]

    def _adopt(self, envs: np.ndarray, probabilities: np.ndarray, confidence: np.ndarray, asked_at: np.ndarray,
               rl_argmax: np.ndarray) -> None:
        self._opinion[envs] = probabilities
        self._confidence[envs] = confidence
        self._asked_at[envs] = asked_at
        advised = np.where(self._masks[envs], probabilities, -1.0).argmax(axis=1)
        tel = self.telemetry
        tel.answers += len(envs)
        tel.confidence_sum += float(np.sum(confidence))
        tel.disagreements += int((advised != rl_argmax[envs]).sum())

    def _observe(self, obs: np.ndarray) -> np.ndarray:
        self._masks = self.venv.action_masks()
        n = self.num_envs
        if self.policy is not None:
            rl = self.policy.rl_probabilities(obs, self._masks)
            top, self._rl_argmax = rl.max(axis=1), rl.argmax(axis=1)
        else:
            top, self._rl_argmax = np.full(n, np.nan), np.zeros(n, dtype=np.int64)
        if self.advisor is not None:
            start = time.perf_counter()
            self._collect_worker_answers()
            due = self.schedule.due(top, self.engine.side)
            if due.any():
                self._ask(np.flatnonzero(due))
            self.telemetry.advisor_ms += (time.perf_counter() - start) * 1e3
        stale = (self._asked_at >= 0) & (self.step_count - self._asked_at > self.max_advice_age)
        if stale.any():
            self._asked_at[stale] = -1
            self._opinion[stale], self._confidence[stale] = 0.0, 0.0
        return self._with_opinion(obs, np.arange(n))

    def _ask(self, envs: np.ndarray) -> None:
        tel = self.telemetry
        states = self._states(envs)
        advice = self.advisor.advise(states, self._masks[envs], env_ids=envs.tolist(), use_model=self.mode == "sync")
        tel.queries += len(envs)
        tel.cache_hits += int(advice.cache_hit.sum())
        got = advice.has_advice
        if got.any():
            self._adopt(envs[got], advice.probabilities[got], advice.confidence[got],
                        np.full(int(got.sum()), self.step_count), self._rl_argmax)
            self._waiting_since[envs[got]] = -1
        if self.mode == "async":
            missed = np.array([p is not None for p in advice.prompts]) & ~advice.cache_hit
            if missed.any():
                rows = envs[missed]
                if self.worker.submit([states[k] for k in np.flatnonzero(missed)], self._masks[rows],
                                      self._worker_keys[rows].tolist(), self.step_count):
                    self._waiting_since[rows] = self.step_count
                    tel.queued += len(rows)

    def _collect_worker_answers(self) -> None:
        waiting = np.flatnonzero(self._waiting_since >= 0)
        if not len(waiting) or self.worker is None:
            return
        probabilities, confidence, age = self.worker.latest(self._worker_keys[waiting].tolist(), self.step_count,
                                                            self.max_advice_age)
        asked_at = self.step_count - age
        # An answer from this episode that is newer than the opinion held (the worker may answer
        # an earlier query of this environment than its newest one).
        fresh = (age >= 0) & (asked_at > self._asked_at[waiting]) & (asked_at >= self._episode_start[waiting])
        if fresh.any():
            envs = waiting[fresh]
            masks = self._masks[envs]
            # The position may have changed since the query: keep the answer's mass on what is allowed now.
            kept = np.where(masks, probabilities[fresh], 0.0)
            total = kept.sum(axis=1, keepdims=True)
            usable = total[:, 0] > 0
            normalised = kept[usable] / total[usable]
            self._adopt(envs[usable], normalised, normalised.max(axis=1), asked_at[fresh][usable], self._rl_argmax)
        answered_newest = fresh & (asked_at == self._waiting_since[waiting])
        expired = self.step_count - self._waiting_since[waiting] > self.max_advice_age
        self._waiting_since[waiting[answered_newest | expired]] = -1

    def _with_opinion(self, obs: np.ndarray, envs: np.ndarray) -> np.ndarray:
        out = np.zeros((len(obs), HYBRID_DIM), dtype=np.float32)
        out[:, :PHASE3_DIM] = obs
        present = self._asked_at[envs] >= 0
        out[:, ADVICE_PROBABILITIES] = self._opinion[envs]
        out[:, ADVICE_CONFIDENCE] = self._confidence[envs]
        out[:, ADVICE_AGE] = np.where(present, (self.step_count - self._asked_at[envs]) / self.max_advice_age, 0.0)
        out[:, ADVICE_PRESENT] = present
        return out
