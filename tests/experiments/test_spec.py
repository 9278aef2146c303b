"""Experiment specs: configurations, overrides, sampling, trial keys and shared Phase 2 stages."""

from __future__ import annotations

import pytest

from hybrid_trader.experiments.spec import ExperimentSpec, deep_merge, dotted_override

BASE = {
    "environment": {"engine": {"contracts": 3}},
    "phase2": {"ppo": {"seed": 7, "learning_rate": 3e-4}},
    "phase3": {"ppo": {"seed": 11}, "use_advisor": True, "llm_weight": 0.2, "fusion": "fixed"},
    "advisor": {"model": {"name": "m"}},
    "evaluation": {"random_seed": 13},
}
CONFIGURATIONS = {
    "phase2": {"agent": "phase2"},
    "rl_only": {"agent": "phase3", "overrides": {"phase3": {"use_advisor": False, "llm_weight": 0.0}},
                "baseline": "phase2"},
    "hybrid": {"agent": "phase3", "baseline": "rl_only"},
}


def spec(**changes) -> ExperimentSpec:
    return ExperimentSpec.from_params({"name": "s", "seeds": [1, 2], "configurations": CONFIGURATIONS, **changes},
                                      BASE)


def test_deep_merge_and_dotted_override():
    merged = deep_merge(BASE, dotted_override("phase3.ppo.seed", 5))
    assert merged["phase3"]["ppo"] == {"seed": 5}
    assert merged["phase3"]["llm_weight"] == 0.2 and BASE["phase3"]["ppo"]["seed"] == 11  # the base is untouched


def test_trials_are_seeds_times_configurations_sharing_one_phase2_stage_per_seed():
    stages, trials = spec().trials(BASE, "data")
    assert [(t.configuration.name, t.seed) for t in trials] == [
        ("phase2", 1), ("rl_only", 1), ("hybrid", 1), ("phase2", 2), ("rl_only", 2), ("hybrid", 2)]
    assert len(stages) == 2 and {s.seed for s in stages} == {1, 2}
    assert len({t.stage_key for t in trials if t.seed == 1}) == 1
    rl_only = trials[1]
    assert rl_only.params["phase3"]["use_advisor"] is False and rl_only.params["phase3"]["ppo"]["seed"] == 1
    assert rl_only.params["phase2"]["ppo"] == {"seed": 1, "learning_rate": 3e-4}
    assert [t.evaluated_agent for t in trials[:3]] == ["phase2", "phase3_rl_only", "hybrid"]
    assert len({t.key for t in trials}) == 6


def test_trial_keys_change_with_what_the_trial_depends_on_and_only_that():
    _, trials = spec().trials(BASE, "data", "adapter-1")
    _, same = spec().trials(BASE, "data", "adapter-1")
    _, new_data = spec().trials(BASE, "other data", "adapter-1")
    _, new_adapter = spec().trials(BASE, "data", "adapter-2")
    assert [t.key for t in trials] == [t.key for t in same]
    assert all(a.key != b.key for a, b in zip(trials, new_data))
    # A new advisor adapter reruns the Phase 3 trials, not Phase 2's.
    assert [a.key == b.key for a, b in zip(trials, new_adapter)] == [True, False, False] * 2
    # Where files go and how progress shows change no result: same keys.
    relocated = deep_merge(BASE, {"phase2": {"work_dir": "elsewhere", "progress_bar": False},
                                  "phase3": {"resume": True}, "evaluation": {"agents": ["flat"]}})
    _, moved = spec().trials(relocated, "data", "adapter-1")
    assert [t.key for t in moved] == [t.key for t in trials]
    changed = deep_merge(BASE, {"phase3": {"llm_weight": 0.5}})
    _, tuned = spec().trials(changed, "data", "adapter-1")
    # rl_only sets its own llm_weight: only the hybrid's trials change.
    assert [a.key == b.key for a, b in zip(trials, tuned)] == [True, True, False] * 2


def test_comparisons_follow_the_baselines():
    assert spec().comparisons() == [("rl_only", "phase2"), ("hybrid", "rl_only")]


def test_grid_and_random_samples_around_a_configuration():
    space = {"phase3.llm_weight": [0.1, 0.4], "phase3.fusion": ["fixed", "confidence"]}
    grid = spec(sample={"base": "hybrid", "mode": "grid", "space": space})
    sampled = [c for c in grid.configurations if c.name.startswith("hybrid:")]
    assert [c.name for c in sampled] == [
        "hybrid:llm_weight-0.1:fusion-fixed", "hybrid:llm_weight-0.1:fusion-confidence",
        "hybrid:llm_weight-0.4:fusion-fixed", "hybrid:llm_weight-0.4:fusion-confidence"]
    assert all(c.baseline == "hybrid" and c.agent == "phase3" for c in sampled)
    assert sampled[3].overrides == {"phase3": {"llm_weight": 0.4, "fusion": "confidence"}}
    drawn = spec(sample={"base": "rl_only", "mode": "random", "n": 2, "seed": 3, "space": space})
    picked = [c for c in drawn.configurations if c.name.startswith("rl_only:")]
    assert len(picked) == 2 and len({c.name for c in picked}) == 2
    # The base configuration's own overrides are kept under the sampled values.
    assert all(c.overrides["phase3"]["use_advisor"] is False for c in picked)
    again = spec(sample={"base": "rl_only", "mode": "random", "n": 2, "seed": 3, "space": space})
    assert [c.name for c in again.configurations] == [c.name for c in drawn.configurations]


@pytest.mark.parametrize("changes, message", [
    ({"name": ""}, "experiments.name must be a name"),
    ({"name": "it's"}, "experiments.name must be a name"),
    ({"seeds": [1, 1]}, "distinct"),
    ({"seeds": []}, "non-empty"),
    ({"configurations": {"x": {"agent": "phase4"}}}, "agent must be one of"),
    ({"configurations": {"x": {"agent": "phase3", "overrides": {"phase3": {"llm_wieght": 0.1}}}}}, "llm_wieght"),
    ({"configurations": {"x": {"agent": "phase3", "overrides": {"market": {}}}}}, "may be overridden"),
    ({"configurations": {"x": {"agent": "phase2", "overrides": {"phase3": {"llm_weight": 0.1}}}}}, "cannot override"),
    ({"configurations": {"x": {"agent": "phase3", "baseline": "nope"}}}, "no configuration 'nope'"),
    ({"configurations": {"a b[1]": {"agent": "phase3"}}}, "not a usable name"),
    ({"configurations": {"x": {"agent": "phase3", "seed": 1}}}, "unknown key"),
    ({"evaluation": {"splits": ["holdout"]}}, "unknown split"),
    ({"sample": {"base": "hybrid", "space": {"phase3.fusion": ["fixed"]}},
      "configurations": {**CONFIGURATIONS, "hybrid:fusion-fixed": {"agent": "phase3"}}}, "unique"),
    ({"sample": {"base": "missing", "space": {"phase3.llm_weight": [0.1]}}}, "sample.base"),
    ({"sample": {"base": "hybrid", "mode": "random", "n": 9, "space": {"phase3.llm_weight": [0.1]}}}, "sample.n"),
])
def test_bad_specs_are_rejected_with_the_reason(changes, message):
    with pytest.raises(ValueError, match=message):
        spec(**changes)
