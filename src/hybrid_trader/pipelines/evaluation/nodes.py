"""Nodes of ``evaluation``: thin wrappers over :mod:`hybrid_trader.evaluation`."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from hybrid_trader.advisor.advisor import Advisor
from hybrid_trader.advisor.cache import AdviceCache
from hybrid_trader.advisor.finetune import with_adapter
from hybrid_trader.advisor.prescore import prescore_days
from hybrid_trader.agents.phase3 import Phase3Config
from hybrid_trader.evaluation.apex import apex_settings
from hybrid_trader.evaluation.backtests import BacktestSetup, add_deflated_sharpe, backtest_metrics, run_agent
from hybrid_trader.evaluation.learning import learning_markdown, learning_report, split_directions
from hybrid_trader.evaluation.plots import (
    action_panels, end_reason_panels, equity_panels, to_matplotlib, to_plotly, training_panels,
)
from hybrid_trader.evaluation.report import comparison_markdown, earlier_trials, mlflow_metrics
from hybrid_trader.market_data.synthetic import PlantedEdge, check_planted_labels
from hybrid_trader.pipelines.phase2.nodes import contract_from_spec

logger = logging.getLogger(__name__)


def backtest_agents(
    phase2_best_policy: Any,
    phase3_policy: Any,
    clean_bars: pd.DataFrame,
    model_input_features: pd.DataFrame,
    bar_features: pd.DataFrame,
    market_spec: dict[str, Any],
    advice_cache: AdviceCache,
    advisor_adapter: dict[str, Any],
    synthetic_day_regimes: pd.DataFrame,
    environment_params: dict[str, Any],
    advisor_params: dict[str, Any],
    phase3_params: dict[str, Any],
    evaluation_params: dict[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every agent on every evaluation split at every cost level (and the oracle on a planted
    market, after checking that the data was generated with that edge).

    Returns:
        One row per session (``agent``, ``split``, ``cost_multiple`` and the backtest's
        columns) and one row per step (the same keys, ``action``, ``equity``, ``trade_pnl``).
    """
    edge = PlantedEdge.from_params(evaluation_params.get("planted_edge"))
    check_planted_labels(edge, synthetic_day_regimes["regime"])  # before any work: the oracle must fit the data
    advisor = Advisor.from_params(with_adapter(advisor_params, advisor_adapter), cache=advice_cache)
    splits = list(evaluation_params["splits"])
    if evaluation_params["prescore_advice"]:  # the advisor's answers for these days' flat prompts
        days = model_input_features.loc[model_input_features["split"].isin(splits), "session_date"].unique()
        counts = prescore_days(advisor, bar_features, days, environment_params["engine"]["drawdown_limit"],
                               advisor_params["prescore"])
        logger.info("Evaluation: %d new flat prompts of %s days scored in %.1f s", counts["scored"],
                    "/".join(splits), counts["seconds"])
    setup = BacktestSetup(clean_bars, model_input_features, bar_features, contract_from_spec(market_spec),
                          environment_params, Phase3Config.from_params(phase3_params), advisor,
                          int(evaluation_params["random_seed"]), edge)
    agents = list(evaluation_params["agents"])
    if edge is not None and "oracle" not in agents:  # a planted market is always judged against its oracle
        agents.insert(0, "oracle")
    episodes, steps = [], []
    try:
        for split in splits:
            for cost in evaluation_params["cost_multiples"]:
                for agent in agents:
                    session_rows, step_rows = run_agent(agent, split, float(cost), setup, phase2_best_policy,
                                                        phase3_policy)
                    keys = {"agent": agent, "split": split, "cost_multiple": float(cost)}
                    episodes.append(session_rows.assign(**keys))
                    steps.append(step_rows.assign(**keys))
                    logger.info("Backtest %-15s %-10s %gx: net P&L $%10.2f over %d sessions", agent, split, cost,
                                session_rows["net_pnl"].sum(), len(session_rows))
    finally:
        advisor.close()
    return pd.concat(episodes, ignore_index=True), pd.concat(steps, ignore_index=True)


