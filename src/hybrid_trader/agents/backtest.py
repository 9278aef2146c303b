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

from hybrid_trader.env.vec_env import TradingVecEnv

__all__ = ["Policy", "run_backtest", "summarize", "flat_policy", "random_policy", "sb3_policy"]

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


def run_backtest(env: TradingVecEnv | Any, policy: Policy, trace: bool = False) -> Any:
    """One episode per session of ``env`` (which must be in ``full_session`` mode).

    With ``trace``, also returns one row per step: ``session_date``, ``step`` (1-based),
    ``row`` (the decision bar's row in the environment's market arrays), ``action`` (as
    executed), ``equity`` (after the step, $) and ``trade_pnl`` (net P&L of a trade closed by
    the step, NaN if none).
    """
    engine = env.engine
    if engine.config.episode_mode != "full_session":
        raise ValueError("backtests need an environment in full_session mode")
    n_sessions = len(engine._session_starts)
    if env.num_envs != 1:
        raise ValueError("run_backtest plays sessions in order with one environment")
    obs = env.reset()
    rows: list[dict[str, Any]] = []
    steps: list[tuple] = []
    step_in_session = 0
    start = engine.config.starting_balance
    while len(rows) < n_sessions:
        masks = env.action_masks()
        actions = policy(obs, masks)
        if not masks[np.arange(len(actions)), actions].all():
            raise AssertionError("the policy picked a masked action")
        row = int(engine.t[0])
        session = engine.market.session_dates[engine.market.session_id[row]]
        obs, _, dones, infos = env.step(actions)
        step_in_session += 1
        info = infos[0]
        if trace:
            equity = start + info["net_pnl"] if dones[0] else float(engine.equity[0])
            steps.append((str(session)[:10], step_in_session, row, int(actions[0]), equity,
                          float(engine.step_trade_net[0])))
        if dones[0]:
            rows.append({"session_date": info["session_date"], "net_pnl": info["net_pnl"],
                         "reward": info["episode"]["r"],
                         "steps": info["episode"]["l"], "end_reason": info["end_reason"],
                         "trades": info["trades"], "invalid_actions": info["invalid_actions"]})
            step_in_session = 0
    episodes = pd.DataFrame(rows)
    if not trace:
        return episodes
    return episodes, pd.DataFrame(steps, columns=["session_date", "step", "row", "action", "equity", "trade_pnl"])


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
