"""The training-health report: the failed run's figures, this run's, the targets.

Each metric is defined here once (:data:`METRICS`) and in ``docs/phase3.md``;
:func:`measure` computes this run's values from the per-update records and the
advisor's telemetry, :func:`health_report` judges them against the targets.
A metric whose value cannot be computed (e.g. no advice at all) fails.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["HealthMetric", "METRICS", "measure", "health_report", "health_notes", "render_markdown",
           "HealthCheckFailed"]


class HealthCheckFailed(RuntimeError):
    """A health target was missed and ``phase3.health.fail_on_miss`` is on."""


@dataclass(frozen=True)
class HealthMetric:
    name: str
    definition: str
    seed_value: float | bool | None  # the failed first attempt's value (None: not measured there)
    low: float | None = None  # the value must be >= low (or > low when strict)
    high: float | None = None  # the value must be <= high (or < high when strict)
    strict: bool = False
    expected: bool | None = None  # for yes/no metrics

    @property
    def target(self) -> str:
        if self.expected is not None:
            return "yes" if self.expected else "no"
        if self.low is not None and self.high is not None:
            return f"{self.low:g} - {self.high:g}"
        if self.low is not None:
            return f"{'>' if self.strict else '>='} {self.low:g}"
        return f"{'<' if self.strict else '<='} {self.high:g}"

    def passes(self, value: Any) -> bool:
        if self.expected is not None:
            return value is not None and bool(value) == self.expected
        if value is None or not math.isfinite(float(value)):
            return False
        value = float(value)
        if self.low is not None and (value <= self.low if self.strict else value < self.low):
            return False
        if self.high is not None and (value >= self.high if self.strict else value > self.high):
            return False
        return True


METRICS: tuple[HealthMetric, ...] = (
    HealthMetric("approx_kl",
                 "Mean of SB3's train/approx_kl (approximate KL divergence between the policy before and "
                 "after an update, averaged over its minibatches) over the updates that trained all weights "
                 "(after the warm-up).",
                 1.2e-10, 0.01, 0.05),
    HealthMetric("clip_fraction",
                 "Mean of SB3's train/clip_fraction (share of samples whose probability ratio was clipped) "
                 "over the updates that trained all weights.", 0.0, 0.05, 0.15),
    HealthMetric("explained_variance",
                 "Mean of SB3's train/explained_variance (1 - Var[return - value] / Var[return] on each "
                 "rollout) over the last quarter of the updates that trained all weights.", 0.192, 0.6, strict=True),
    HealthMetric("llm_query_rate",
                 "Advisor queries / environment steps over training (all training environments).",
                 0.005, 0.15, 0.25),
    HealthMetric("llm_confidence",
                 "Mean confidence (top probability over the allowed actions) of the opinions adopted during "
                 "training. With three allowed actions, 1/3 means no preference.", 0.000232, 0.3, strict=True),
    HealthMetric("disagreement_rate",
                 "Share of adopted opinions whose masked argmax differs from the RL part's masked argmax at "
                 "the bar of adoption. A query without an answer counts nowhere (never as agreement).",
                 0.001, 0.05, strict=True),
    HealthMetric("override_rate",
                 "Share of training environment steps whose executed (sampled) action was the advisor's "
                 "argmax and not the RL part's argmax.", None, 0.02, strict=True),
    HealthMetric("episode_length",
                 "Mean length in bars of the training episodes that ended during the run.", 19.9, 80,
                 strict=True),
    HealthMetric("overfitting_gap",
                 "Mean episode reward on train sessions minus on validation sessions, the reward counted at "
                 "one unit per $1,000 whatever reward_scale is: a session scores (net P&L - the breach "
                 "penalty's dollars if it breached) / 1,000. Deterministic, masked, full-session episodes of "
                 "the final hybrid policy, the same number of sessions on each side.",
                 1.55, high=0.5, strict=True),
    HealthMetric("clean_exit",
                 "Training ended without interruption, the advisor's worker stopped when asked (not "
                 "terminated), and the environments and the logger were closed without error.", False,
                 expected=True),
)


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def measure(updates: Sequence[Mapping[str, Any]], telemetry_rates: Mapping[str, float],
            episode_lengths: Sequence[int], overfitting_gap: float, clean_exit: bool) -> dict[str, Any]:
    """This run's value of every metric.

    Args:
        updates: One record per PPO update: ``adapter_only`` and SB3's ``train/`` values
            (:attr:`~hybrid_trader.agents.phase3.WarmupCallback.updates`).
        telemetry_rates: :meth:`~hybrid_trader.agents.advised_env.AdvisorTelemetry.rates` of training.
        episode_lengths: Lengths of the training episodes that ended.
        overfitting_gap: Train minus validation mean episode reward at one unit per $1,000
            (:func:`~hybrid_trader.agents.phase3.reward_gap`).
        clean_exit: See the metric.
    """
    full = [u for u in updates if not u["adapter_only"]]

    def values(key: str, records: Sequence[Mapping[str, Any]]) -> list[float]:
        return [float(u[key]) for u in records if key in u]

    return {
        "approx_kl": _mean(values("train/approx_kl", full)),
        "clip_fraction": _mean(values("train/clip_fraction", full)),
        "explained_variance": _mean(values("train/explained_variance", full[-max(1, len(full) // 4):])),
        "llm_query_rate": telemetry_rates.get("query_rate", float("nan")),
        "llm_confidence": telemetry_rates.get("mean_confidence", float("nan")),
        "disagreement_rate": telemetry_rates.get("disagreement_rate", float("nan")),
        "override_rate": telemetry_rates.get("override_rate", float("nan")),
        "episode_length": _mean(list(episode_lengths)),
        "overfitting_gap": float(overfitting_gap),
        "clean_exit": bool(clean_exit),
    }


def _plain(value: Any) -> Any:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def health_report(values: Mapping[str, Any]) -> dict[str, Any]:
    """``rows`` (one per metric: name, definition, seed value, this run's value, target,
    passed) and ``all_passed``; a missing or non-finite value fails."""
    rows = []
    for metric in METRICS:
        value = values.get(metric.name)
        rows.append({"metric": metric.name, "seed_run": _plain(metric.seed_value), "this_run": _plain(value),
                     "target": metric.target, "passed": metric.passes(value), "definition": metric.definition})
    return {"rows": rows, "all_passed": all(r["passed"] for r in rows),
            "failed": [r["metric"] for r in rows if not r["passed"]]}


def health_notes(summary: Mapping[str, Any], evaluation: Mapping[str, Any]) -> list[str]:
    """Context for reading the report: what drove the query rate, the spread of the explained
    variance over updates, and how precise the overfitting gap is."""
    notes = []
    triggers = summary.get("query_triggers") or {}
    steps = summary["telemetry"]["steps"]
    if triggers and steps:
        parts = ", ".join(f"{name.replace('_', ' ')} {100 * count / steps:.1f}%" for name, count in triggers.items())
        notes.append(f"Queries by first trigger, as a share of steps: {parts}.")
    variance = [u["train/explained_variance"] for u in summary.get("updates", [])
                if not u["adapter_only"] and "train/explained_variance" in u]
    if variance:
        notes.append(f"explained_variance over the {len(variance)} full updates: min {min(variance):.2f}, "
                     f"median {float(np.median(variance)):.2f}, max {max(variance):.2f}.")
    gap = evaluation.get("overfitting_gap", {})
    if "gap_standard_error" in gap:
        notes.append(f"overfitting_gap {gap['gap']:.2f} +/- {gap['gap_standard_error']:.2f} (standard error) over "
                     f"{gap['train_sessions']} train and {gap['validation_sessions']} validation sessions: "
                     f"mean net P&L ${gap['train_mean_net_pnl']:,.0f} (train) vs "
                     f"${gap['validation_mean_net_pnl']:,.0f} (validation) per session.")
    return notes


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:.3g}"


def render_markdown(report: Mapping[str, Any], notes: Sequence[str] = ()) -> str:
    """The report for people: the table, then each metric's definition."""
    lines = ["# Phase 3 training-health report", "",
             f"**{'All targets met.' if report['all_passed'] else 'Missed: ' + ', '.join(report['failed'])}**", "",
             "| metric | seed run | this run | target | pass |", "|---|---|---|---|---|"]
    for row in report["rows"]:
        lines.append(f"| {row['metric']} | {_cell(row['seed_run'])} | {_cell(row['this_run'])} | {row['target']} | "
                     f"{'PASS' if row['passed'] else 'FAIL'} |")
    lines += ["", "## Definitions", ""]
    lines += [f"- **{row['metric']}**: {row['definition']}" for row in report["rows"]]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"
