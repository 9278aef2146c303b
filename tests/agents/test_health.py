"""The training-health report: definitions, targets and pass/fail on hand-made values."""

import math

from hybrid_trader.agents.health import METRICS, health_report, measure, render_markdown

GOOD = {"approx_kl": 0.02, "clip_fraction": 0.1, "explained_variance": 0.7, "llm_query_rate": 0.2,
        "llm_confidence": 0.4, "disagreement_rate": 0.3, "override_rate": 0.05, "episode_length": 150.0,
        "overfitting_gap": 0.1, "clean_exit": True}


def test_every_metric_has_a_definition_and_the_seed_values_fail():
    assert [m.name for m in METRICS] == list(GOOD)
    assert all(len(m.definition) > 40 for m in METRICS)
    seed = {m.name: m.seed_value for m in METRICS}
    report = health_report(seed)
    assert not report["all_passed"] and set(report["failed"]) == set(GOOD)  # the failed run fails every row


def test_a_healthy_run_passes_and_each_boundary_is_judged():
    assert health_report(GOOD)["all_passed"]
    for name, bad in [("approx_kl", 0.06), ("approx_kl", 0.009), ("clip_fraction", 0.16), ("explained_variance", 0.6),
                      ("llm_query_rate", 0.26), ("llm_confidence", 0.3), ("disagreement_rate", 0.05),
                      ("override_rate", 0.02), ("episode_length", 80), ("overfitting_gap", 0.5),
                      ("clean_exit", False), ("approx_kl", float("nan")), ("override_rate", None)]:
        assert health_report({**GOOD, name: bad})["failed"] == [name], (name, bad)


def test_measure_uses_full_updates_and_the_last_quarter_for_explained_variance():
    updates = [{"adapter_only": True, "train/approx_kl": 1e-9, "train/clip_fraction": 0.0,
                "train/explained_variance": -1.0}]
    updates += [{"adapter_only": False, "train/approx_kl": kl, "train/clip_fraction": 0.1,
                 "train/explained_variance": ev} for kl, ev in [(0.01, 0.1), (0.03, 0.2), (0.02, 0.3), (0.04, 0.9)]]
    values = measure(updates, {"query_rate": 0.2, "mean_confidence": 0.4, "disagreement_rate": 0.1,
                               "override_rate": 0.03}, [100, 200], 0.25, True)
    assert math.isclose(values["approx_kl"], 0.025) and math.isclose(values["clip_fraction"], 0.1)
    assert values["explained_variance"] == 0.9  # the last of 4 full updates
    assert values["episode_length"] == 150.0 and values["overfitting_gap"] == 0.25
    text = render_markdown(health_report(values))
    assert "| approx_kl | 1.2e-10 | 0.025 | 0.01 - 0.05 | PASS |" in text
    assert "| explained_variance | 0.192 | 0.9 | > 0.6 | PASS |" in text
