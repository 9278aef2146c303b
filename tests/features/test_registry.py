import re

from hybrid_trader.features.bar_features import FEATURE_NAMES
from hybrid_trader.features.registry import (
    OBSERVATION_COLUMNS, OBSERVATION_NAMES, PHASE2_DIM, PHASE3_DIM, PROFILE_FEATURES, WINDOW_FEATURES, render_markdown,
)
from tests.conftest import PROJECT_ROOT


def test_registry_has_261_unique_names_and_the_phase2_view_is_the_first_228():
    assert PHASE3_DIM == len(OBSERVATION_NAMES) == len(set(OBSERVATION_NAMES)) == 261
    assert PHASE2_DIM == 228
    groups = [c.group for c in OBSERVATION_COLUMNS]
    assert groups == ["window"] * 220 + ["position"] * 5 + ["state"] * 3 + ["context"] * 26 + ["account"] * 7
    assert [c.index for c in OBSERVATION_COLUMNS] == list(range(261))


def test_window_columns_are_named_oldest_first():
    assert OBSERVATION_NAMES[:20] == tuple(f"log_return_t-{k}" for k in range(19, 0, -1)) + ("log_return_t0",)
    assert OBSERVATION_NAMES[219] == "session_vol_ratio_t0"
    assert [f.name for f in WINDOW_FEATURES][8:] == ["minutes_since_open", "session_move_atr", "session_vol_ratio"]


def test_the_session_and_the_drawdown_buffer_are_in_the_phase2_view_and_no_column_repeats_another():
    """Phase 2 sees the session (move, volatility) and the distance to the drawdown floor; the clock
    time (minutes_since_open up to a constant) and the entry window (the action mask) are not columns."""
    phase2 = OBSERVATION_NAMES[:PHASE2_DIM]
    assert {"session_move_atr_t0", "session_vol_ratio_t0", "minutes_since_open_t0"} <= set(phase2)
    assert phase2[-3:] == ("stop_at_breakeven", "trailing_stop_active", "drawdown_buffer")
    assert OBSERVATION_NAMES[252:254] == ("session_efficiency", "minutes_to_flat")
    assert OBSERVATION_NAMES[254:] == ("equity_change_today", "realized_pnl_today", "consecutive_losses",
                                       "recent_win_rate", "trade_mae_atr", "trade_mfe_atr", "trades_today")
    assert not [n for n in OBSERVATION_NAMES if n.startswith(("time_of_day", "entry_window_open"))]
    assert not [n for n in phase2 if n.startswith("minutes_to_flat")]


def test_every_market_column_is_computed_and_none_is_a_level_or_index():
    market_sources = {c.source for c in OBSERVATION_COLUMNS if c.group in ("window", "context")}
    assert market_sources == set(FEATURE_NAMES) | set(PROFILE_FEATURES)
    assert PROFILE_FEATURES == ("session_vol_ratio",)
    forbidden = re.compile(r"^(open|high|low|close|price|sma\d+|vwap|index|row|date|timestamp)$")
    assert not [n for n in OBSERVATION_NAMES if forbidden.match(n)]
    assert all(c.meaning for c in OBSERVATION_COLUMNS)


def test_generated_docs_table_matches_the_registry():
    assert (PROJECT_ROOT / "docs" / "observations.md").read_text() == render_markdown()
