"""The health report's rules one by one: targets as written, boundaries, missing values, notes, the text."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest

from hybrid_trader.agents.health import METRICS, HealthMetric, health_notes, health_report, measure, render_markdown


def test_each_metric_states_its_target_as_written_in_the_docs():
    assert {m.name: m.target for m in METRICS} == {
        "approx_kl": "0.01 - 0.05", "clip_fraction": "0.05 - 0.15", "explained_variance": "> 0.6",
        "llm_query_rate": "0.15 - 0.25", "llm_confidence": "> 0.3", "disagreement_rate": "> 0.05",
        "override_rate": "> 0.02", "episode_length": "> 80", "overfitting_gap": "< 0.5", "clean_exit": "yes"}


@pytest.mark.parametrize("metric, target", [
    (HealthMetric("m", "d", None, low=2.0), ">= 2"),
    (HealthMetric("m", "d", None, low=2.0, strict=True), "> 2"),
    (HealthMetric("m", "d", None, high=0.25), "<= 0.25"),
    (HealthMetric("m", "d", None, high=0.25, strict=True), "< 0.25"),
    (HealthMetric("m", "d", None, low=1.0, high=3.0), "1 - 3"),
    (HealthMetric("m", "d", None, expected=False), "no"),
])
def test_target_text_of_each_kind_of_bound(metric, target):
    assert metric.target == target


@pytest.mark.parametrize("metric, value, passed", [
    # A bound that is not strict includes its value; a strict one excludes it.
    (HealthMetric("m", "d", None, low=2.0), 2.0, True),
    (HealthMetric("m", "d", None, low=2.0), 1.99, False),
    (HealthMetric("m", "d", None, low=2.0, strict=True), 2.0, False),
    (HealthMetric("m", "d", None, low=2.0, strict=True), 2.01, True),
    (HealthMetric("m", "d", None, high=0.25), 0.25, True),
    (HealthMetric("m", "d", None, high=0.25), 0.26, False),
    (HealthMetric("m", "d", None, high=0.25, strict=True), 0.25, False),
    (HealthMetric("m", "d", None, high=0.25, strict=True), 0.24, True),
    (HealthMetric("m", "d", None, low=1.0, high=3.0), 1.0, True),
    (HealthMetric("m", "d", None, low=1.0, high=3.0), 3.0, True),
    (HealthMetric("m", "d", None, low=1.0, high=3.0), 3.5, False),
    (HealthMetric("m", "d", None, low=1.0, high=3.0), 0.5, False),
    # Whatever cannot be judged fails: missing, NaN, infinite.
    (HealthMetric("m", "d", None, low=1.0), None, False),
    (HealthMetric("m", "d", None, low=1.0), float("inf"), False),
    (HealthMetric("m", "d", None, high=1.0), float("-inf"), False),
    (HealthMetric("m", "d", None, high=1.0), float("nan"), False),
    (HealthMetric("m", "d", None, high=1.0), np.float32(0.5), True),
    # Yes/no metrics compare truth values; a missing one is never "no".
    (HealthMetric("m", "d", None, expected=False), False, True),
    (HealthMetric("m", "d", None, expected=False), 0, True),
    (HealthMetric("m", "d", None, expected=False), None, False),
    (HealthMetric("m", "d", None, expected=False), True, False),
    (HealthMetric("m", "d", None, expected=True), np.bool_(True), True),
])
def test_passes_at_and_around_each_bound(metric, value, passed):
    assert metric.passes(value) is passed


def test_measure_without_data_gives_values_that_fail_and_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. numpy's "Mean of empty slice"
        values = measure([{"adapter_only": True, "train/approx_kl": 0.02}], {}, [], float("nan"), False)
    assert values["clean_exit"] is False
    for name in ("approx_kl", "clip_fraction", "explained_variance", "llm_query_rate", "llm_confidence",
                 "disagreement_rate", "override_rate", "episode_length", "overfitting_gap"):
        assert math.isnan(values[name]), name
    assert health_report(values)["failed"] == [m.name for m in METRICS]


def test_measure_skips_updates_without_a_value_and_reads_the_telemetry_by_name():
    updates = [{"adapter_only": False, "train/approx_kl": 0.02, "train/explained_variance": 0.4},
               {"adapter_only": False, "train/clip_fraction": 0.1},  # no KL logged in this one
               {"adapter_only": False, "train/approx_kl": 0.04, "train/clip_fraction": 0.2}]
    rates = {"query_rate": 0.2, "mean_confidence": 0.45, "disagreement_rate": 0.1, "override_rate": 0.03}
    values = measure(updates, rates, (10, 20, 60), 0.5, 1)
    assert values["approx_kl"] == pytest.approx(0.03)  # (0.02 + 0.04) / 2, not / 3
    assert values["clip_fraction"] == pytest.approx(0.15)
    # 3 full updates: the last quarter is the last one, which has no explained variance.
    assert math.isnan(values["explained_variance"])
    assert (values["llm_query_rate"], values["llm_confidence"], values["disagreement_rate"],
            values["override_rate"]) == (0.2, 0.45, 0.1, 0.03)
    assert values["episode_length"] == 30.0 and values["overfitting_gap"] == 0.5
    assert values["clean_exit"] is True


def test_explained_variance_averages_the_last_quarter_of_the_full_updates():
    updates = [{"adapter_only": False, "train/explained_variance": ev} for ev in [0.0, 0.1, 0.2, 0.3, 0.4, 0.5,
                                                                                  0.6, 0.7]]
    assert measure(updates, {}, [], 0.0, True)["explained_variance"] == pytest.approx(0.65)  # last 2 of 8


def test_the_report_rows_carry_plain_values():
    values = {m.name: None for m in METRICS}
    values.update(approx_kl=np.float64(0.02), clean_exit=np.bool_(True), episode_length=float("inf"),
                  override_rate=1)
    report = health_report(values)
    rows = {row["metric"]: row for row in report["rows"]}
    assert list(rows) == [m.name for m in METRICS]
    assert rows["approx_kl"] == {"metric": "approx_kl", "seed_run": 1.2e-10, "this_run": 0.02,
                                 "target": "0.01 - 0.05", "passed": True, "definition": METRICS[0].definition}
    assert type(rows["approx_kl"]["this_run"]) is float
    assert rows["clean_exit"]["this_run"] is True and rows["clean_exit"]["seed_run"] is False
    assert rows["override_rate"]["this_run"] == 1.0 and rows["override_rate"]["seed_run"] is None
    assert rows["episode_length"]["this_run"] is None  # infinite: not a number to show
    assert rows["llm_query_rate"]["this_run"] is None
    assert report["all_passed"] is False
    assert report["failed"] == ["clip_fraction", "explained_variance", "llm_query_rate", "llm_confidence",
                                "disagreement_rate", "episode_length", "overfitting_gap"]


def test_notes_give_trigger_shares_the_spread_of_explained_variance_and_the_gaps_precision():
    summary = {"query_triggers": {"interval": 30, "uncertain": 10, "position_change": 5},
               "telemetry": {"steps": 200},
               "updates": [{"adapter_only": True, "train/explained_variance": -5.0},
                           {"adapter_only": False, "train/explained_variance": 0.1},
                           {"adapter_only": False},
                           {"adapter_only": False, "train/explained_variance": 0.5},
                           {"adapter_only": False, "train/explained_variance": 0.3}]}
    evaluation = {"overfitting_gap": {"gap": 0.25, "gap_standard_error": 0.13, "train_sessions": 4,
                                      "validation_sessions": 5, "train_mean_net_pnl": 1234.4,
                                      "validation_mean_net_pnl": 567.4}}
    assert health_notes(summary, evaluation) == [
        "Queries by first trigger, as a share of steps: interval 15.0%, uncertain 5.0%, position change 2.5%.",
        "explained_variance over the 3 full updates: min 0.10, median 0.30, max 0.50.",
        "overfitting_gap 0.25 +/- 0.13 (standard error) over 4 train and 5 validation sessions: "
        "mean net P&L $1,234 (train) vs $567 (validation) per session.",
    ]


def test_notes_leave_out_what_was_not_measured():
    assert health_notes({"telemetry": {"steps": 100}}, {}) == []
    assert health_notes({"query_triggers": {"interval": 3}, "telemetry": {"steps": 0}}, {}) == []
    assert health_notes({"query_triggers": {}, "telemetry": {"steps": 10},
                         "updates": [{"adapter_only": True, "train/explained_variance": 0.5}]},
                        {"overfitting_gap": {"gap": 0.1}}) == []


def test_markdown_has_the_verdict_the_table_the_definitions_and_the_notes():
    report = {"all_passed": False, "failed": ["a", "b"], "rows": [
        {"metric": "a", "seed_run": None, "this_run": 0.123456, "target": "> 0.1", "passed": True,
         "definition": "A's definition."},
        {"metric": "b", "seed_run": False, "this_run": True, "target": "no", "passed": False, "definition": "B."},
    ]}
    assert render_markdown(report, ["First note."]) == (
        "# Phase 3 training-health report\n\n"
        "**Missed: a, b**\n\n"
        "| metric | seed run | this run | target | pass |\n"
        "|---|---|---|---|---|\n"
        "| a | n/a | 0.123 | > 0.1 | PASS |\n"
        "| b | no | yes | no | FAIL |\n\n"
        "## Definitions\n\n"
        "- **a**: A's definition.\n"
        "- **b**: B.\n\n"
        "## Notes\n\n"
        "- First note.\n")
    passed = {"all_passed": True, "failed": [], "rows": report["rows"][:1]}
    assert render_markdown(passed) == (
        "# Phase 3 training-health report\n\n"
        "**All targets met.**\n\n"
        "| metric | seed run | this run | target | pass |\n"
        "|---|---|---|---|---|\n"
        "| a | n/a | 0.123 | > 0.1 | PASS |\n\n"
        "## Definitions\n\n"
        "- **a**: A's definition.\n")


def test_the_overfitting_gap_counts_one_unit_per_thousand_dollars_whatever_the_reward_scale():
    from hybrid_trader.agents.phase3 import reward_gap

    train = pd.DataFrame({"net_pnl": [500.0, -250.0, 1_000.0], "end_reason": ["session_end", "session_end",
                                                                             "session_end"]})
    validation = pd.DataFrame({"net_pnl": [-2_600.0, 400.0], "end_reason": ["drawdown_breach", "session_end"]})
    gap = reward_gap(train, validation, breach_penalty_dollars=1_000.0)
    # Train: (0.5 - 0.25 + 1.0) / 3 = 0.41667; validation: (-2.6 - 1.0 + 0.4) / 2 = -1.6.
    assert gap["train_mean_reward"] == pytest.approx(1.25 / 3)
    assert gap["validation_mean_reward"] == pytest.approx(-1.6)
    assert gap["gap"] == pytest.approx(1.25 / 3 + 1.6)
    # Sample variances (ddof 1): train 0.395833, validation 8.0 (scores -3.6 and 0.4).
    assert gap["gap_standard_error"] == pytest.approx(np.sqrt(0.3958333 / 3 + 8.0 / 2), rel=1e-6)
    assert (gap["train_sessions"], gap["validation_sessions"]) == (3, 2)
    assert gap["validation_mean_net_pnl"] == pytest.approx(-1_100.0)
