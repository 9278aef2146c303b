"""When each environment asks the advisor (selective querying).

Per environment, at each bar (before the policy acts) a query is *due* when

* ``query_interval`` bars have passed since its last query (an episode's first
  bar counts as due: there is no opinion yet), or
* the RL policy is uncertain: the top probability of its masked distribution is
  below ``confidence_threshold``, or
* its position changed since the previous bar (a change seen during a cooldown
  stays pending until the cooldown ends),

and it is *not* within ``query_cooldown`` bars of its last query (a query at bar
``t`` blocks bars ``t + 1 .. t + query_cooldown``). The cooldown runs on across
the episodes an environment plays one after another: a new episode is due at
its first bar unless the previous episode's last query was within the
cooldown, in which case it is asked as soon as the cooldown ends. So no
environment is ever asked on more than ``1 / (query_cooldown + 1)`` of its
bars. With the defaults (5, 0.60, 3) a confident policy is asked every 5th bar
(20%) and an uncertain one at most every 4th (25%).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["QueryScheduleConfig", "QuerySchedule", "TRIGGERS"]

TRIGGERS = ("interval", "uncertain", "position_change")


@dataclass(frozen=True)
class QueryScheduleConfig:
    query_interval: int = 5
    confidence_threshold: float = 0.60
    query_cooldown: int = 3

    def __post_init__(self) -> None:
        if self.query_interval < 1:
            raise ValueError("phase3.advisor_queries.query_interval must be >= 1")
        if self.query_cooldown < 0:
            raise ValueError("phase3.advisor_queries.query_cooldown must be >= 0")
        if not 0.0 <= self.confidence_threshold <= 1.0:
            raise ValueError("phase3.advisor_queries.confidence_threshold must be in [0, 1]")


class QuerySchedule:
    """The query state of ``n_envs`` environments (vectorised, no per-env loop)."""

    def __init__(self, config: QueryScheduleConfig, n_envs: int) -> None:
        self.config = config
        self.n_envs = n_envs
        self.since_query = np.zeros(n_envs, dtype=np.int64)  # bars since the episode's last query (interval)
        self.since_any_query = np.zeros(n_envs, dtype=np.int64)  # bars since the environment's last query (cooldown)
        self.last_side = np.zeros(n_envs, dtype=np.int64)
        self.change_pending = np.zeros(n_envs, dtype=bool)
        self.trigger_counts = dict.fromkeys(TRIGGERS, 0)  # due queries by first matching trigger
        self.reset()

    def reset(self, envs: np.ndarray | None = None, side: np.ndarray | None = None) -> None:
        """Start new episodes for ``envs``: due at their first bar, once the cooldown of the
        environment's last query has passed. ``envs`` ``None``: every environment starts
        afresh, cooldowns included (a new run or evaluation)."""
        if envs is None:
            envs = np.arange(self.n_envs)
            self.since_any_query[envs] = self.config.query_cooldown + 1
        envs = np.asarray(envs)
        self.since_query[envs] = self.config.query_interval
        self.change_pending[envs] = False
        self.last_side[envs] = 0 if side is None else np.asarray(side)[envs]

    def due(self, rl_top_probability: np.ndarray, side: np.ndarray) -> np.ndarray:
        """Which environments ask at this bar; records those queries.

        Args:
            rl_top_probability: ``(n_envs,)`` top probability of the RL policy's masked
                distribution (NaN when unknown: never uncertain).
            side: ``(n_envs,)`` current position (-1, 0, 1).
        """
        cfg = self.config
        side = np.asarray(side)
        self.change_pending |= side != self.last_side
        self.last_side = side.copy()
        interval = self.since_query >= cfg.query_interval
        with np.errstate(invalid="ignore"):
            uncertain = np.asarray(rl_top_probability) < cfg.confidence_threshold
        wanted = interval | uncertain | self.change_pending
        asked = wanted & (self.since_any_query > cfg.query_cooldown)
        for name, hits in zip(TRIGGERS, (interval, ~interval & uncertain, ~interval & ~uncertain & self.change_pending)):
            self.trigger_counts[name] += int((hits & asked).sum())
        self.since_query = np.where(asked, 0, self.since_query) + 1
        self.since_any_query = np.where(asked, 0, self.since_any_query) + 1
        self.change_pending &= ~asked
        return asked
