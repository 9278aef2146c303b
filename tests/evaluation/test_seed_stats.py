"""Statistics across seeds: hand-computed IQMs, paired differences and probabilities of improvement."""

import json
import math
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from hybrid_trader.evaluation.seed_stats import (
    format_value, probability_of_improvement, summarize_trials, summary_figure, summary_markdown,
)


def _trials(rows: dict[str, dict[int, float]], metric: str = "score") -> pd.DataFrame:
    return pd.DataFrame([{"configuration": c, "seed": s, metric: v} for c, values in rows.items()
                         for s, v in values.items()])


def test_iqm_mean_median_of_eight_seeds():
    # Sorted: 0 1 | 2 4 8 9 | 10 1000; floor(8/4) = 2 dropped from each end: (2+4+8+9)/4 = 5.75.
    values = {7: 8.0, 1: 1000.0, 3: 2.0, 5: 0.0, 2: 9.0, 8: 4.0, 4: 10.0, 6: 1.0}
    f = summarize_trials(_trials({"a": values}), ["score"], [])["configurations"]["a"]["score"]
    assert f["iqm"] == 5.75
    assert f["mean"] == 1034 / 8
    assert f["median"] == 6.0  # (4 + 8) / 2
    assert f["n"] == 8
    assert f["seeds"] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert f["values"] == [1000.0, 9.0, 2.0, 10.0, 0.0, 1.0, 8.0, 4.0]
    assert f["iqm_low"] <= 5.75 <= f["iqm_high"]
    assert f["note"] is None


def test_probability_of_improvement_by_hand():
    # X=1 beats 0; X=2 beats 0, ties 2; X=3 beats 0 and 2: 4 wins + 1 tie of 9 pairs -> 4.5 / 9.
    assert probability_of_improvement([1, 2, 3], [0, 2, 5]) == 0.5
    # X=1 beats 0; X=2 beats 0, ties 2 twice; X=3 beats all: 5 wins + 2 ties -> 6 / 9.
    assert probability_of_improvement([1, 2, 3], [0, 2, 2]) == pytest.approx(2 / 3)
    assert probability_of_improvement([0, 2, 2], [1, 2, 3]) == pytest.approx(1 / 3)


def test_comparison_pairs_shared_seeds_and_counts_all_pairs_for_improvement():
    trials = _trials({"hybrid": {1: 1.0, 2: 2.0, 3: 3.0, 4: 10.0},
                      "rl_only": {2: 0.0, 3: 2.0, 4: 5.0, 5: 2.0}})
    c = summarize_trials(trials, ["score"], [("hybrid", "rl_only")])["comparisons"][0]
    assert (c["configuration"], c["baseline"]) == ("hybrid", "rl_only")
    f = c["metrics"]["score"]
    assert f["seeds"] == [2, 3, 4]
    assert f["differences"] == [2.0, 1.0, 5.0]  # seeds 1 and 5 have no partner
    assert f["n_pairs"] == 3
    assert f["mean_difference"]["value"] == pytest.approx(8 / 3)
    assert f["iqm_difference"]["value"] == pytest.approx(8 / 3)  # n < 4: nothing trimmed
    assert f["mean_difference"]["low"] <= 8 / 3 <= f["mean_difference"]["high"]
    # All 4 x 4 seeds: X=1 beats 0; X=2 beats 0, ties 2, 2; X=3 beats 0, 2, 2; X=10 beats all four:
    # 9 wins + 2 ties of 16 pairs.
    assert (f["n_configuration"], f["n_baseline"]) == (4, 4)
    assert f["probability_of_improvement"]["value"] == pytest.approx(10 / 16)


def test_interval_contains_the_estimate_and_narrows_with_more_seeds():
    # Seeds at the normal's quantiles: the same spread at every n, so the width should fall as 1 / sqrt(n).
    rows = {f"n{n}": dict(enumerate(stats.norm.ppf((np.arange(n) + 0.5) / n))) for n in (8, 32, 128)}
    configurations = summarize_trials(_trials(rows), ["score"], [], seed=3)["configurations"]
    widths = {}
    for name, figures in configurations.items():
        f = figures["score"]
        assert f["iqm"] == pytest.approx(0.0, abs=1e-12)
        assert f["iqm_low"] < f["iqm"] < f["iqm_high"]
        widths[name] = f["iqm_high"] - f["iqm_low"]
    assert widths["n8"] > widths["n32"] > widths["n128"]
    assert widths["n128"] < 0.35 * widths["n8"]  # sqrt(8 / 128) = 0.25 expected


