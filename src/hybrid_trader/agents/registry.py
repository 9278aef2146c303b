"""The MLflow model registry face of trained policies.

A registered policy is an MLflow *pyfunc* whose ``predict`` takes one of two
inputs (docs/serving.md) and returns a DataFrame with ``action`` (0-6) and
``action_name``: the policy's deterministic choice under the action masks.

* **Bars** (a ``timestamp`` column is present): the current session's 1-minute
  bars through the decision bar plus the ``account_*`` columns; the model
  builds the observation and the masks itself with training's code
  (:func:`~hybrid_trader.agents.serving.client_observation`) and answers one
  row, the decision at the last bar.
* **Observations**: the observation columns (named as in the observation
  registry, already scaled) and, optionally, ``mask_0 ... mask_6`` (booleans;
  all actions allowed when absent); one answer per row.

Each version carries a signature (every input column optional, since the two
inputs share it) and a bars input example, and ships the SB3 zip, the feature
scaler, the observation layout, the trading rules and the project's code as
its artifacts, so that ``models:/<name>@<alias>`` needs nothing else.

Aliases: ``newest`` always names the version a run just registered; ``good``
names the newest version whose validation backtest beat its baseline.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types.schema import ColSpec, Schema

import hybrid_trader
from hybrid_trader.agents.serving import (
    BAR_INPUT_COLUMNS, ClientInputError, TradingRules, account_fields, client_input_example, client_observation,
)
from hybrid_trader.env.actions import N_ACTIONS, Action
from hybrid_trader.features.registry import ADVICE_COLUMNS, OBSERVATION_NAMES
from hybrid_trader.features.scaling import FeatureScaler

__all__ = ["PolicyPyfunc", "MASK_COLUMNS", "model_signature", "register_policy", "register_model",
           "load_registered_policy", "load_registered_sb3"]

logger = logging.getLogger(__name__)

ADVICE_NAMES = tuple(c.name for c in ADVICE_COLUMNS)

MASK_COLUMNS = [f"mask_{a}" for a in range(N_ACTIONS)]
ACTION_NAMES = np.array([a.name for a in Action])
# What the model needs to load and run, pinned at the versions it was trained with.
_REQUIRED_DISTRIBUTIONS = ("mlflow", "torch", "stable-baselines3", "sb3-contrib", "gymnasium", "pandas", "numpy",
                           "scikit-learn", "pandas-market-calendars")


def _pip_requirements() -> list[str]:
    # A local build tag (torch's "+cpu") is not on PyPI.
    return [f"{name}=={importlib.metadata.version(name).split('+')[0]}" for name in _REQUIRED_DISTRIBUTIONS]


def observation_columns(observation_dim: int) -> list[str]:
    """The observation input's column names: 228, 261 or 271 (the 261 and the advisor's opinion)."""
    return list((OBSERVATION_NAMES + ADVICE_NAMES)[:observation_dim])


def model_signature(observation_dim: int) -> ModelSignature:
    """Inputs: the bars input's columns, then the observation input's; all optional (the two
    inputs share one schema; ``predict`` says what is missing). Outputs: ``action``, ``action_name``."""
    columns = [ColSpec("string", "timestamp", required=False)]
    columns += [ColSpec("double", c, required=False) for c in BAR_INPUT_COLUMNS[1:]]
    columns += [ColSpec("double", f.name, required=False) for f in account_fields(observation_dim)]
    columns += [ColSpec("double", c, required=False) for c in observation_columns(observation_dim)]
    columns += [ColSpec("boolean", c, required=False) for c in MASK_COLUMNS]
    return ModelSignature(inputs=Schema(columns),
                          outputs=Schema([ColSpec("long", "action"), ColSpec("string", "action_name")]))


class PolicyPyfunc(mlflow.pyfunc.PythonModel):
    """Bars and an account, or observations (+ masks) -> actions, for any MaskablePPO policy zip."""

    def __init__(self, observation_dim: int) -> None:
        self.observation_dim = observation_dim

    def load_context(self, context: Any) -> None:
        from sb3_contrib import MaskablePPO

        self._model = MaskablePPO.load(context.artifacts["policy"], device="cpu")
        self._scaler = FeatureScaler.from_dict(json.loads(Path(context.artifacts["feature_scaler"]).read_text()))
        rules = context.artifacts.get("trading_rules")  # versions registered before bars input had none
        self._rules = TradingRules.from_dict(json.loads(Path(rules).read_text())) if rules else None

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        if "timestamp" in model_input.columns:
            if self._rules is None:
                raise ClientInputError("this version was registered without trading rules: send observations")
            obs, masks = client_observation(model_input, observation_dim=self.observation_dim, scaler=self._scaler,
                                            rules=self._rules)
            obs, masks = obs[None], masks[None]
        else:
            columns = observation_columns(self.observation_dim)
            missing = [c for c in columns if c not in model_input.columns]
            if missing:
                raise ClientInputError(
                    f"model input has neither bars (a 'timestamp' column; docs/serving.md) nor the "
                    f"{self.observation_dim} observation columns ({len(missing)} missing, e.g. {missing[:3]})")
            obs = model_input[columns].to_numpy(dtype=np.float32)
            if set(MASK_COLUMNS) <= set(model_input.columns):
                masks = model_input[MASK_COLUMNS].to_numpy(dtype=bool)
            else:
                masks = np.ones((len(obs), N_ACTIONS), dtype=bool)
        actions, _ = self._model.predict(obs, action_masks=masks, deterministic=True)
        actions = np.asarray(actions, dtype=np.int64).reshape(-1)
        return pd.DataFrame({"action": actions, "action_name": ACTION_NAMES[actions]})


def register_policy(
    policy_zip: Path,
    *,
    name: str,
    observation_dim: int,
    feature_scaler: dict[str, Any],
    observation_layout: dict[str, Any],
    trading_rules: TradingRules,
    input_example: pd.DataFrame,
    good: bool,
    tags: dict[str, str] | None = None,
) -> str:
    """Log the policy as a pyfunc in the active run, register it as ``name`` and set aliases.

    Args:
        input_example: A bars input (:func:`~hybrid_trader.agents.serving.client_input_example`),
            logged with the model; checked here, so that a version never shows an example it refuses.

    Returns:
        The new registered version (as a string).
    """
    client_observation(input_example, observation_dim=observation_dim,
                       scaler=FeatureScaler.from_dict(feature_scaler), rules=trading_rules)
    client = MlflowClient()
    with tempfile.TemporaryDirectory() as tmp:
        files = {"feature_scaler": feature_scaler, "observation_layout": observation_layout,
                 "trading_rules": trading_rules.to_dict()}
        artifacts = {"policy": str(policy_zip)}
        for key, content in files.items():
            path = Path(tmp) / f"{key}.json"
            path.write_text(json.dumps(content, indent=1))
            artifacts[key] = str(path)
        info = mlflow.pyfunc.log_model(
            name=name,
            python_model=PolicyPyfunc(observation_dim),
            artifacts=artifacts,
            code_paths=[str(Path(hybrid_trader.__file__).parent)],
            signature=model_signature(observation_dim),
            input_example=input_example,
            registered_model_name=name,
            pip_requirements=_pip_requirements(),
            metadata={"observation_dim": observation_dim, "inputs": "bars and account, or observations; "
                                                                     "docs/serving.md"},
        )
    version = str(info.registered_model_version)
    client.set_registered_model_alias(name, "newest", version)
    if good:
        client.set_registered_model_alias(name, "good", version)
    for key, value in (tags or {}).items():
        client.set_model_version_tag(name, version, key, value)
    return version


def register_model(model: Any, *, name: str, observation_dim: int, feature_scaler: dict[str, Any],
                   observation_layout: dict[str, Any], trading_rules: TradingRules, clean_bars: pd.DataFrame,
                   model_input_features: pd.DataFrame, good: bool,
                   validation_mean_net_pnl: float) -> dict[str, Any]:
    """Save an SB3 model and register it (:func:`register_policy`) in the active MLflow run, with an
    input example from the last train-split session of ``clean_bars``.

    Args:
        model_input_features: Gives each session's split (columns ``session_date``, ``split``); the
            example is a train day, so that no held-out day is published with every version.

    Returns:
        ``name``, ``version`` (``None`` without an active run: nothing is registered),
        ``good`` and the ``aliases`` set.
    """
    if mlflow.active_run() is None:
        logger.warning("No active MLflow run: %s is not registered", name)
        return {"name": name, "version": None, "good": False}
    train_days = model_input_features.loc[model_input_features["split"] == "train", "session_date"].unique()
    if len(train_days) == 0:
        raise ValueError("no train-split session to take the model's input example from")
    example = client_input_example(clean_bars.loc[clean_bars["session_date"].isin(train_days)], trading_rules,
                                   observation_dim)
    with tempfile.TemporaryDirectory() as tmp:
        policy_zip = Path(tmp) / "policy.zip"
        model.save(policy_zip)
        version = register_policy(policy_zip, name=name, observation_dim=observation_dim,
                                  feature_scaler=feature_scaler, observation_layout=observation_layout,
                                  trading_rules=trading_rules, input_example=example, good=good,
                                  tags={"validation_mean_net_pnl": str(validation_mean_net_pnl)})
    logger.info("Registered %s version %s (aliases: newest%s)", name, version, ", good" if good else "")
    return {"name": name, "version": version, "good": good, "aliases": ["newest"] + (["good"] if good else [])}


def load_registered_sb3(name: str, alias_or_version: str) -> Any:
    """The MaskablePPO model inside a registered version (by alias or version number)."""
    return load_registered_policy(name, alias_or_version).unwrap_python_model()._model


def load_registered_policy(name: str, alias_or_version: str) -> mlflow.pyfunc.PyFuncModel:
    """Load ``models:/<name>@<alias>`` or ``models:/<name>/<version>``."""
    uri = f"models:/{name}/{alias_or_version}" if str(alias_or_version).isdigit() else f"models:/{name}@{alias_or_version}"
    return mlflow.pyfunc.load_model(uri)
