"""Deterministic, masked backtests of every agent and baseline, and their metrics.

Agents (:data:`AGENTS`): ``flat`` (never trades), ``buy_and_hold`` (long at the
first bar entries are allowed, held to the session's flat time: no stop or
target, the Apex drawdown rule still applies), ``random`` (uniform over the
valid actions, seeded), ``phase2``, ``phase3_rl_only`` (the hybrid policy with
``llm_weight`` 0 and no advisor), ``hybrid`` (the Phase 3 policy with the
advisor) and ``llm_only`` (the advisor alone: the most probable allowed action
of its opinion, asked every bar; HOLD without one); on a planted market also
``oracle`` (the planted edge's known optimal side, :mod:`hybrid_trader.evaluation.learning`).
Every agent plays each
session of a split once, in date order, with the training engine and costs,
at 1x and at ``cost_multiple`` x the contract's commission and slippage. The
advisor answers from its cache only (pre-scored), so backtests repeat exactly.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import pandas as pd

from hybrid_trader.advisor.schedule import QueryScheduleConfig
from hybrid_trader.agents.backtest import (
    backtest_env_count, backtest_vec_env, flat_policy, random_policy, run_backtest, sb3_policy,
)
from hybrid_trader.agents.fusion import ADVICE_PRESENT, ADVICE_PROBABILITIES
from hybrid_trader.agents.phase3 import Phase3Config, make_advised_env
from hybrid_trader.env.actions import Action
from hybrid_trader.env.factory import market_for_split, split_days
from hybrid_trader.evaluation.apex import ApexEstimation, ApexRules, apex_figures
from hybrid_trader.evaluation.metrics import (
    expected_max_sharpe, max_drawdown, probabilistic_sharpe_ratio, sharpe_ratio, sortino_ratio, trade_statistics,
)
from hybrid_trader.evaluation.learning import oracle_policy, split_directions
from hybrid_trader.market_data.synthetic import PlantedEdge
from hybrid_trader.markets import ContractSpec

__all__ = ["AGENTS", "BASELINES", "BacktestSetup", "buy_and_hold_policy", "llm_only_policy", "with_costs", "run_agent",
           "backtest_metrics", "unique_trials", "add_deflated_sharpe", "TABLE_COLUMNS"]

AGENTS = ("flat", "buy_and_hold", "random", "oracle", "phase2", "phase3_rl_only", "hybrid", "llm_only")
# Fixed rules, not searched for: not trials of the deflated Sharpe ratio (add_deflated_sharpe). The other
# agents are configurations tried: the learned policies, and the advisor alone (its prompt, fine-tuning
# and calibration were chosen too).
BASELINES = ("flat", "buy_and_hold", "random", "oracle")
_NO_STOP = 1e6  # stop (and target) this many ATRs away: never reached within a session


def buy_and_hold_policy(obs: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """BUY whenever a long entry is allowed (flat, inside the entry window), else HOLD."""
    return np.where(masks[:, Action.BUY], int(Action.BUY), int(Action.HOLD))


def llm_only_policy(obs: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """The advisor's most probable allowed action (from the hybrid observation); HOLD without advice."""
    advised = np.where(masks, obs[:, ADVICE_PROBABILITIES], -1.0).argmax(axis=1)
    return np.where(obs[:, ADVICE_PRESENT] > 0, advised, int(Action.HOLD))


def with_costs(contract: ContractSpec, multiple: float) -> ContractSpec:
    """The contract with ``multiple`` x its commission and slippage."""
    return dataclasses.replace(contract, commission_per_side=contract.commission_per_side * multiple,
                               slippage_ticks=contract.slippage_ticks * multiple)


@dataclass
class BacktestSetup:
    """What every backtest shares."""

    clean_bars: pd.DataFrame
    model_input_features: pd.DataFrame
    bar_features: pd.DataFrame
    contract: ContractSpec
    environment_params: dict[str, Any]
    phase3: Phase3Config
    advisor: Any
    random_seed: int
    planted_edge: PlantedEdge | None = None  # the market's planted edge (the oracle's), if any


