"""What an experiment runs: seeds x named configurations, expanded into trials.

A *configuration* is a name, the agent it trains (``phase2``: the Phase 2 policy;
``phase3``: the Phase 3 policy warm-started from that seed's Phase 2 policy) and
parameter overrides merged into the project's parameters (e.g. ``phase3: {use_advisor:
false, llm_weight: 0.0}`` for RL only). A *trial* is one configuration at one seed: the
seed replaces ``phase2.ppo.seed`` and ``phase3.ppo.seed``. Trials of one seed whose
Phase 2 parameters are equal share one Phase 2 training (a *stage*).

Every trial has a key: a hash of the experiment's name, the configuration's name, agent
and resolved parameters (less :data:`IGNORED_KEYS`), the seed, a fingerprint of the data
and advisor it trains on, and :data:`TRIAL_FORMAT`. A rerun skips the trials whose key
already has a finished MLflow run, so a changed parameter or dataset runs again and an
unchanged one does not.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

__all__ = ["AGENT_KINDS", "TRIAL_FORMAT", "IGNORED_KEYS", "Configuration", "Trial", "Stage", "ExperimentSpec",
           "deep_merge", "dotted_override", "fingerprint"]

AGENT_KINDS = ("phase2", "phase3")
# Part of every key: raised when a trial's code or record changes, so older records are not reused.
TRIAL_FORMAT = 2
# Settings that do not change a trial's result (where files go, logging, other pipelines' choices):
# left out of the keys, so changing them neither retrains a stage nor reruns a trial.
IGNORED_KEYS = {
    "phase2": ("work_dir", "resume", "progress_bar", "registered_model_name"),
    "phase3": ("work_dir", "resume", "progress_bar", "registered_model_name", "phase2_source", "health"),
    "advisor": ("skill", "prescore", "save_llm_responses", "finetune"),  # the fitted adapter has its own fingerprint
    "evaluation": ("splits", "cost_multiples", "agents", "prescore_advice"),
}
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:\-]*")
# The parameter sections a trial reads; overrides may touch only these.
PARAMETER_SECTIONS = ("environment", "phase2", "phase3", "advisor", "evaluation")


def deep_merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` merged in, nested mappings merged key by key (copies, no aliasing)."""
    merged = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def dotted_override(path: str, value: Any) -> dict[str, Any]:
    """``"phase3.ppo.seed", 3`` -> ``{"phase3": {"ppo": {"seed": 3}}}``."""
    override: Any = value
    for part in reversed(path.split(".")):
        override = {part: override}
    return override


def _relevant(params: Mapping[str, Any]) -> dict[str, Any]:
    return {section: {k: v for k, v in values.items() if k not in IGNORED_KEYS.get(section, ())}
            if isinstance(values, Mapping) else values for section, values in params.items()}


def fingerprint(value: Any) -> str:
    """A stable short hash of a JSON-serialisable value (keys sorted)."""
    text = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _check_paths(overrides: Mapping[str, Any], base: Mapping[str, Any], where: str) -> None:
    """Reject overrides of unknown sections or keys: a typo must not silently train the default."""
    for key, value in overrides.items():
        if key not in base:
            raise ValueError(f"{where}: unknown parameter {key!r} (known: {sorted(base)})")
        if isinstance(value, Mapping) and isinstance(base[key], Mapping):
            _check_paths(value, base[key], f"{where}.{key}")


@dataclass(frozen=True)
class Configuration:
    """A named strategy configuration: the agent it trains and its parameter overrides."""

    name: str
    agent: str
    overrides: dict[str, Any] = field(default_factory=dict)
    baseline: str | None = None  # the configuration it is compared against (paired by seed)


@dataclass(frozen=True)
class Stage:
    """One Phase 2 training, shared by the trials of a seed with equal Phase 2 parameters."""

    key: str
    seed: int
    params: dict[str, Any]  # resolved parameter sections


