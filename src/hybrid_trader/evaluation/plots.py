"""The evaluation's pictures, each described once as panels and drawn twice: as a Plotly
figure (JSON, previewed by kedro-viz) and as a matplotlib figure (PNG, an MLflow artifact).

* :func:`equity_panels`: equity and drawdown ($) of each agent across the split's
  sessions, bar by bar (sessions laid end to end, each starting from the previous
  sessions' total);
* :func:`action_panels`: share of each executed action per agent;
* :func:`end_reason_panels`: sessions per episode-end reason per agent;
* :func:`training_panels`: Phase 3's approx_kl, clip fraction and explained variance per
  update, episode length, query rate, confidence and agreement per rollout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import matplotlib

matplotlib.use("Agg")  # files only; never a window

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import plotly.graph_objects as go  # noqa: E402
from plotly.subplots import make_subplots  # noqa: E402

from hybrid_trader.env.actions import Action  # noqa: E402

__all__ = ["Panel", "equity_panels", "action_panels", "end_reason_panels", "training_panels", "to_plotly",
           "to_matplotlib"]


@dataclass
class Panel:
    title: str
    kind: str  # "line" or "bar"
    series: dict[str, tuple[list, list]] = field(default_factory=dict)  # name -> (x, y)
    x_label: str = ""
    y_label: str = ""


def _select(frame: pd.DataFrame, split: str, cost_multiple: float) -> pd.DataFrame:
    return frame[(frame["split"] == split) & (frame["cost_multiple"] == cost_multiple)]


def equity_panels(steps: pd.DataFrame, episodes: pd.DataFrame, starting_balance: float, split: str = "test",
                  cost_multiple: float = 1.0) -> list[Panel]:
    equity, drawdown = Panel(f"Equity on {split} days ({cost_multiple:g}x costs)", "line", x_label="bar",
                             y_label="$"), Panel("Drawdown", "line", x_label="bar", y_label="$")
    episodes, steps = _select(episodes, split, cost_multiple), _select(steps, split, cost_multiple)
    for agent, agent_steps in steps.groupby("agent", sort=False):
        pnl = episodes.loc[episodes["agent"] == agent, ["session_date", "net_pnl"]]
        offset = dict(zip(pnl["session_date"], np.concatenate([[0.0], pnl["net_pnl"].cumsum().to_numpy()[:-1]])))
        path = (agent_steps["session_date"].map(offset) + agent_steps["equity"]).to_numpy(dtype=float)
        x = list(range(1, len(path) + 1))
        equity.series[agent] = (x, path.tolist())
        drawdown.series[agent] = (x, (path - np.maximum.accumulate(np.maximum(path, starting_balance))).tolist())
    return [equity, drawdown]


def action_panels(steps: pd.DataFrame, split: str = "test", cost_multiple: float = 1.0) -> list[Panel]:
    panel = Panel(f"Actions on {split} days", "bar", x_label="action", y_label="share of steps")
    names = [a.name for a in Action]
    for agent, agent_steps in _select(steps, split, cost_multiple).groupby("agent", sort=False):
        shares = agent_steps["action"].value_counts(normalize=True).reindex(range(len(names)), fill_value=0.0)
        panel.series[agent] = (names, shares.tolist())
    return [panel]


def end_reason_panels(episodes: pd.DataFrame, split: str = "test", cost_multiple: float = 1.0) -> list[Panel]:
    panel = Panel(f"Episode-end reasons on {split} days", "bar", x_label="agent", y_label="sessions")
    selected = _select(episodes, split, cost_multiple)
    counts = selected.groupby(["end_reason", "agent"], sort=False).size().unstack(fill_value=0)
    agents = list(selected["agent"].unique())
    for reason, row in counts.iterrows():
        panel.series[str(reason)] = (agents, [int(row.get(a, 0)) for a in agents])
    return [panel]


def training_panels(training_summary: Mapping[str, Any]) -> list[Panel]:
    updates = [u for u in training_summary.get("updates", [])]
    panels = []
    for key, title in (("train/approx_kl", "approx_kl"), ("train/clip_fraction", "clip fraction"),
                       ("train/explained_variance", "explained variance")):
        points = [(u["step"], u[key]) for u in updates if key in u]
        panels.append(Panel(title, "line", {"per update": ([p[0] for p in points], [p[1] for p in points])},
                            x_label="step"))
    history = training_summary.get("history", {})
    for key, title in (("rollout/ep_len_mean", "episode length (bars)"), ("advisor/query_rate", "query rate"),
                       ("advisor/mean_confidence", "advisor confidence"), ("advisor/agreement_rate", "agreement")):
        points = history.get(key, [])
        panels.append(Panel(title, "line", {"per rollout": ([p[0] for p in points], [p[1] for p in points])},
                            x_label="step"))
    return panels


def to_plotly(panels: list[Panel], title: str) -> go.Figure:
    """One row of subplots per panel."""
    figure = make_subplots(rows=len(panels), cols=1, subplot_titles=[p.title for p in panels],
                           vertical_spacing=min(0.3 / max(len(panels) - 1, 1), 0.12))
    for row, panel in enumerate(panels, start=1):
        for name, (x, y) in panel.series.items():
            trace = go.Scatter(x=x, y=y, name=name, mode="lines") if panel.kind == "line" else go.Bar(x=x, y=y,
                                                                                                      name=name)
            figure.add_trace(trace, row=row, col=1)
        figure.update_xaxes(title_text=panel.x_label, row=row, col=1)
        figure.update_yaxes(title_text=panel.y_label, row=row, col=1)
    figure.update_layout(title=title, height=320 * len(panels), barmode="group")
    return figure


def to_matplotlib(panels: list[Panel], title: str) -> Any:
    figure, axes = plt.subplots(len(panels), 1, figsize=(10, 3.2 * len(panels)), squeeze=False)
    for axis, panel in zip(axes[:, 0], panels):
        if panel.kind == "line":
            for name, (x, y) in panel.series.items():
                axis.plot(x, y, label=name, linewidth=1)
        else:
            names = list(panel.series)
            categories = next(iter(panel.series.values()))[0] if names else []
            width = 0.8 / max(len(names), 1)
            for k, name in enumerate(names):
                axis.bar(np.arange(len(categories)) + k * width, panel.series[name][1], width, label=name)
            axis.set_xticks(np.arange(len(categories)) + 0.4 - width / 2, categories, rotation=20, fontsize=8)
        axis.set_title(panel.title)
        axis.set_xlabel(panel.x_label)
        axis.set_ylabel(panel.y_label)
        if len(panel.series) > 1:
            axis.legend(fontsize=7)
    figure.suptitle(title)
    figure.tight_layout()
    return figure