def run_agent(agent: str, split: str, cost_multiple: float, setup: BacktestSetup, phase2: Any,
              phase3: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(episodes, steps)`` of one agent on one split (see :func:`run_backtest`)."""
    contract = with_costs(setup.contract, cost_multiple)
    env_params = setup.environment_params
    if agent not in AGENTS:
        raise ValueError(f"unknown agent {agent!r}; agents are {AGENTS}")
    if agent == "oracle" and setup.planted_edge is None:
        raise ValueError("the oracle agent needs a planted market (evaluation.planted_edge)")
    if agent in ("flat", "buy_and_hold", "random", "phase2", "oracle"):
        market = market_for_split(setup.clean_bars, setup.model_input_features, contract, env_params, split)
        overrides = {"stop_atr_multiple": _NO_STOP} if agent == "buy_and_hold" else {}
        env = backtest_vec_env(market, env_params, **overrides)
        if agent == "oracle":
            directions = split_directions(setup.clean_bars, setup.model_input_features, split, setup.planted_edge)
            return run_backtest(env, oracle_policy(env, directions), trace=True)
        policy: Callable = {"flat": flat_policy, "buy_and_hold": buy_and_hold_policy,
                            "random": random_policy(setup.random_seed)}.get(agent) or sb3_policy(phase2)
        return run_backtest(env, policy, trace=True)
    frames = (setup.clean_bars, setup.model_input_features, setup.bar_features, contract, env_params)
    config = setup.phase3
    if agent == "llm_only":  # asked at every bar
        config = dataclasses.replace(config, queries=QueryScheduleConfig(1, config.queries.confidence_threshold, 0))
    advisor = None if agent == "phase3_rl_only" else setup.advisor
    n_envs = backtest_env_count(len(split_days(setup.model_input_features, split)))
    env = make_advised_env(*frames, split, config, advisor=advisor, worker=None, n_envs=n_envs,
                           episode_mode="full_session", mode="cached")
    if agent == "llm_only":
        return run_backtest(env, llm_only_policy, trace=True)
    env.attach_policy(phase3.policy)
    phase3.policy.llm_weight_override = 0.0 if agent == "phase3_rl_only" else None
    try:
        return run_backtest(env, sb3_policy(phase3), trace=True)
    finally:
        phase3.policy.llm_weight_override = None


TABLE_COLUMNS = ("net_pnl", "mean_daily_pnl", "sharpe_daily", "sortino_daily", "psr", "dsr", "max_drawdown",
                 "max_drawdown_pct", "win_rate", "profit_factor", "average_win", "average_loss", "trades_per_day",
                 "mean_episode_length", "apex_breaches", "apex_pass_probability", "apex_breach_probability",
                 "apex_median_days_to_pass")


def backtest_metrics(episodes: pd.DataFrame, steps: pd.DataFrame, starting_balance: float,
                     regimes: Mapping[str, str],
                     apex: tuple[ApexRules, ApexEstimation] | None = None) -> dict[str, Any]:
    """The metrics of one backtest (definitions in :mod:`hybrid_trader.evaluation.metrics` and
    ``docs/evaluation.md``):

    * ``net_pnl``: total net P&L over the sessions ($, after all costs);
    * ``mean_daily_pnl``: its mean per session;
    * ``sharpe_daily``, ``sortino_daily``, ``psr`` (P[true Sharpe > 0]): of the daily returns
      (session net P&L / starting balance);
    * ``max_drawdown`` ($) and ``max_drawdown_pct``: of the equity path across the sessions,
      bar by bar (each session's P&L added to the previous sessions' total);
    * ``win_rate``, ``profit_factor``, ``average_win``, ``average_loss``: of closed trades;
    * ``trades_per_day``: positions opened per session;
    * ``mean_episode_length``: bars per session episode;
    * ``apex_breaches``: sessions ended by the trailing-drawdown rule;
    * ``end_reasons``: sessions per end reason;
    * ``by_regime``: mean daily net P&L and sessions per regime label of the split;
    * with ``apex`` (rules and estimation), ``apex_<figure>`` for every figure of
      :func:`~hybrid_trader.evaluation.apex.estimate_apex`: the chance to pass, breach or expire
      an Apex evaluation that replays these sessions, the median sessions to a pass, and their
      intervals (``_low``, ``_high``).
    """
    daily = episodes["net_pnl"].to_numpy(dtype=float) / starting_balance
    previous = np.concatenate([[0.0], np.cumsum(episodes["net_pnl"].to_numpy(dtype=float))[:-1]])
    offset = dict(zip(episodes["session_date"], previous))
    path = starting_balance + steps["session_date"].map(offset).to_numpy() + (steps["equity"] - starting_balance)
    drawdown, drawdown_pct = max_drawdown(np.concatenate([[starting_balance], path.to_numpy(dtype=float)]))
    trades = trade_statistics(steps["trade_pnl"].dropna().to_numpy())
    by_regime = (episodes.assign(regime=episodes["session_date"].map(lambda day: regimes.get(day, "unknown")))
                 .groupby("regime")["net_pnl"].agg(["mean", "size"]))
    apex_part = {} if apex is None else {f"apex_{k}": v for k, v in apex_figures(episodes, steps, *apex).items()}
    return {
        "sessions": int(len(episodes)),
        "net_pnl": float(episodes["net_pnl"].sum()),
        "mean_daily_pnl": float(episodes["net_pnl"].mean()),
        "sharpe_daily": sharpe_ratio(daily),
        "sortino_daily": sortino_ratio(daily),
        "psr": probabilistic_sharpe_ratio(daily),
        "max_drawdown": drawdown,
        "max_drawdown_pct": drawdown_pct,
        "win_rate": trades["win_rate"],
        "profit_factor": trades["profit_factor"],
        "average_win": trades["average_win"],
        "average_loss": trades["average_loss"],
        "closed_trades": trades["trades"],
        "trades_per_day": float(episodes["trades"].mean()),
        "mean_episode_length": float(episodes["steps"].mean()),
        "apex_breaches": int((episodes["end_reason"] == "drawdown_breach").sum()),
        "end_reasons": {k: int(v) for k, v in episodes["end_reason"].value_counts().sort_index().items()},
        "by_regime": {regime: {"mean_daily_pnl": float(row["mean"]), "sessions": int(row["size"])}
                      for regime, row in by_regime.iterrows()},
        "daily_returns": [float(x) for x in daily],
        **apex_part,
    }


def unique_trials(*groups: Iterable[tuple[str, float] | float]) -> list[tuple[str, float]]:
    """The trials of ``groups`` counted once: ``(name, daily Sharpe ratio)`` pairs (a bare number is a
    trial without a name) with a finite Sharpe ratio, one per name and Sharpe ratio (to 12
    significant digits), the first kept. The same configuration with the same Sharpe ratio on the same
    days is the same strategy: a resumed run, metrics logged twice or a table recomputed from the
    same stored backtests is one trial."""
    seen: dict[tuple[str, float], tuple[str, float]] = {}
    for group in groups:
        for item in group:
            name, sharpe = ("", item) if isinstance(item, (int, float)) else item
            if math.isfinite(sharpe):
                seen.setdefault((str(name), float(f"{float(sharpe):.12g}")), (str(name), float(sharpe)))
    return list(seen.values())


def add_deflated_sharpe(results: list[dict[str, Any]],
                        earlier_trials: Mapping[str, Iterable[tuple[str, float]]] | None = None,
                        extra_trials: Mapping[str, Iterable[tuple[str, float] | float]] | None = None) -> None:
    """Set each result's deflated Sharpe ratio, against one expected maximum Sharpe ratio per split.

    The trials of a split are the strategy configurations tried, with their daily Sharpe ratios on
    the split's days at its base cost level (the lowest cost multiple, 1x by default): this run's
    agents that are not :data:`BASELINES` (the learned policies and the advisor alone), earlier
    runs' (``earlier_trials``, split -> ``(agent, Sharpe)``, e.g. from
    :func:`hybrid_trader.evaluation.report.earlier_trials`) and a caller's (``extra_trials``, split
    -> ``(configuration, Sharpe)`` or bare Sharpe ratios, e.g. an experiment's configurations), each
    counted once (:func:`unique_trials`). Their expected maximum ``SR0``
    (:func:`~hybrid_trader.evaluation.metrics.expected_max_sharpe`) is the split's benchmark at
    every cost level: higher costs stress the same strategies, they are not more trials. Baselines
    get a DSR against the same ``SR0`` but are not counted.

    Sets ``dsr`` (PSR of the result's daily returns against ``SR0``), ``dsr_sr0``, ``dsr_trials``
    (the split's ``N``) and ``dsr_is_trial`` (whether the result is one of them).
    """
    earlier_trials, extra_trials = earlier_trials or {}, extra_trials or {}
    for split in dict.fromkeys(r["split"] for r in results):
        members = [r for r in results if r["split"] == split]
        base = min(r["cost_multiple"] for r in members)
        this_run = [(r["agent"], r["sharpe_daily"]) for r in members
                    if r["cost_multiple"] == base and r["agent"] not in BASELINES]
        trials = unique_trials(this_run, earlier_trials.get(split, ()), extra_trials.get(split, ()))
        sr0 = expected_max_sharpe(sharpe for _, sharpe in trials)
        for member in members:
            member["dsr"] = probabilistic_sharpe_ratio(member["daily_returns"], sr0) if math.isfinite(sr0) \
                else float("nan")
            member["dsr_sr0"], member["dsr_trials"] = sr0, len(trials)
            member["dsr_is_trial"] = member["agent"] not in BASELINES
