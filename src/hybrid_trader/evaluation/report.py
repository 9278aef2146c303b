"""The comparison table: one row per agent, one column per metric, per split and cost level."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import mlflow
import pandas as pd

from hybrid_trader.evaluation.backtests import BASELINES, TABLE_COLUMNS, unique_trials

__all__ = ["comparison_markdown", "earlier_trials", "metric_key", "MLFLOW_FIGURES",
           "mlflow_metrics"]

_MONEY = {"net_pnl", "mean_daily_pnl", "max_drawdown", "average_win", "average_loss"}
_PERCENT = {"max_drawdown_pct", "win_rate", "psr", "dsr", "apex_pass_probability", "apex_breach_probability"}
_WITH_INTERVAL = {"apex_pass_probability", "apex_breach_probability", "apex_median_days_to_pass"}
# The figures of a comparison row logged as MLflow metrics (metric_key names them).
MLFLOW_FIGURES = ("net_pnl", "sharpe_daily", "sortino_daily", "max_drawdown", "psr", "dsr", "dsr_sr0", "win_rate",
                  "profit_factor", "trades_per_day", "apex_pass_probability", "apex_pass_probability_low",
                  "apex_pass_probability_high", "apex_breach_probability", "apex_breach_probability_low",
                  "apex_breach_probability_high", "apex_expiry_probability", "apex_median_days_to_pass",
                  "apex_median_days_to_pass_low", "apex_median_days_to_pass_high")


def metric_key(split: str, cost_multiple: float, agent: str, name: str) -> str:
    """The metric name of one figure, e.g. ``test_1x/hybrid/sharpe_daily`` (MLflow shows it after the
    dataset's name: ``backtest_mlflow_metrics.test_1x/hybrid/sharpe_daily``)."""
    return f"{split}_{cost_multiple:g}x/{agent}/{name}"


def _value(name: str, value: Any) -> str:
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


def _cell(name: str, row: Mapping[str, Any]) -> str:
    """A row's figure; an Apex figure with its interval in brackets, e.g. ``31.0% (11.2-54.1%)``."""
    text = _value(name, row.get(name))
    low, high = row.get(f"{name}_low"), row.get(f"{name}_high")
    if name in _WITH_INTERVAL and text != "n/a" and low is not None and not math.isnan(low):
        text += f" ({_value(name, low).rstrip('%')}-{_value(name, high)})"
    return text


def comparison_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown tables, one per (split, costs), agents as rows and :data:`TABLE_COLUMNS` as columns."""
    lines = ["# Backtest comparison", "",
             "Deterministic, masked backtests; money in $ after costs; definitions in docs/evaluation.md.",
             "apex_*: simulated Apex evaluations replaying the sessions, with the interval over resamples "
             "of the sessions in brackets.", ""]
    frame = pd.DataFrame(rows)
    for (split, cost), group in frame.groupby(["split", "cost_multiple"], sort=False):
        lines += [f"## {split} days, {cost:g}x costs ({int(group['sessions'].iloc[0])} sessions)", "",
                  "| agent | " + " | ".join(TABLE_COLUMNS) + " |", "|---" * (len(TABLE_COLUMNS) + 1) + "|"]
        for row in group.to_dict("records"):
            lines.append(f"| {row['agent']} | " + " | ".join(_cell(c, row) for c in TABLE_COLUMNS) + " |")
        lines.append("")
    return "\n".join(lines)


def mlflow_metrics(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """The rows' :data:`MLFLOW_FIGURES` as MLflow metrics (finite numbers only), named by :func:`metric_key`."""
    return {metric_key(r["split"], r["cost_multiple"], r["agent"], name): {"value": float(r[name]), "step": 0}
            for r in rows for name in MLFLOW_FIGURES
            if isinstance(r.get(name), (int, float)) and math.isfinite(float(r[name]))}


def earlier_trials(split: str = "test", cost_multiple: float = 1.0) -> list[tuple[str, float]]:
    """The trials that earlier runs of this MLflow experiment logged: ``(agent or configuration,
    daily Sharpe ratio)`` on ``split`` at ``cost_multiple``, from metrics named
    ``[<dataset>.]<split>_<cost>x/<name>/sharpe_daily`` (the comparison table's, and an experiment
    trial's), without :data:`~hybrid_trader.evaluation.backtests.BASELINES` and counted once
    (:func:`~hybrid_trader.evaluation.backtests.unique_trials`: a run holds each metric's last value,
    so metrics logged twice or a resumed run give one; the same name and value in two runs, e.g. a
    table recomputed from the same backtests, is one). Empty without an active MLflow run; the
    active run is not earlier."""
    run = mlflow.active_run()
    if run is None:
        return []
    found = mlflow.search_runs(experiment_ids=[run.info.experiment_id], output_format="pandas")
    if found.empty:
        return []
    found = found[found["run_id"] != run.info.run_id]
    part, suffix = f"{split}_{cost_multiple:g}x/", "/sharpe_daily"
    pairs = []
    for column in found.columns:
        key = column.removeprefix("metrics.")
        if key == column or not key.endswith(suffix):
            continue
        # kedro-mlflow prefixes the dataset's name and a dot; a configuration's name may hold dots too.
        if key.startswith(part):
            name = key[len(part):-len(suffix)]
        elif "." + part in key:
            name = key[key.index("." + part) + 1 + len(part):-len(suffix)]
        else:
            continue
        if name and "/" not in name and name not in BASELINES:
            pairs += [(name, float(v)) for v in found[column] if pd.notna(v)]
    return unique_trials(pairs)