def compute_backtest_metrics(
    backtest_episodes: pd.DataFrame, backtest_steps: pd.DataFrame, day_splits: pd.DataFrame,
    environment_params: dict[str, Any], evaluation_params: dict[str, Any],
) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """The comparison table (JSON rows and Markdown), with each row's chance to pass an Apex
    evaluation (``evaluation.apex_evaluation``), and its figures as MLflow metrics."""
    start = float(environment_params["engine"]["starting_balance"])
    apex = apex_settings(evaluation_params.get("apex_evaluation"), environment_params["engine"])
    regimes = dict(zip(day_splits["session_date"].astype(str).str[:10], day_splits["regime"]))
    rows = []
    keys = ["agent", "split", "cost_multiple"]
    step_groups = dict(list(backtest_steps.groupby(keys, sort=False)))
    for key, episodes in backtest_episodes.groupby(keys, sort=False):
        rows.append({**dict(zip(keys, key)), **backtest_metrics(episodes, step_groups[key], start, regimes, apex)})
    base_cost = min(r["cost_multiple"] for r in rows)  # one SR0 per split, from the trials at this cost
    add_deflated_sharpe(rows, {split: earlier_trials(split, base_cost) for split in {r["split"] for r in rows}})
    metrics = mlflow_metrics(rows)
    table = comparison_markdown(rows)
    logger.info("\n%s", table)
    for row in rows:
        row.pop("daily_returns")
    return {"rows": rows}, table, metrics


def write_learning_report(backtest_episodes: pd.DataFrame, backtest_steps: pd.DataFrame, clean_bars: pd.DataFrame,
                          model_input_features: pd.DataFrame, evaluation_params: dict[str, Any],
                          environment_params: dict[str, Any]) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """Each learned agent against the planted edge's oracle (:mod:`hybrid_trader.evaluation.learning`),
    as JSON, Markdown and MLflow metrics (``<split>/<agent>/<figure>``); a report that says
    so when the market is not planted."""
    edge = PlantedEdge.from_params(evaluation_params.get("planted_edge"))
    directions = {} if edge is None else {
        split: split_directions(clean_bars, model_input_features, split, edge)
        for split in backtest_episodes["split"].unique()}
    report = learning_report(backtest_episodes, backtest_steps, directions, edge,
                             exit_action=environment_params["engine"].get("exit_action", False))
    names = ("direction_agreement", "direction_agreement_se", "oracle_capture", "oracle_capture_se",
             "mean_daily_pnl", "mean_daily_pnl_se", "p_value_positive")
    metrics = {f"{split}/{agent}/{name}": {"value": float(figures[name]), "step": 0}
               for split, agents in report["splits"].items() for agent, figures in agents.items()
               for name in names if name in figures and pd.notna(figures[name])}
    markdown = learning_markdown(report)
    logger.info("\n%s", markdown)
    return report, markdown, metrics


def plot_evaluation(backtest_episodes: pd.DataFrame, backtest_steps: pd.DataFrame,
                    phase3_training_summary: dict[str, Any], environment_params: dict[str, Any]):
    """Equity and drawdown, actions and end reasons per agent on test days; Phase 3's training
    curves. Each as a Plotly figure and a matplotlib figure (PNG)."""
    start = float(environment_params["engine"]["starting_balance"])
    split = "test" if (backtest_episodes["split"] == "test").any() else str(backtest_episodes["split"].iloc[0])
    figures = [
        (equity_panels(backtest_steps, backtest_episodes, start, split), "Equity and drawdown per agent"),
        (action_panels(backtest_steps, split), "Action distribution per agent"),
        (training_panels(phase3_training_summary), "Phase 3 training"),
        (end_reason_panels(backtest_episodes, split), "Episode-end reasons per agent"),
    ]
    plotly_figures = [to_plotly(panels, title) for panels, title in figures]
    png_figures = [to_matplotlib(panels, title) for panels, title in figures]
    return (*plotly_figures, *png_figures)
