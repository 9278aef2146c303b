"""Run the Phase 2 training node under an MLflow run until interrupted (used by test_interrupt.py).

    python -m tests.agents.interrupt_run <tracking_uri> <work_dir>
"""

import signal
import sys

import mlflow
from omegaconf import OmegaConf

from hybrid_trader.features.bar_features import compute_bar_features
from hybrid_trader.features.scaling import FeatureScaler
from hybrid_trader.market_data.clean import CleaningConfig, ingest_bars
from hybrid_trader.market_data.synthetic import SyntheticMarketConfig, generate_synthetic_bars
from hybrid_trader.pipelines.data_ingestion.nodes import describe_market
from hybrid_trader.pipelines.phase2.nodes import train_phase2_policy
from tests.conftest import PROJECT_ROOT


def main(tracking_uri: str, work_dir: str) -> None:
    result = ingest_bars(generate_synthetic_bars(SyntheticMarketConfig(n_days=3, seed=2)), CleaningConfig(), "s")
    features = compute_bar_features(result.bars, result.sessions)
    features = FeatureScaler.fit(features).transform(features)  # every bar: the volatility profile needs them
    days = sorted(features["session_date"].unique())
    features["split"] = features["session_date"].map({days[0]: "train", days[1]: "train", days[2]: "validation"})
    environment = OmegaConf.to_container(OmegaConf.load(PROJECT_ROOT / "conf/base/parameters.yml"))["environment"]
    phase2 = OmegaConf.to_container(OmegaConf.load(PROJECT_ROOT / "conf/test/parameters_phase2.yml"))["phase2"]
    phase2["ppo"].update(total_timesteps=10_000_000, checkpoint_every_steps=64, eval_every_steps=10_000_000)
    phase2["work_dir"] = work_dir
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("interrupt")
    mlflow.start_run()
    train_phase2_policy(result.bars, features, describe_market({"symbol": "NQ"}), environment, phase2)


if __name__ == "__main__":
    # A process started in the background by a non-interactive shell inherits SIGINT ignored,
    # and Python then keeps it ignored; restore Ctrl-C as an interactive run has it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    main(*sys.argv[1:3])
