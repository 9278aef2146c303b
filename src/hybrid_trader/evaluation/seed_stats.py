"""Statistics of an experiment across seeds: many trials, one per (configuration, seed).

Each trial trains one configuration with one seed and reports held-out figures
(e.g. ``test_mean_daily_pnl``, ``test_sharpe_daily``, ``oracle_capture``). The
held-out sessions are the same for every trial, so the spread below is the
seed-to-seed variation of the training, not the uncertainty of the sessions.

Figures of one configuration and metric (:func:`summarize_trials`), over its
seeds with a finite value:

* ``n``: seeds; ``values``: the per-seed values, in seed order;
* ``mean``, ``median``: of the per-seed values;
* ``iqm``: the interquartile mean, ``scipy.stats.trim_mean(values, 0.25)``:
  the mean after dropping ``floor(n / 4)`` values from each end (the plain mean
  for n < 4);
* ``iqm_low``, ``iqm_high``: its percentile bootstrap interval
  (``scipy.stats.bootstrap``, seeds resampled with replacement).

Figures of one comparison (configuration X against baseline Y) and metric:

* ``differences``: X - Y per seed, over the seeds both have (``seeds``);
* ``mean_difference`` and ``iqm_difference``: their mean and interquartile mean,
  each with a percentile bootstrap interval that resamples the shared seeds
  (each seed keeps its pair);
* ``probability_of_improvement``: P(X > Y) + 0.5 P(X = Y) over all pairs of one
  X seed and one Y seed (the Mann-Whitney U statistic / (n_X n_Y), as in
  rliable), with a bootstrap interval that resamples X's and Y's seeds
  independently.

An interval needs at least 2 values in each resampled sample; with fewer it is
NaN and ``note`` says why. With all values equal the interval is that value
(zero width). Every figure is a plain float (NaN where undefined), so the summary
is JSON-serialisable.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import stats

__all__ = ["summarize_trials", "summary_markdown", "summary_figure", "interquartile_mean",
           "probability_of_improvement", "format_value", "DEFINITIONS"]

DEFINITIONS: dict[str, str] = {
    "n": "Seeds of the configuration with a finite value of the metric.",
    "values": "The metric of each of those seeds, in seed order.",
    "mean": "Arithmetic mean of the per-seed values.",
    "median": "Median of the per-seed values.",
    "iqm": "Interquartile mean: scipy.stats.trim_mean(values, 0.25), the mean after dropping floor(n/4) "
           "values from each end (the plain mean for n < 4).",
    "iqm_low, iqm_high": "Percentile bootstrap interval of the IQM at the stated confidence "
                         "(scipy.stats.bootstrap, seeds resampled with replacement); NaN with fewer than 2 seeds.",
    "note": "Why an interval is NaN (fewer than 2 seeds, or no shared seeds); null otherwise.",
    "differences": "Configuration minus baseline, per seed, over the seeds both have (seeds).",
    "n_pairs": "Seeds both the configuration and the baseline have (the paired differences).",
    "n_configuration, n_baseline": "Seeds of each side with a finite value (the probability of improvement "
                                   "uses all of them).",
    "mean_difference": "Mean of the paired differences, with a percentile bootstrap interval over the shared "
                       "seeds resampled with replacement (pairs kept together).",
    "iqm_difference": "Interquartile mean of the paired differences, with the same paired bootstrap interval.",
    "probability_of_improvement": "P(X > Y) + 0.5 P(X = Y) over all pairs of one configuration seed X and one "
                                  "baseline seed Y (Mann-Whitney U / (n_X n_Y)), with a percentile bootstrap "
                                  "interval resampling each side's seeds independently.",
    "interval": "Spread due to the training seed only: the held-out sessions are the same in every trial, so "
                "it says nothing about how the result would vary on other sessions.",
}

_IQM_CUT = 0.25


def interquartile_mean(values: Sequence[float] | np.ndarray, axis: int = -1) -> Any:
    """``scipy.stats.trim_mean(values, 0.25)`` along ``axis`` (vectorised for the bootstrap)."""
    return stats.trim_mean(np.asarray(values, dtype=float), _IQM_CUT, axis=axis)


def _mean(values: np.ndarray, axis: int = -1) -> Any:
    return np.mean(values, axis=axis)


def probability_of_improvement(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray,
                               axis: int = -1) -> Any:
    """P(X > Y) + 0.5 P(X = Y) over all (x_i, y_j) pairs, along ``axis`` (vectorised for the bootstrap)."""
    x = np.moveaxis(np.asarray(x, dtype=float), axis, -1)[..., :, None]
    y = np.moveaxis(np.asarray(y, dtype=float), axis, -1)[..., None, :]
    return (x > y).mean(axis=(-2, -1)) + 0.5 * (x == y).mean(axis=(-2, -1))


def _interval(samples: tuple[np.ndarray, ...], statistic: Callable, point: float, confidence: float,
              n_resamples: int, seed: int) -> tuple[float, float, str | None]:
    """Percentile bootstrap interval of ``statistic`` on ``samples`` (each resampled independently)."""
    if any(len(s) < 2 for s in samples):
        return math.nan, math.nan, "interval NaN: fewer than 2 seeds"
    if all(np.ptp(s) == 0 for s in samples):
        # Every resample is the sample itself: the interval is the point; skips scipy's degenerate-data path.
        return point, point, None
    result = stats.bootstrap(samples, statistic, n_resamples=n_resamples, vectorized=True, paired=False,
                             confidence_level=confidence, method="percentile", rng=np.random.default_rng(seed))
    low, high = (float(v) for v in (result.confidence_interval.low, result.confidence_interval.high))
    return low, high, None


def _configuration_metric(seeds: list, values: np.ndarray, confidence: float, n_resamples: int,
                          seed: int) -> dict[str, Any]:
    iqm = float(interquartile_mean(values))
    low, high, note = _interval((values,), interquartile_mean, iqm, confidence, n_resamples, seed)
    return {"n": len(values), "seeds": seeds, "values": [float(v) for v in values], "mean": float(values.mean()),
            "median": float(np.median(values)), "iqm": iqm, "iqm_low": low, "iqm_high": high, "note": note}


def _estimate(samples: tuple[np.ndarray, ...], statistic: Callable, confidence: float, n_resamples: int,
              seed: int) -> dict[str, Any]:
    point = float(statistic(*samples))
    low, high, note = _interval(samples, statistic, point, confidence, n_resamples, seed)
    return {"value": point, "low": low, "high": high, "note": note}


def _comparison_metric(x: pd.Series, y: pd.Series, confidence: float, n_resamples: int,
                       seed: int) -> dict[str, Any]:
    """``x`` and ``y``: per-seed values (index: seed, NaN dropped, neither empty) of the configuration and
    the baseline."""
    shared = [s for s in x.index.tolist() if s in y.index]  # tolist: Python scalars, not numpy ones
    differences = (x.loc[shared] - y.loc[shared]).to_numpy(dtype=float)
    empty = {"value": math.nan, "low": math.nan, "high": math.nan, "note": "no shared seeds"}
    paired = {name: (_estimate((differences,), statistic, confidence, n_resamples, seed) if len(shared)
                     else dict(empty))
              for name, statistic in (("mean_difference", _mean), ("iqm_difference", interquartile_mean))}
    xs, ys = x.to_numpy(dtype=float), y.to_numpy(dtype=float)
    poi = _estimate((xs, ys), probability_of_improvement, confidence, n_resamples, seed)
    return {"n_configuration": len(xs), "n_baseline": len(ys), "n_pairs": len(shared),
            "seeds": shared, "differences": [float(d) for d in differences],
            **paired, "probability_of_improvement": poi}


def summarize_trials(trials: pd.DataFrame, metrics: Sequence[str], comparisons: Sequence[tuple[str, str]],
                     confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Per-configuration and paired statistics of an experiment's trials across seeds.

    Definitions of every figure: the module docstring and the summary's ``definitions``.

    Args:
        trials: One row per completed trial: ``configuration``, ``seed`` and a numeric column
            per metric. A NaN value (e.g. ``oracle_capture`` off planted markets) leaves that
            trial out of that metric; a configuration without any value has no entry for it.
        metrics: The metric columns to summarise.
        comparisons: ``(configuration, baseline)`` pairs, e.g. ``("hybrid", "rl_only")``.
        confidence: Confidence level of every interval.
        n_resamples, seed: Bootstrap resamples and the seed of each interval's generator (the
            same for every interval, so one figure does not depend on which others are computed).

    Returns:
        ``configurations`` (configuration -> metric -> figures), ``comparisons`` (a list of
        ``{configuration, baseline, metrics: metric -> figures}``), the settings, ``notes``
        and ``definitions``; plain Python values only.
    """
    missing = [m for m in list(metrics) + ["configuration", "seed"] if m not in trials.columns]
    if missing:
        raise ValueError(f"trials lack the columns {missing}")
    duplicated = trials.duplicated(["configuration", "seed"])
    if duplicated.any():
        raise ValueError(f"more than one trial per (configuration, seed): "
                         f"{trials.loc[duplicated, ['configuration', 'seed']].values.tolist()}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    ordered = trials.sort_values(["configuration", "seed"])

    def per_seed(configuration: str, metric: str) -> pd.Series:
        rows = ordered[ordered["configuration"] == configuration]
        values = pd.Series(pd.to_numeric(rows[metric], errors="coerce").to_numpy(dtype=float),
                           index=rows["seed"].to_numpy())
        return values[np.isfinite(values.to_numpy())]

    configurations: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    for configuration in trials["configuration"].unique().tolist():  # in the order they first appear
        configurations[configuration] = {}
        for metric in metrics:
            values = per_seed(configuration, metric)
            if values.empty:
                notes.append(f"{configuration}: no finite {metric}; left out")
                continue
            configurations[configuration][metric] = _configuration_metric(
                values.index.tolist(), values.to_numpy(), confidence, n_resamples, seed)

    compared = []
    for configuration, baseline in comparisons:
        entry: dict[str, Any] = {"configuration": configuration, "baseline": baseline, "metrics": {}}
        absent = [name for name in (configuration, baseline) if name not in configurations]
        if absent:
            notes.append(f"{configuration} vs {baseline}: no trials of {' and '.join(absent)}")
        for metric in metrics if not absent else []:
            x, y = per_seed(configuration, metric), per_seed(baseline, metric)
            if x.empty or y.empty:
                notes.append(f"{configuration} vs {baseline}: {metric} missing on a side; left out")
                continue
            entry["metrics"][metric] = _comparison_metric(x, y, confidence, n_resamples, seed)
        compared.append(entry)

    return {"metrics": list(metrics), "confidence": float(confidence), "n_resamples": int(n_resamples),
            "seed": int(seed), "method": "percentile bootstrap (scipy.stats.bootstrap)",
            "configurations": configurations, "comparisons": compared, "notes": notes,
            "definitions": dict(DEFINITIONS)}


def format_value(value: float | None) -> str:
    """A figure for a table: whole numbers with thousands separators from 100 on, 3 significant digits below."""
    if value is None or not math.isfinite(value):
        return "NaN"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _with_interval(value: float, low: float, high: float) -> str:
    if not (math.isfinite(low) and math.isfinite(high)):
        return f"{format_value(value)} [NaN]"
    return f"{format_value(value)} [{format_value(low)}, {format_value(high)}]"


def summary_markdown(summary: Mapping[str, Any], title: str = "Experiment summary") -> str:
    """The summary as Markdown: one table of configurations and one of comparisons per metric."""
    percent = f"{100 * summary['confidence']:g}%"
    lines = [f"# {title}", "",
             f"IQM: interquartile mean over seeds; [low, high]: {percent} {summary['method']} with "
             f"{summary['n_resamples']} resamples, seed {summary['seed']}; [NaN]: fewer than 2 seeds. "
             "Intervals show the training seed's variation only (the held-out sessions are fixed).", ""]
    for metric in summary["metrics"]:
        lines += [f"## {metric}", "", "| configuration | n | IQM [low, high] | mean | median | per-seed values |",
                  "|---|---|---|---|---|---|"]
        for configuration, figures in summary["configurations"].items():
            f = figures.get(metric)
            if f is None:
                continue
            values = ", ".join(f"{s}: {format_value(v)}" for s, v in zip(f["seeds"], f["values"]))
            lines.append(f"| {configuration} | {f['n']} | {_with_interval(f['iqm'], f['iqm_low'], f['iqm_high'])} "
                         f"| {format_value(f['mean'])} | {format_value(f['median'])} | {values} |")
        rows = [(c, c["metrics"][metric]) for c in summary["comparisons"] if metric in c["metrics"]]
        if rows:
            lines += ["", "| configuration vs baseline | paired seeds | difference IQM [low, high] "
                      "| difference mean [low, high] | P(improvement) [low, high] |", "|---|---|---|---|---|"]
            for c, f in rows:
                cells = [_with_interval(f[k]["value"], f[k]["low"], f[k]["high"])
                         for k in ("iqm_difference", "mean_difference", "probability_of_improvement")]
                lines.append(f"| {c['configuration']} vs {c['baseline']} | {f['n_pairs']} | " + " | ".join(cells)
                             + " |")
        lines.append("")
    if summary["notes"]:
        lines += ["Notes: " + "; ".join(summary["notes"]) + ".", ""]
    return "\n".join(lines)


def summary_figure(summary: Mapping[str, Any], metric: str) -> Figure:
    """Per-configuration IQM of ``metric`` with its interval as error bars, and each seed's value as a point.

    The figure is not registered with pyplot (an Agg canvas of its own), so nothing needs closing.
    """
    names = [c for c, figures in summary["configurations"].items() if metric in figures]
    figure = Figure(figsize=(max(4.0, 1.2 * len(names) + 2), 4))
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    for i, name in enumerate(names):
        f = summary["configurations"][name][metric]
        spread = np.linspace(-0.15, 0.15, f["n"]) if f["n"] > 1 else np.zeros(1)
        ax.scatter(i + spread, f["values"], s=14, color="0.55", zorder=2, label="seed" if i == 0 else None,
                   gid=f"seeds:{name}")
        bounded = math.isfinite(f["iqm_low"]) and math.isfinite(f["iqm_high"])
        # A percentile interval need not contain the point; matplotlib refuses negative error lengths.
        error = ([[max(f["iqm"] - f["iqm_low"], 0.0)], [max(f["iqm_high"] - f["iqm"], 0.0)]] if bounded
                 else None)
        ax.errorbar([i], [f["iqm"]], yerr=error, fmt="o", color="C0", capsize=6, zorder=3,
                    label=f"IQM, {100 * summary['confidence']:g}% interval" if i == 0 else None)
    ax.set_xticks(range(len(names)), names)
    ax.set_xlim(-0.6, max(len(names), 1) - 0.4)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} across seeds")
    if names:
        ax.legend(loc="best", fontsize="small")
    figure.tight_layout()
    return figure