def test_interval_is_scipys_percentile_bootstrap_of_the_iqm():
    values = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0])
    f = summarize_trials(_trials({"a": dict(enumerate(values))}), ["score"], [], n_resamples=500,
                         seed=4)["configurations"]["a"]["score"]
    expected = stats.bootstrap((values,), lambda x, axis: stats.trim_mean(x, 0.25, axis=axis), n_resamples=500,
                               method="percentile", rng=np.random.default_rng(4)).confidence_interval
    assert (f["iqm_low"], f["iqm_high"]) == pytest.approx((expected.low, expected.high))


def test_interval_is_reproducible_and_follows_the_confidence():
    rows = {"a": {s: float(v) for s, v in enumerate([3, 1, 4, 1, 5, 9, 2, 6, 5, 3])}}
    first, again = (summarize_trials(_trials(rows), ["score"], [], seed=1)["configurations"]["a"]["score"]
                    for _ in range(2))
    assert (first["iqm_low"], first["iqm_high"]) == (again["iqm_low"], again["iqm_high"])
    narrow = summarize_trials(_trials(rows), ["score"], [], confidence=0.5, seed=1)["configurations"]["a"]["score"]
    assert first["iqm_low"] < narrow["iqm_low"] <= narrow["iqm_high"] < first["iqm_high"]


def test_one_seed_gives_nan_intervals_and_a_note():
    summary = summarize_trials(_trials({"a": {1: 2.0}, "b": {1: 1.0, 2: 3.0}}), ["score"], [("a", "b")])
    f = summary["configurations"]["a"]["score"]
    assert f["iqm"] == 2.0 and f["n"] == 1
    assert math.isnan(f["iqm_low"]) and math.isnan(f["iqm_high"])
    assert "fewer than 2 seeds" in f["note"]
    c = summary["comparisons"][0]["metrics"]["score"]
    assert c["differences"] == [1.0]
    for key in ("mean_difference", "iqm_difference", "probability_of_improvement"):
        assert math.isnan(c[key]["low"]) and math.isnan(c[key]["high"])
        assert "fewer than 2 seeds" in c[key]["note"]
    assert c["probability_of_improvement"]["value"] == 0.5  # 2 > 1, 2 < 3
    assert "NaN" in summary_markdown(summary)


def test_identical_values_give_a_zero_width_interval_without_warnings():
    trials = _trials({"a": {1: 0.1, 2: 0.1, 3: 0.1, 4: 0.1}, "b": {1: 0.3, 2: 0.3, 3: 0.3, 4: 0.3}})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        summary = summarize_trials(trials, ["score"], [("b", "a")])
    f = summary["configurations"]["a"]["score"]
    assert f["iqm_low"] == f["iqm"] == f["iqm_high"] == pytest.approx(0.1)
    c = summary["comparisons"][0]["metrics"]["score"]
    assert c["iqm_difference"]["low"] == c["iqm_difference"]["value"] == c["iqm_difference"]["high"]
    assert c["iqm_difference"]["value"] == pytest.approx(0.2)
    assert c["probability_of_improvement"] == {"value": 1.0, "low": 1.0, "high": 1.0, "note": None}


