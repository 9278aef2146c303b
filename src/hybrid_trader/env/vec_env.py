"""Gymnasium and Stable-Baselines3 faces of the engine.

:class:`TradingVecEnv` is an SB3 ``VecEnv`` over one vectorised engine (no
per-environment Python loop in the step), with ``action_masks()`` for
MaskablePPO. :class:`TradingEnv` is a plain ``gymnasium.Env`` for one
environment. Finished episodes report, in their ``info``: ``episode``
(``r``: summed reward, ``l``: steps), ``end_reason`` (one of
:data:`~hybrid_trader.env.engine.END_REASONS`), ``net_pnl`` (final equity minus
the starting balance, $), ``trades`` (positions opened), ``invalid_actions``
(actions refused by the masks and played as HOLD) and ``session_date``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import VecEnv

from hybrid_trader.env.actions import N_ACTIONS
from hybrid_trader.env.engine import END_REASONS, EngineConfig, TradingEngine
from hybrid_trader.env.market import MarketData
from hybrid_trader.env.observation import ObservationBuilder

__all__ = ["TradingVecEnv", "TradingEnv"]


def _spaces(dim: int) -> tuple[gym.spaces.Box, gym.spaces.Discrete]:
    observation = gym.spaces.Box(low=-np.inf, high=np.inf, shape=(dim,), dtype=np.float32)
    return observation, gym.spaces.Discrete(N_ACTIONS)


class TradingVecEnv(VecEnv):
    """``n_envs`` trading accounts stepped together; auto-resets finished episodes."""

    def __init__(self, market: MarketData, config: EngineConfig, n_envs: int = 1, phase: int = 2,
                 seed: int | None = None) -> None:
        self.engine = TradingEngine(market, config, n_envs, seed)
        self.builder = ObservationBuilder(phase)
        self.render_mode = None
        observation_space, action_space = _spaces(self.builder.dim)
        super().__init__(n_envs, observation_space, action_space)
        self.end_reason_counts: Counter[str] = Counter()
        self._episode_return = np.zeros(n_envs)
        self._actions = np.zeros(n_envs, dtype=np.int64)

    def reset(self) -> np.ndarray:
        if self._seeds[0] is not None:
            self.engine.rng = np.random.default_rng(self._seeds[0])
        self._reset_seeds()
        self._reset_options()
        self.engine.reset()
        self._episode_return[:] = 0.0
        return self.builder.build(self.engine)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self):
        engine = self.engine
        result = engine.step(self._actions)
        self._episode_return += result.reward
        done = result.terminated | result.truncated
        obs = self.builder.build(engine)
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        if done.any():
            finished = np.flatnonzero(done)
            for i in finished:
                reason = END_REASONS[result.end_reason[i]]
                self.end_reason_counts[reason] += 1
                infos[i] = {
                    "terminal_observation": obs[i].copy(),
                    "TimeLimit.truncated": bool(result.truncated[i] and not result.terminated[i]),
                    "episode": {"r": float(self._episode_return[i]), "l": int(engine.steps[i])},
                    "end_reason": reason,
                    "net_pnl": float(engine.equity[i] - engine.config.starting_balance),
                    "trades": int(engine.trades_today[i]),
                    "invalid_actions": int(engine.invalid_actions[i]),
                    "session_date": str(engine.market.session_dates[engine.market.session_id[engine.t[i]]])[:10],
                }
            self._episode_return[finished] = 0.0
            engine.reset(finished)
            obs[finished] = self.builder.build(engine)[finished]
        return obs, result.reward.astype(np.float32), done, infos

    def action_masks(self) -> np.ndarray:
        """``(n_envs, N_ACTIONS)`` valid-action masks at the current observations."""
        return self.engine.action_masks()

    def close(self) -> None:
        pass

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        self.engine.rng = np.random.default_rng(seed)
        return super().seed(seed)

    def _indices(self, indices) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        if isinstance(indices, int):
            return [indices]
        return list(indices)

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        return [getattr(self, attr_name)] * len(self._indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        idx = self._indices(indices)
        if method_name == "action_masks":
            masks = self.engine.action_masks()
            return [masks[i] for i in idx]
        result = getattr(self, method_name)(*method_args, **method_kwargs)
        return [result] * len(idx)

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False] * len(self._indices(indices))


class TradingEnv(gym.Env):
    """One trading account as a ``gymnasium.Env`` (same engine, ``n_envs = 1``)."""

    metadata = {"render_modes": []}

    def __init__(self, market: MarketData, config: EngineConfig, phase: int = 2) -> None:
        self.engine = TradingEngine(market, config, 1)
        self.builder = ObservationBuilder(phase)
        self.observation_space, self.action_space = _spaces(self.builder.dim)
        self._episode_return = 0.0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self.engine.rng = np.random.default_rng(seed)
        self.engine.reset()
        self._episode_return = 0.0
        return self.builder.build(self.engine)[0], {}

    def step(self, action):
        result = self.engine.step(np.asarray([action]))
        self._episode_return += float(result.reward[0])
        info: dict[str, Any] = {"invalid_action": bool(result.invalid_action[0])}
        terminated, truncated = bool(result.terminated[0]), bool(result.truncated[0])
        if terminated or truncated:
            info.update(end_reason=END_REASONS[result.end_reason[0]],
                        net_pnl=float(self.engine.equity[0] - self.engine.config.starting_balance),
                        trades=int(self.engine.trades_today[0]))
        return self.builder.build(self.engine)[0], float(result.reward[0]), terminated, truncated, info

    def action_masks(self) -> np.ndarray:
        return self.engine.action_masks()[0]
