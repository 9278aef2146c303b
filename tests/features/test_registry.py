import re

from hybrid_trader.features.bar_features import FEATURE_NAMES
from hybrid_trader.features.registry import (
    OBSERVATION_COLUMNS, OBSERVATION_NAMES, PHASE2_DIM, PHASE3_DIM, WINDOW_FEATURES, render_markdown,
)
from tests.conftest import PROJECT_ROOT


def test_registry_has_261_unique_names_and_the_phase2_view_is_the_first_228():
    assert PHASE3_DIM == len(OBSERVATION_NAMES) == len(set(OBSERVATION_NAMES)) == 261
    assert PHASE2_DIM == 228
    groups = [c.group for c in OBSERVATION_COLUMNS]
    assert groups == ["window"] * 220 + ["position"] * 5 + ["state"] * 3 + ["context"] * 25 + ["account"] * 8
    assert [c.index for c in OBSERVATION_COLUMNS] == list(range(261))


def test_window_columns_are_named_oldest_first():
    assert OBSERVATION_NAMES[:20] == tuple(f"log_return_t-{k}" for k in range(19, 0, -1)) + ("log_return_t0",)
    assert OBSERVATION_NAMES[219] == "minutes_to_flat_t0"
    assert len(WINDOW_FEATURES) == 11


def test_every_market_column_is_computed_and_none_is_a_level_or_index():
    market_sources = {c.source for c in OBSERVATION_COLUMNS if c.group in ("window", "context")}
    assert market_sources == set(FEATURE_NAMES)
    forbidden = re.compile(r"^(open|high|low|close|price|sma\d+|vwap|index|row|date|timestamp)$")
    assert not [n for n in OBSERVATION_NAMES if forbidden.match(n)]
    assert all(c.meaning for c in OBSERVATION_COLUMNS)


def test_generated_docs_table_matches_the_registry():
    assert (PROJECT_ROOT / "docs" / "observations.md").read_text() == render_markdown()
