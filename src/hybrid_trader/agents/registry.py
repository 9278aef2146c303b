"""The MLflow model registry face of trained policies.

A registered policy is an MLflow *pyfunc*: ``predict`` takes a DataFrame with
the observation columns (named as in the observation registry) and, optionally,
``mask_0 ... mask_5`` (booleans; all actions allowed when absent) and returns a
DataFrame with one ``action`` per row: the policy's deterministic, masked
choice. The SB3 zip, the feature scaler and the observation layout travel as
the model's artifacts.

Aliases: ``newest`` always names the version a run just registered; ``good``
names the newest version whose validation backtest beat the masked random
baseline's mean net P&L.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from hybrid_trader.env.actions import N_ACTIONS
from hybrid_trader.features.registry import ADVICE_COLUMNS, OBSERVATION_NAMES

__all__ = ["PolicyPyfunc", "MASK_COLUMNS", "register_policy", "register_model", "load_registered_policy",
           "load_registered_sb3"]

logger = logging.getLogger(__name__)

ADVICE_NAMES = tuple(c.name for c in ADVICE_COLUMNS)

MASK_COLUMNS = [f"mask_{a}" for a in range(N_ACTIONS)]
_PIP_REQUIREMENTS = ["torch==2.13.0", "stable-baselines3==2.9.2", "sb3-contrib==2.9.2", "pandas==3.1.1",
                     "numpy==2.4.6"]


class PolicyPyfunc(mlflow.pyfunc.PythonModel):
    """Observations (+ masks) -> actions, for any MaskablePPO policy zip."""

    def __init__(self, observation_dim: int) -> None:
        self.observation_dim = observation_dim

    def load_context(self, context: Any) -> None:
        from sb3_contrib import MaskablePPO

        self._model = MaskablePPO.load(context.artifacts["policy"], device="cpu")

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        columns = list((OBSERVATION_NAMES + ADVICE_NAMES)[: self.observation_dim])
        missing = [c for c in columns if c not in model_input.columns]
        if missing:
            raise ValueError(f"model input lacks {len(missing)} observation columns, e.g. {missing[:3]}")
        obs = model_input[columns].to_numpy(dtype=np.float32)
        if set(MASK_COLUMNS) <= set(model_input.columns):
            masks = model_input[MASK_COLUMNS].to_numpy(dtype=bool)
        else:
            masks = np.ones((len(obs), N_ACTIONS), dtype=bool)
        actions, _ = self._model.predict(obs, action_masks=masks, deterministic=True)
        return pd.DataFrame({"action": np.asarray(actions, dtype=np.int64)})


def register_policy(
    policy_zip: Path,
    *,
    name: str,
    observation_dim: int,
    feature_scaler: dict[str, Any],
    observation_layout: dict[str, Any],
    good: bool,
    tags: dict[str, str] | None = None,
) -> str:
    """Log the policy as a pyfunc in the active run, register it as ``name`` and set aliases.

    Returns:
        The new registered version (as a string).
    """
    client = MlflowClient()
    with tempfile.TemporaryDirectory() as tmp:
        scaler_path, layout_path = Path(tmp) / "feature_scaler.json", Path(tmp) / "observation_layout.json"
        scaler_path.write_text(json.dumps(feature_scaler, indent=1))
        layout_path.write_text(json.dumps(observation_layout, indent=1))
        info = mlflow.pyfunc.log_model(
            name=name,
            python_model=PolicyPyfunc(observation_dim),
            artifacts={"policy": str(policy_zip), "feature_scaler": str(scaler_path),
                       "observation_layout": str(layout_path)},
            registered_model_name=name,
            pip_requirements=_PIP_REQUIREMENTS,
        )
    version = str(info.registered_model_version)
    client.set_registered_model_alias(name, "newest", version)
    if good:
        client.set_registered_model_alias(name, "good", version)
    for key, value in (tags or {}).items():
        client.set_model_version_tag(name, version, key, value)
    return version


def register_model(model: Any, *, name: str, observation_dim: int, feature_scaler: dict[str, Any],
                   observation_layout: dict[str, Any], good: bool, validation_mean_net_pnl: float) -> dict[str, Any]:
    """Save an SB3 model and register it (:func:`register_policy`) in the active MLflow run.

    Returns:
        ``name``, ``version`` (``None`` without an active run: nothing is registered),
        ``good`` and the ``aliases`` set.
    """
    if mlflow.active_run() is None:
        logger.warning("No active MLflow run: %s is not registered", name)
        return {"name": name, "version": None, "good": False}
    with tempfile.TemporaryDirectory() as tmp:
        policy_zip = Path(tmp) / "policy.zip"
        model.save(policy_zip)
        version = register_policy(policy_zip, name=name, observation_dim=observation_dim,
                                  feature_scaler=feature_scaler, observation_layout=observation_layout, good=good,
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
