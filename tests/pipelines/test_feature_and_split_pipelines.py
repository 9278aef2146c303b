"""feature_engineering and data_split on an in-memory catalog, chained after ingestion."""

from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from hybrid_trader.datasets import SyntheticBarsDataset
from hybrid_trader.features.registry import PHASE3_DIM
from hybrid_trader.features.scaling import SCALED_FEATURES
from hybrid_trader.pipelines import data_ingestion, data_split, feature_engineering
from tests.pipelines.data_ingestion.test_pipeline import INGESTION_PARAMS


class KeptDataset(MemoryDataset):
    """A memory dataset the runner does not release, so the test can read intermediates."""

    def _release(self) -> None:
        pass


def test_features_split_and_scaling_end_to_end_in_memory():
    pipeline = data_ingestion.create_pipeline() + feature_engineering.create_pipeline() + data_split.create_pipeline()
    catalog = DataCatalog({
        "raw_bars": SyntheticBarsDataset(n_days=12, seed=2),
        "params:data_ingestion": MemoryDataset(INGESTION_PARAMS),
        "params:market": MemoryDataset({"symbol": "NQ"}),
        "params:data_split": MemoryDataset({"test_fraction": 0.2, "validation_fraction": 0.2,
                                            "embargo_days": 0, "seed": 7}),
        "params:scaling": MemoryDataset({"clip": 5.0}),
        **{name: KeptDataset() for name in pipeline.all_outputs()},
    })
    SequentialRunner().run(pipeline, catalog)

    layout = catalog.load("observation_layout")
    assert layout["phase3_dim"] == PHASE3_DIM == len(layout["columns"])
    splits = catalog.load("day_splits")
    assert splits["split"].value_counts().to_dict() == {"train": 8, "test": 2, "validation": 2}
    scaled = catalog.load("model_input_features")
    assert set(scaled["split"]) == {"train", "validation", "test"}
    assert scaled.loc[scaled["valid_for_trading"], list(SCALED_FEATURES)].abs().max().max() <= 5.0
    train_valid = scaled[(scaled["split"] == "train") & scaled["valid_for_trading"]]
    medians = train_valid[list(SCALED_FEATURES)].median()
    assert medians.abs().max() < 1e-9  # centred on the train median
    summary = catalog.load("split_summary")
    assert summary["days"]["test"] == 2 and "days_per_hidden_synthetic_regime" in summary
    assert "| **all** | 8 | 2 | 2 | 0 |" in catalog.load("split_summary_markdown")
