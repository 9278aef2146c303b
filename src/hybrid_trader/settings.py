"""Kedro project settings (defaults are kept where they fit)."""

from kedro.config import OmegaConfigLoader
from omegaconf.resolvers import oc

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # An environment (test, full, planted, local) overrides single parameters and MLflow settings,
    # not whole sections.
    "merge_strategy": {"parameters": "soft", "mlflow": "soft"},
    # Kedro reads environment variables only in credentials; conf/team/mlflow.yml takes the shared
    # tracking store's URI and artifact location from them (${oc.env:...}).
    "custom_resolvers": {"oc.env": oc.env},
}
