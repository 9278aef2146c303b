"""Evidence that the agents learn: the oracle of a planted market and the learning report.

On a planted market (:class:`hybrid_trader.market_data.synthetic.PlantedEdge`) the
optimal side to hold at every bar is known (:func:`oracle_directions`). The
``oracle`` agent trades it under the same engine, masks and costs as every
other agent: when flat it enters on the oracle's side; in a position against
that side it exits (``EXIT``, where the engine offers it); otherwise it holds.
Its stop, target, flat deadline and the drawdown rule apply as to any agent.

Figures of a learned agent on held-out sessions (:func:`learning_figures`):

* ``direction_agreement``: the share of the agent's entries whose side equals
  the oracle's side at the decision bar, among entries where the oracle has a
  side (``entries_with_oracle_side``; entries where it has none are counted in
  ``entries`` only);
* ``oracle_capture``: the agent's total net P&L over the sessions divided by
  the oracle's total net P&L over the same sessions (at the same costs);
* ``mean_daily_pnl`` and ``mean_daily_pnl_se`` (standard deviation / sqrt(n)),
  ``p_value_positive``: one-sided t-test of "mean daily net P&L > 0";
  ``significantly_positive``: that p-value is below 0.05;
* each ratio's ``_se`` is the standard deviation, and ``_lower95`` the 5th
  percentile, of its session bootstrap: sessions resampled with replacement
  (``bootstrap_draws`` draws, seeded), because entries within a session are
  not independent.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd
import torch
from scipy import stats

from hybrid_trader.agents.backtest import Policy, backtest_vec_env, run_backtest, sb3_policy
from hybrid_trader.agents.phase2 import PPOConfig, train_phase2
from hybrid_trader.env.actions import Action
from hybrid_trader.env.factory import make_vec_env, market_for_split, split_days
from hybrid_trader.features.bar_features import compute_bar_features
from hybrid_trader.market_data.clean import CleaningConfig, ingest_bars
from hybrid_trader.market_data.synthetic import (
    PlantedEdge, SyntheticMarketConfig, generate_synthetic_bars, oracle_directions,
)
from hybrid_trader.markets import resolve_contract
from hybrid_trader.pipelines.data_split.nodes import fit_feature_scaler, scale_features

__all__ = ["oracle_policy", "split_directions", "learning_figures", "learning_report", "learning_markdown",
           "planted_frames", "phase2_learning_run", "BOOTSTRAP_DRAWS"]

BOOTSTRAP_DRAWS = 2000
_EXIT = int(Action.EXIT)


def split_directions(clean_bars: pd.DataFrame, model_input_features: pd.DataFrame, split: str,
                     edge: PlantedEdge) -> np.ndarray:
    """The oracle's side at every row of the split's market arrays (the rows that
    :func:`hybrid_trader.env.factory.market_for_split` keeps, in the same order)."""
    days = pd.to_datetime(pd.Series(split_days(model_input_features, split)))
    keep = clean_bars["session_date"].isin(days).to_numpy()
    return oracle_directions(clean_bars, edge)[keep]


def oracle_policy(env: Any, directions: np.ndarray) -> Policy:
    """The oracle agent on ``env`` (one backtest environment) given its market's ``directions``."""
    engine = env.engine
    if len(directions) != engine.market.n_bars:
        raise ValueError(f"{len(directions)} oracle directions for {engine.market.n_bars} market rows")

    def act(obs: np.ndarray, masks: np.ndarray) -> np.ndarray:
        side = directions[engine.t]
        held = engine.side
        actions = np.full(len(masks), int(Action.HOLD), dtype=np.int64)
        enter = np.where(side > 0, int(Action.BUY), int(Action.SELL))
        can_enter = (held == 0) & (side != 0) & masks[np.arange(len(masks)), enter]
        actions[can_enter] = enter[can_enter]
        against = (held != 0) & (side * held < 0) & masks[:, _EXIT]
        actions[against] = _EXIT
        return actions

    return act


