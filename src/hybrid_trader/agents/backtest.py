"""Deterministic, masked backtests of a policy over whole sessions.

:func:`run_backtest` plays one ``full_session`` episode per session, in date
order, and returns one row per session: ``session_date``, ``net_pnl`` (final
equity minus the starting balance, $, after all costs), ``steps``,
``end_reason``, ``trades``, ``invalid_actions`` and ``reward`` (the episode's summed
reward, the quantity PPO maximises); optionally a per-step trace. :func:`summarize` defines
the summary numbers.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pandas as pd

from hybrid_trader.env.factory import make_vec_env
from hybrid_trader.env.market import MarketData
from hybrid_trader.env.vec_env import TradingVecEnv

__all__ = ["Policy", "BACKTEST_ENVS", "backtest_env_count", "backtest_vec_env", "run_backtest",
           "summarize", "flat_policy", "random_policy", "sb3_policy"]

Policy = Callable[[np.ndarray, np.ndarray], np.ndarray]


def flat_policy(obs: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Never trades (HOLD)."""
    return np.zeros(len(obs), dtype=np.int64)


def random_policy(seed: int) -> Policy:
    """Picks uniformly among the valid actions (seeded)."""
    rng = np.random.default_rng(seed)

    def act(obs: np.ndarray, masks: np.ndarray) -> np.ndarray:
        draws = rng.random((len(masks), 1)) * masks.sum(axis=1, keepdims=True)
        return (masks.cumsum(axis=1) > draws).argmax(axis=1)

    return act


def sb3_policy(model: Any, deterministic: bool = True) -> Policy:
    """A (Maskable) SB3 model's masked prediction."""

    def act(obs: np.ndarray, masks: np.ndarray) -> np.ndarray:
        actions, _ = model.predict(obs, action_masks=masks, deterministic=deterministic)
        return np.asarray(actions)

    return act


# Sessions played at once by a backtest: one policy call per bar for all of them. Past ~64 the
# batched policy call no longer gets cheaper per session on a CPU.
BACKTEST_ENVS = 64


def backtest_env_count(n_sessions: int) -> int:
    """How many environments a backtest over ``n_sessions`` sessions steps together."""
    return max(1, min(int(n_sessions), BACKTEST_ENVS))


def backtest_vec_env(market: MarketData, environment_params: dict[str, Any], *, seed: int | None = None,
                     **overrides: Any) -> TradingVecEnv:
    """A Phase 2 ``full_session`` environment over ``market`` for :func:`run_backtest`, with
    :func:`backtest_env_count` accounts and the configured rules (``overrides`` as in
    :func:`~hybrid_trader.env.factory.make_vec_env`)."""
    return make_vec_env(market, environment_params, n_envs=backtest_env_count(market.n_sessions), phase=2, seed=seed,
                        episode_mode="full_session", **overrides)


def run_backtest(env: TradingVecEnv | Any, policy: Policy, trace: bool = False, sessions: int | None = None) -> Any:
    """One episode per session of ``env`` (which must be in ``full_session`` mode); with
    ``sessions``, of its first ``sessions`` sessions only.

    The environment's ``num_envs`` accounts play sessions side by side, each episode with a
    fresh account, so the result does not depend on ``num_envs`` (for a policy that decides
    each environment from its own observation). Episodes are counted in the order the
    engine hands sessions out (date order); an environment that has wrapped around to a
    session already played keeps stepping until every session is done, and is ignored.
    Rows come back in date order.

    With ``trace``, also returns one row per step: ``session_date``, ``step`` (1-based),
    ``row`` (the decision bar's row in the environment's market arrays), ``action`` (as
    executed), ``equity`` (after the step, $) and ``trade_pnl`` (net P&L of a trade closed by
    the step, NaN if none).
    """
    engine = env.engine
    if engine.config.episode_mode != "full_session":
        raise ValueError("backtests need an environment in full_session mode")
    n_sessions = len(engine._session_starts) if sessions is None else min(sessions, len(engine._session_starts))
    n = env.num_envs
    obs = env.reset()
    # Which episode (0, 1, ... in the order the engine hands out sessions) each environment plays.
    episode_of = np.arange(n)
    handed_out = n
    rows: dict[int, dict[str, Any]] = {}
    steps: list[tuple] = []
    step_in_episode = np.zeros(n, dtype=np.int64)
    start = engine.config.starting_balance
    while len(rows) < n_sessions:
        masks = env.action_masks()
        actions = np.asarray(policy(obs, masks)).reshape(n)
        if not masks[np.arange(n), actions].all():
            raise AssertionError("the policy picked a masked action")
        decision_rows = engine.t.copy()
        obs, _, dones, infos = env.step(actions)
        step_in_episode += 1
        counted = episode_of < n_sessions
        if trace:
            equity = engine.equity.copy()
            for i in np.flatnonzero(counted):
                if dones[i]:
                    equity[i] = start + infos[i]["net_pnl"]
                steps.append((int(episode_of[i]), int(step_in_episode[i]), int(decision_rows[i]), int(actions[i]),
                              float(equity[i]), float(engine.step_trade_net[i])))
        for i in np.flatnonzero(dones):
            if counted[i]:
                info = infos[i]
                rows[int(episode_of[i])] = {
                    "session_date": info["session_date"], "net_pnl": info["net_pnl"], "reward": info["episode"]["r"],
                    "steps": info["episode"]["l"], "end_reason": info["end_reason"], "trades": info["trades"],
                    "invalid_actions": info["invalid_actions"]}
            episode_of[i] = handed_out  # the engine reset it with the next session, in index order
            handed_out += 1
            step_in_episode[i] = 0
    episodes = pd.DataFrame([rows[k] for k in range(n_sessions)])
    if not trace:
        return episodes
    trace_frame = pd.DataFrame(steps, columns=["episode", "step", "row", "action", "equity", "trade_pnl"])
    trace_frame = trace_frame.sort_values(["episode", "step"], kind="stable").reset_index(drop=True)
    dates = episodes["session_date"].to_numpy()
    trace_frame.insert(0, "session_date", dates[trace_frame.pop("episode").to_numpy()])
    return episodes, trace_frame


def summarize(episodes: pd.DataFrame) -> dict[str, Any]:
    """Summary of a backtest.

    * ``sessions``: sessions played;
    * ``total_net_pnl``: sum of the sessions' net P&L ($);
    * ``mean_net_pnl``: its mean per session ($);
    * ``mean_episode_length``: mean steps (bars) per session episode;
    * ``trades_per_session``: mean positions opened per session;
    * ``end_reasons``: episodes per end reason.
    """
    return {
        "sessions": int(len(episodes)),
        "total_net_pnl": float(episodes["net_pnl"].sum()),
        "mean_net_pnl": float(episodes["net_pnl"].mean()),
        "mean_episode_length": float(episodes["steps"].mean()),
        "trades_per_session": float(episodes["trades"].mean()),
        "end_reasons": {k: int(v) for k, v in episodes["end_reason"].value_counts().sort_index().items()},
    }