@dataclass(frozen=True)
class Trial:
    """One configuration at one seed."""

    key: str
    configuration: Configuration
    seed: int
    params: dict[str, Any]  # resolved parameter sections
    stage_key: str

    @property
    def name(self) -> str:
        return f"{self.configuration.name}/seed{self.seed}"

    @property
    def evaluated_agent(self) -> str:
        """The backtest agent (:data:`hybrid_trader.evaluation.backtests.AGENTS`) that plays this trial:
        ``phase2``, or ``hybrid`` / ``phase3_rl_only`` as its resolved ``phase3.use_advisor`` says."""
        if self.configuration.agent == "phase2":
            return "phase2"
        return "hybrid" if self.params["phase3"].get("use_advisor", True) else "phase3_rl_only"


@dataclass(frozen=True)
class ExperimentSpec:
    """The ``experiments`` parameters, checked."""

    name: str
    seeds: tuple[int, ...]
    configurations: tuple[Configuration, ...]
    splits: tuple[str, ...]
    cost_multiple: float
    settings: dict[str, Any]

    @classmethod
    def from_params(cls, params: Mapping[str, Any], base: Mapping[str, Any]) -> "ExperimentSpec":
        """Build and check the spec; ``base`` holds the project's parameter sections (to check overrides)."""
        name = str(params.get("name") or "").strip()
        if not _NAME.fullmatch(name):
            raise ValueError(f"experiments.name must be a name (letters, digits, _ - . : only), got {name!r}: "
                             "it identifies the experiment's trials in MLflow")
        seeds = tuple(int(s) for s in params.get("seeds") or ())
        if not seeds or len(set(seeds)) != len(seeds):
            raise ValueError(f"experiments.seeds must be a non-empty list of distinct integers, got {seeds}")
        configurations = [cls._configuration(n, c, base) for n, c in (params.get("configurations") or {}).items()]
        configurations += cls._sampled(params.get("sample"), {c.name: c for c in configurations}, base)
        if not configurations:
            raise ValueError("experiments.configurations is empty")
        names = {c.name for c in configurations}
        if len(names) != len(configurations):
            raise ValueError(f"experiments: configuration names must be unique, got {[c.name for c in configurations]}")
        for config in configurations:
            if config.baseline is not None and config.baseline not in names:
                raise ValueError(f"experiments.configurations.{config.name}.baseline: no configuration "
                                 f"{config.baseline!r} (configurations: {sorted(names)})")
        evaluation = params.get("evaluation") or {}
        splits = tuple(evaluation.get("splits") or ("test",))
        unknown = set(splits) - {"train", "validation", "test"}
        if unknown:
            raise ValueError(f"experiments.evaluation.splits: unknown split(s) {sorted(unknown)}")
        cost = float(evaluation.get("cost_multiple", 1.0))
        if cost <= 0:
            raise ValueError(f"experiments.evaluation.cost_multiple must be positive, got {cost}")
        return cls(name, seeds, tuple(configurations), splits, cost, dict(params))

    @staticmethod
    def _configuration(name: str, raw: Mapping[str, Any] | None, base: Mapping[str, Any]) -> Configuration:
        raw = dict(raw or {})
        if not _NAME.fullmatch(str(name)):
            raise ValueError(f"experiments.configurations: {name!r} is not a usable name (letters, digits, "
                             "_ - . : only; it becomes part of MLflow metric names)")
        unknown = set(raw) - {"agent", "overrides", "baseline"}
        if unknown:
            raise ValueError(f"experiments.configurations.{name}: unknown key(s) {sorted(unknown)}")
        agent = raw.get("agent", "phase3")
        if agent not in AGENT_KINDS:
            raise ValueError(f"experiments.configurations.{name}.agent must be one of {AGENT_KINDS}, got {agent!r}")
        overrides = dict(raw.get("overrides") or {})
        bad = set(overrides) - set(PARAMETER_SECTIONS)
        if bad:
            raise ValueError(f"experiments.configurations.{name}.overrides: only {PARAMETER_SECTIONS} may be "
                             f"overridden, got {sorted(bad)}")
        _check_paths(overrides, base, f"experiments.configurations.{name}.overrides")
        if agent == "phase2" and "phase3" in overrides:
            raise ValueError(f"experiments.configurations.{name}: a phase2 configuration cannot override phase3")
        return Configuration(str(name), agent, overrides, raw.get("baseline"))

    @classmethod
    def _sampled(cls, sample: Mapping[str, Any] | None, named: Mapping[str, Configuration],
                 base: Mapping[str, Any]) -> list[Configuration]:
        """Configurations drawn from ``sample.space`` (dotted parameter -> values) around ``sample.base``:
        every combination (``mode: grid``) or ``n`` distinct ones at random (``mode: random``, seeded)."""
        if not sample:
            return []
        origin = named.get(sample.get("base"))
        if origin is None:
            raise ValueError(f"experiments.sample.base must name a configuration, got {sample.get('base')!r}")
        space = {str(k): list(v) for k, v in (sample.get("space") or {}).items()}
        if not space or any(not values for values in space.values()):
            raise ValueError("experiments.sample.space must map parameters to non-empty lists of values")
        combinations = list(itertools.product(*space.values()))
        mode = sample.get("mode", "grid")
        if mode == "random":
            n = int(sample.get("n", 1))
            if not 1 <= n <= len(combinations):
                raise ValueError(f"experiments.sample.n must be in 1..{len(combinations)}, got {n}")
            picks = np.random.default_rng(int(sample.get("seed", 0))).choice(len(combinations), n, replace=False)
            combinations = [combinations[i] for i in sorted(picks)]
        elif mode != "grid":
            raise ValueError(f"experiments.sample.mode must be grid or random, got {mode!r}")
        configurations = []
        for values in combinations:
            overrides = origin.overrides
            for path, value in zip(space, values):
                overrides = deep_merge(overrides, dotted_override(path, value))
            label = ":".join(f"{path.rsplit('.', 1)[-1]}-{value}" for path, value in zip(space, values))
            configurations.append(cls._configuration(
                f"{origin.name}:{label}", {"agent": origin.agent, "overrides": overrides, "baseline": origin.name},
                base))
        return configurations

    def comparisons(self) -> list[tuple[str, str]]:
        """``(configuration, baseline)`` pairs, in configuration order."""
        return [(c.name, c.baseline) for c in self.configurations if c.baseline is not None]

    def trials(self, base: Mapping[str, Any], data_fingerprint: str,
               advisor_fingerprint: str = "") -> tuple[list[Stage], list[Trial]]:
        """Every (configuration, seed) trial, and the Phase 2 stages they need (shared where equal).
        ``advisor_fingerprint`` (the advisor's adapter) is part of Phase 3 trials' keys only."""
        stages: dict[str, Stage] = {}
        trials = []
        for seed in self.seeds:
            for config in self.configurations:
                params = deep_merge({k: base[k] for k in PARAMETER_SECTIONS if k in base}, config.overrides)
                params = deep_merge(params, {"phase2": {"ppo": {"seed": seed}}, "phase3": {"ppo": {"seed": seed}}})
                relevant = _relevant(params)
                stage_key = fingerprint({"format": TRIAL_FORMAT, "seed": seed, "phase2": relevant["phase2"],
                                         "environment": relevant["environment"], "data": data_fingerprint})
                stages.setdefault(stage_key, Stage(stage_key, seed, params))
                used = relevant if config.agent == "phase3" else {k: relevant[k] for k in ("environment", "phase2",
                                                                                           "evaluation")}
                key = fingerprint({"format": TRIAL_FORMAT, "experiment": self.name, "configuration": config.name,
                                   "agent": config.agent,
                                   "seed": seed, "params": used, "splits": self.splits, "cost": self.cost_multiple,
                                   "data": data_fingerprint,
                                   "advisor": advisor_fingerprint if config.agent == "phase3" else ""})
                trials.append(Trial(key, config, seed, params, stage_key))
        return list(stages.values()), trials