def _bootstrap(values: Iterable[np.ndarray], statistic, draws: int, seed: int) -> np.ndarray:
    """``draws`` values of ``statistic`` on session-resampled copies of ``values`` (per-session arrays)."""
    arrays = [np.asarray(v, dtype=float) for v in values]
    n = len(arrays[0])
    picks = np.random.default_rng(seed).integers(0, n, size=(draws, n))
    return np.array([statistic(*(a[p] for a in arrays)) for p in picks])


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> float:
    total = denominator.sum()
    return float(numerator.sum() / total) if total != 0 else float("nan")


def _interval(point: float, draws: np.ndarray) -> dict[str, float]:
    finite = draws[np.isfinite(draws)]
    if not math.isfinite(point) or len(finite) < 2:
        return {"value": point, "se": float("nan"), "lower95": float("nan")}
    return {"value": point, "se": float(finite.std(ddof=1)), "lower95": float(np.quantile(finite, 0.05))}


def learning_figures(agent_episodes: pd.DataFrame, agent_steps: pd.DataFrame, directions: np.ndarray,
                     oracle_episodes: pd.DataFrame | None, draws: int = BOOTSTRAP_DRAWS,
                     seed: int = 0) -> dict[str, Any]:
    """One agent's learning figures on one split (definitions in the module docstring).

    Args:
        agent_episodes: The agent's backtest, one row per session (``session_date``, ``net_pnl``).
        agent_steps: Its step trace (``session_date``, ``row``, ``action``).
        directions: The oracle's side at every row of the split's market arrays.
        oracle_episodes: The oracle's backtest of the same sessions; ``None`` on the no-edge control.
        draws, seed: Session bootstrap draws and their seed.
    """
    sessions = agent_episodes["session_date"].astype(str).str[:10].to_numpy()
    pnl = agent_episodes["net_pnl"].to_numpy(dtype=float)
    n = len(pnl)
    entries = agent_steps[agent_steps["action"].isin([int(Action.BUY), int(Action.SELL)])]
    entry_side = np.where(entries["action"].to_numpy() == int(Action.BUY), 1, -1)
    oracle_side = directions[entries["row"].to_numpy(dtype=np.int64)]
    scored = oracle_side != 0
    per_session = pd.DataFrame({"session": entries["session_date"].astype(str).str[:10].to_numpy(),
                                "agree": (entry_side == oracle_side) & scored, "scored": scored})
    counts = per_session.groupby("session")[["agree", "scored"]].sum().reindex(sessions, fill_value=0)
    agree, scored_n = counts["agree"].to_numpy(dtype=float), counts["scored"].to_numpy(dtype=float)
    se = float(pnl.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    mean = float(pnl.mean()) if n else float("nan")
    if n > 1 and se > 0:
        p_value = float(stats.t.sf(mean / se, df=n - 1))
    else:
        p_value = float("nan") if n < 2 else (0.0 if mean > 0 else 1.0)
    figures: dict[str, Any] = {
        "sessions": int(n),
        "entries": int(len(entries)),
        "entries_with_oracle_side": int(scored_n.sum()),
        "net_pnl": float(pnl.sum()),
        "mean_daily_pnl": mean,
        "mean_daily_pnl_se": se,
        "p_value_positive": p_value,
        "significantly_positive": bool(p_value < 0.05),
    }
    agreement = _interval(_ratio(agree, scored_n), _bootstrap([agree, scored_n], _ratio, draws, seed))
    figures.update({f"direction_agreement{'' if k == 'value' else '_' + k}": v for k, v in agreement.items()})
    if oracle_episodes is not None:
        oracle = oracle_episodes.assign(key=oracle_episodes["session_date"].astype(str).str[:10]).set_index("key")
        if set(sessions) - set(oracle.index):
            raise ValueError("the oracle's backtest lacks sessions the agent played")
        oracle_pnl = oracle.loc[sessions, "net_pnl"].to_numpy(dtype=float)
        capture = _interval(_ratio(pnl, oracle_pnl), _bootstrap([pnl, oracle_pnl], _ratio, draws, seed))
        figures.update({f"oracle_capture{'' if k == 'value' else '_' + k}": v for k, v in capture.items()})
        figures["oracle_net_pnl"] = float(oracle_pnl.sum())
    return figures


def learning_report(backtest_episodes: pd.DataFrame, backtest_steps: pd.DataFrame,
                    directions: Mapping[str, np.ndarray], edge: PlantedEdge | None,
                    draws: int = BOOTSTRAP_DRAWS, seed: int = 0, exit_action: bool = False) -> dict[str, Any]:
    """The learning report: :func:`learning_figures` of every agent, per split at 1x costs. The
    oracle is listed too, as the reference (agreement and capture 1 by construction).

    Args:
        backtest_episodes, backtest_steps: The evaluation's backtests (``agent``, ``split``,
            ``cost_multiple`` columns).
        directions: The oracle's sides per split (see :func:`split_directions`).
        edge: The planted edge; ``None`` when the market is not planted (the report says so).
        exit_action: Whether the engine offered EXIT (recorded: without it the oracle cannot
            leave a position against its side, which lowers its P&L and so raises every capture).
    """
    if edge is None:
        return {"planted": None, "note": "the market is not planted: no edge is known, so there is no oracle",
                "splits": {}}
    report: dict[str, Any] = {"planted": {"kind": edge.kind, "points_per_minute": edge.points_per_minute,
                                          "turn": edge.turn},
                              "bootstrap_draws": draws, "control": edge.kind == "none",
                              "exit_action": bool(exit_action), "splits": {}}
    at_cost = backtest_episodes[backtest_episodes["cost_multiple"] == 1.0]
    step_groups = dict(list(backtest_steps[backtest_steps["cost_multiple"] == 1.0].groupby(["agent", "split"])))
    for split, episodes in at_cost.groupby("split", sort=False):
        oracle = episodes[episodes["agent"] == "oracle"]
        oracle = None if edge.kind == "none" or oracle.empty else oracle
        agents = {}
        for agent, rows in episodes.groupby("agent", sort=False):
            agents[agent] = learning_figures(rows, step_groups[(agent, split)], directions[split], oracle, draws,
                                             seed)
        report["splits"][split] = agents
    return report


def _cell(value: Any, se: Any = None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    text = f"{value:.3f}" if isinstance(value, float) else str(value)
    if se is not None and isinstance(se, float) and math.isfinite(se):
        text += f" ± {se:.3f}"
    return text


def learning_markdown(report: dict[str, Any]) -> str:
    """The learning report as Markdown tables (one per split)."""
    if report["planted"] is None:
        return f"# Learning report\n\n{report['note'][0].upper() + report['note'][1:]}.\n"
    edge = report["planted"]
    lines = ["# Learning report", "",
             f"Planted edge: `{edge['kind']}`, {edge['points_per_minute']} point(s) a minute"
             + (f", turning at {edge['turn']}" if edge["kind"] == "time_of_day" else "") + ".",
             "EXIT action " + ("on: the oracle exits a position against its side." if report["exit_action"] else
                               "off: the oracle, like every agent, leaves a position only by its stop, target "
                               "or the flat deadline."),
             "Held-out sessions at 1x costs; ± is a standard error (session bootstrap for the ratios);",
             "lower95 is the bootstrap's 5th percentile. Definitions: docs/evaluation.md.", ""]
    for split, agents in report["splits"].items():
        lines += [f"## {split}", "",
                  "| agent | sessions | entries | direction agreement | lower95 | oracle capture | lower95 "
                  "| mean daily P&L ($) | p(mean > 0) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for agent, f in agents.items():
            lines.append(
                f"| {agent} | {f['sessions']} | {f['entries']} "
                f"| {_cell(f['direction_agreement'], f['direction_agreement_se'])} "
                f"| {_cell(f['direction_agreement_lower95'])} "
                f"| {_cell(f.get('oracle_capture'), f.get('oracle_capture_se'))} "
                f"| {_cell(f.get('oracle_capture_lower95'))} "
                f"| {_cell(f['mean_daily_pnl'], f['mean_daily_pnl_se'])} | {_cell(f['p_value_positive'])} |")
        lines.append("")
    return "\n".join(lines)


def planted_frames(edge: PlantedEdge | None, n_days: int, test_days: int, seed: int = 7,
                   start_date: str = "2024-01-02") -> tuple[pd.DataFrame, pd.DataFrame]:
    """A small planted market ready for training, as the pipeline would prepare it.

    The synthetic market with ``edge`` (``None``: the default, unplanted market) is ingested,
    its features computed, the last ``test_days`` sessions held out as ``test`` and the others
    made ``train``; the scaler is fitted on the train days only.

    Returns:
        Clean bars and the scaled features with their ``split`` column (the pipeline's
        ``clean_bars`` and ``model_input_features``).
    """
    if not 0 < test_days < n_days:
        raise ValueError(f"test_days must be in (0, n_days), got {test_days} of {n_days}")
    raw = generate_synthetic_bars(SyntheticMarketConfig(n_days=n_days, seed=seed, start_date=start_date,
                                                        planted=edge))
    result = ingest_bars(raw, CleaningConfig(), source="planted synthetic market")
    features = compute_bar_features(result.bars, result.sessions)
    days = np.sort(features["session_date"].unique())
    day_splits = pd.DataFrame({"session_date": days, "split": "train"})
    day_splits.loc[len(days) - test_days:, "split"] = "test"
    scaler = fit_feature_scaler(features, day_splits, {"clip": 5.0})  # the pipeline's own fit: train days only
    return result.bars, scale_features(features, day_splits, scaler)


def phase2_learning_run(edge: PlantedEdge | None, ppo_params: dict[str, Any], environment_params: dict[str, Any],
                        work_dir: Any, *, market_params: dict[str, Any], sessions: int = 110, held_out: int = 50,
                        market_seed: int = 3) -> dict[str, Any]:
    """Train Phase 2 on a small synthetic market's train days and backtest it on the held-out days.

    The market is :func:`planted_frames` (``edge`` ``None``: the default, unplanted market);
    training uses ``ppo_params`` (a :class:`hybrid_trader.agents.phase2.PPOConfig`'s fields)
    without evaluation or checkpoints; the final policy is backtested. The traded contract is
    the one ``market_params`` (the ``market`` parameters) select.

    Returns:
        ``episodes`` (the held-out backtest, one row per session), ``steps`` (its trace) and,
        on a planted market, ``figures`` (:func:`learning_figures` against the oracle; ``None``
        otherwise) and ``oracle`` (the oracle's backtest, ``None`` on the control).
    """
    config = PPOConfig(**{**ppo_params, "eval_every_steps": 10 * ppo_params["total_timesteps"],
                          "checkpoint_every_steps": 10 * ppo_params["total_timesteps"]})
    torch.set_num_threads(config.torch_threads)
    bars, features = planted_frames(edge, sessions, held_out, seed=market_seed)
    train, test = (market_for_split(bars, features, resolve_contract(market_params), environment_params, split)
                   for split in ("train", "test"))

    def backtest_env():
        return backtest_vec_env(test, environment_params)

    train_env = make_vec_env(train, environment_params, n_envs=config.n_envs, phase=2, seed=config.seed)
    model = train_phase2(config, train_env, backtest_env(), 1, work_dir, progress_bar=False).model
    episodes, steps = run_backtest(backtest_env(), sb3_policy(model), trace=True)
    result: dict[str, Any] = {"episodes": episodes, "steps": steps, "figures": None, "oracle": None}
    if edge is not None:
        directions = split_directions(bars, features, "test", edge)
        if edge.kind != "none":
            env = backtest_env()
            result["oracle"] = run_backtest(env, oracle_policy(env, directions))
        result["figures"] = learning_figures(episodes, steps, directions, result["oracle"])
    return result