def test_missing_metric_values_are_left_out():
    trials = pd.DataFrame({"configuration": ["hybrid", "hybrid", "rl_only", "rl_only"], "seed": [1, 2, 1, 2],
                           "oracle_capture": [0.5, np.nan, np.nan, np.nan], "pnl": [1.0, 2.0, 3.0, 4.0]})
    summary = summarize_trials(trials, ["oracle_capture", "pnl"], [("hybrid", "rl_only")])
    assert summary["configurations"]["hybrid"]["oracle_capture"]["values"] == [0.5]
    assert "oracle_capture" not in summary["configurations"]["rl_only"]
    assert summary["configurations"]["rl_only"]["pnl"]["values"] == [3.0, 4.0]
    assert any("rl_only" in note and "oracle_capture" in note for note in summary["notes"])
    assert set(summary["comparisons"][0]["metrics"]) == {"pnl"}  # no capture of rl_only to compare with
    assert "hybrid vs rl_only: oracle_capture missing on a side; left out" in summary["notes"]
    no_shared = summarize_trials(_trials({"a": {1: 1.0, 2: 2.0}, "b": {3: 0.0, 4: 5.0}}), ["score"], [("a", "b")])
    f = no_shared["comparisons"][0]["metrics"]["score"]
    assert f["n_pairs"] == 0 and math.isnan(f["mean_difference"]["value"]) and f["differences"] == []
    assert f["probability_of_improvement"]["value"] == 0.5  # all pairs still count: 1 > 0, 2 > 0; 1, 2 < 5
    unknown = summarize_trials(trials, ["pnl"], [("hybrid", "llm_only")])
    assert unknown["comparisons"][0]["metrics"] == {}
    assert unknown["notes"] == ["hybrid vs llm_only: no trials of llm_only"]
    with pytest.raises(ValueError, match="sharpe"):
        summarize_trials(trials, ["sharpe"], [])
    with pytest.raises(ValueError, match="more than one trial"):
        summarize_trials(pd.concat([trials, trials.iloc[:1]]), ["pnl"], [])


def test_markdown_shows_every_configuration_and_comparison():
    trials = _trials({"hybrid": {1: 0.0, 2: 1.0, 3: 2.0, 4: 4.0, 5: 8.0, 6: 9.0, 7: 10.0, 8: 1000.0},
                      "rl_only": {1: -150.0, 2: -120.0, 3: -90.0}}, metric="test_mean_daily_pnl")
    summary = summarize_trials(trials, ["test_mean_daily_pnl"], [("hybrid", "rl_only")])
    text = summary_markdown(summary, title="Fusion modes")
    assert text.startswith("# Fusion modes")
    assert "## test_mean_daily_pnl" in text
    assert "| hybrid | 8 | 5.75 [" in text  # IQM 5.75, as by hand above
    assert "| rl_only | 3 | -120 [" in text  # n < 4: the mean
    assert "| hybrid vs rl_only | 3 |" in text
    assert "1: -150, 2: -120, 3: -90" in text
    assert format_value(1234.5) == "1,234" and format_value(0.01234) == "0.0123" and format_value(-79.81) == "-79.8"


def _types(value):
    if isinstance(value, dict):
        return set().union(*(_types(v) for v in value.values()), *(_types(k) for k in value))
    if isinstance(value, list):
        return set().union(set(), *(_types(v) for v in value))
    return {type(value)}


def test_summary_is_plain_json():
    trials = pd.DataFrame({"configuration": ["a", "a", "b", "b"], "seed": np.array([1, 2, 1, 2], dtype=np.int64),
                           "score": np.array([1.0, 2.0, 0.5, 3.0], dtype=np.float32)})
    summary = summarize_trials(trials, ["score"], [("a", "b")])
    assert _types(summary) <= {str, int, float, bool, type(None)}
    back = json.loads(json.dumps(summary))
    assert back["configurations"]["a"]["score"]["seeds"] == [1, 2]
    assert set(back["definitions"]) >= {"iqm", "mean", "median", "probability_of_improvement", "iqm_difference"}


def test_figure_draws_iqm_bars_and_seed_points():
    trials = _trials({"a": {1: 1.0, 2: 2.0, 3: 3.0}, "b": {1: 5.0}})
    summary = summarize_trials(trials, ["score"], [])
    open_before = plt.get_fignums()
    figure = summary_figure(summary, "score")
    assert plt.get_fignums() == open_before  # not registered with pyplot: nothing for the caller to close
    ax = figure.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]
    points = {c.get_gid(): c.get_offsets()[:, 1].tolist() for c in ax.collections
              if (c.get_gid() or "").startswith("seeds:")}
    assert points == {"seeds:a": [1.0, 2.0, 3.0], "seeds:b": [5.0]}
    iqm_marks = [line.get_ydata()[0] for line in ax.lines if line.get_marker() == "o"]
    assert iqm_marks == [2.0, 5.0]
    a = summary["configurations"]["a"]["score"]
    bars = [container.lines[2] for container in ax.containers]
    assert bars[0][0].get_segments()[0][:, 1].tolist() == pytest.approx([a["iqm_low"], a["iqm_high"]])
    assert bars[1] == ()  # one seed: no interval to draw
    figure.savefig(__import__("io").BytesIO(), format="png")
