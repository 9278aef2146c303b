"""The comparison table: one row per agent, one column per metric, per split and cost level."""

from __future__ import annotations

import math
from typing import Any, Sequence

import mlflow
import pandas as pd

from hybrid_trader.evaluation.backtests import TABLE_COLUMNS

__all__ = ["comparison_markdown", "earlier_trial_sharpes", "metric_key"]

_MONEY = {"net_pnl", "mean_daily_pnl", "max_drawdown", "average_win", "average_loss"}
_PERCENT = {"max_drawdown_pct", "win_rate", "psr", "dsr"}


def metric_key(split: str, cost_multiple: float, agent: str, name: str) -> str:
    """The metric name of one figure, e.g. ``test_1x/hybrid/sharpe_daily`` (MLflow shows it after the
    dataset's name: ``backtest_mlflow_metrics.test_1x/hybrid/sharpe_daily``)."""
    return f"{split}_{cost_multiple:g}x/{agent}/{name}"


def _cell(name: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    if name in _MONEY:
        return f"{value:,.0f}"
    if name in _PERCENT:
        return f"{100 * value:.1f}%"
    if isinstance(value, int):
        return str(value)
    return f"{value:.3g}"


def comparison_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown tables, one per (split, costs), agents as rows and :data:`TABLE_COLUMNS` as columns."""
    lines = ["# Backtest comparison", "",
             "Deterministic, masked backtests; money in $ after costs; definitions in docs/evaluation.md.", ""]
    frame = pd.DataFrame(rows)
    for (split, cost), group in frame.groupby(["split", "cost_multiple"], sort=False):
        lines += [f"## {split} days, {cost:g}x costs ({int(group['sessions'].iloc[0])} sessions)", "",
                  "| agent | " + " | ".join(TABLE_COLUMNS) + " |", "|---" * (len(TABLE_COLUMNS) + 1) + "|"]
        for _, row in group.iterrows():
            lines.append(f"| {row['agent']} | " + " | ".join(_cell(c, row[c]) for c in TABLE_COLUMNS) + " |")
        lines.append("")
    return "\n".join(lines)


def earlier_trial_sharpes(split: str = "test", cost_multiple: float = 1.0) -> list[float]:
    """Daily Sharpe ratios logged by earlier runs of this experiment (every agent but a planted
    market's oracle, which is not a trial), for the deflated Sharpe ratio; empty without an
    active MLflow run."""
    run = mlflow.active_run()
    if run is None:
        return []
    found = mlflow.search_runs(experiment_ids=[run.info.experiment_id], output_format="pandas")
    if found.empty:
        return []
    found = found[found["run_id"] != run.info.run_id]
    # Logged as "<dataset name>.<split>_<cost>x/<agent>/sharpe_daily" (kedro-mlflow adds the prefix).
    part, suffix = f"{split}_{cost_multiple:g}x/", "/sharpe_daily"
    columns = [c for c in found.columns if c.startswith("metrics.") and c.endswith(suffix)
               and c.removeprefix("metrics.").split(".")[-1].startswith(part) and "/oracle/" not in c]
    values = found[columns].to_numpy().ravel() if columns else []
    return [float(v) for v in values if pd.notna(v)]
