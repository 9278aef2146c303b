"""Prompt v4's session-context fields (time, move, session_vol, strength) and the answers'
distributions for prompt texts (``Advisor.distributions``)."""

from __future__ import annotations

import numpy as np
import pytest

from hybrid_trader.advisor.advisor import Advisor, AdvisorConfig
from hybrid_trader.advisor.cache import AdviceCache
from hybrid_trader.advisor.prompts import Buckets, PromptBuilder, PromptTemplate
from hybrid_trader.features.registry import RTH_MINUTES
from tests.advisor.conftest import FLAT_MASK, up_state

FLAT = (0, 1, 2)
NAN = float("nan")


def at_minute(minute: float) -> float:
    """``minutes_since_open`` of the bar ``minute`` minutes after 09:30, as the bar features compute it."""
    return minute * 60.0 / 60.0 / RTH_MINUTES


def fields(builder=None, **overrides):
    return (builder or PromptBuilder(PromptTemplate("t", "", ""))).fields(up_state(**overrides))


@pytest.mark.parametrize(("minute", "slot"), [
    (0, "09:30"), (29, "09:30"), (30, "10:00"), (195, "12:30"), (209, "12:30"), (210, "13:00"), (224, "13:00"),
    (389, "15:30"), (-1, "09:00"),
])
def test_time_is_the_start_of_the_thirty_minute_slot_of_the_new_york_clock(minute, slot):
    assert fields(minutes_since_open=at_minute(minute))["time"] == slot


def test_a_finer_time_step_starts_its_slot_on_the_slots_own_minute():
    """Every minute of the session falls in its own slot, also where minutes * 60 / 60 / 390 * 390
    is not the minute again in floating point (e.g. 225: 224.99999999999997)."""
    quarter = PromptBuilder(PromptTemplate("t", "", ""), Buckets(time_step_minutes=15))
    for minute in range(390):
        start = 9 * 60 + 30 + minute // 15 * 15
        assert fields(quarter, minutes_since_open=at_minute(minute))["time"] == f"{start // 60:02d}:{start % 60:02d}"


@pytest.mark.parametrize(("move", "text"), [
    (0.0, "up 0-5 ATR"), (4.99, "up 0-5 ATR"), (5.0, "up 5-15 ATR"), (14.9, "up 5-15 ATR"), (15.0, "up 15+ ATR"),
    (40.0, "up 15+ ATR"), (-3.0, "down 0-5 ATR"), (-5.0, "down 5-15 ATR"), (-7.5, "down 5-15 ATR"),
    (-15.0, "down 15+ ATR"),
])
def test_move_is_the_range_of_the_sessions_move_with_its_side(move, text):
    assert fields(session_move_atr=move)["move"] == text


def test_move_ranges_follow_the_configured_edges_in_any_order():
    builder = PromptBuilder(PromptTemplate("t", "", ""), Buckets(move_edges_atr=[10, 2]))
    assert builder.buckets.move_edges_atr == (10.0, 2.0)
    assert [fields(builder, session_move_atr=m)["move"] for m in (1.0, 2.0, -9.0, 10.0)] == [
        "up 0-2 ATR", "up 2-10 ATR", "down 2-10 ATR", "up 10+ ATR"]


@pytest.mark.parametrize("edges", [[], [0, 5], [-5, 15], [5, -1]])
def test_move_edges_must_be_positive_and_at_least_one(edges):
    with pytest.raises(ValueError, match="move_edges_atr"):
        Buckets(move_edges_atr=edges)


@pytest.mark.parametrize(("ratio", "text"), [
    (0.5, "below usual"), (0.79, "below usual"), (0.8, "usual"), (1.0, "usual"), (1.25, "usual"),
    (1.26, "above usual"), (3.0, "above usual"), (NAN, "unknown"),
])
def test_session_volatility_against_the_usual_for_the_time(ratio, text):
    assert fields(session_vol_ratio=ratio)["session_vol"] == text


@pytest.mark.parametrize(("adx", "text"), [(10.0, "weak"), (24.9, "weak"), (25.0, "strong"), (60.0, "strong")])
def test_strength_is_strong_from_the_adx_threshold_on(adx, text):
    assert fields(adx14=adx)["strength"] == text


def test_the_configured_v4_prompt_reads_the_session_context(builder):
    assert builder.template.version == "v4"
    state = up_state(minutes_since_open=at_minute(195), session_move_atr=-5.0, session_vol_ratio=0.7, adx14=20.0,
                     drawdown_buffer=1800.0, position_side=-1, unrealized_pnl=-130.0)
    assert builder.state_text(state, FLAT) == (
        "\n12:30, session down 5-15 ATR, volatility below usual, weak trend.\n"
        "Short, P&L -250, floor 1500 below.<|im_end|>\n<|im_start|>assistant\n")
    assert builder.content_free_text(FLAT) == (
        "\nN/A, session N/A, volatility N/A, N/A trend.\nN/A, P&L N/A, floor N/A below.<|im_end|>\n"
        "<|im_start|>assistant\n")


def test_a_state_without_a_session_move_gets_no_advice_and_asks_nothing(builder):
    class NeverCalled:
        identity = "never"

        def option_logprobs(self, *args):
            raise AssertionError("the model must not be asked")

    advisor = Advisor(NeverCalled(), builder, AdvisorConfig())
    assert advisor._render(up_state(session_move_atr=NAN), FLAT) is None
    assert advisor.stats.bad_states == 1
    advice = advisor.advise([up_state(session_move_atr=NAN)], FLAT_MASK[None])
    assert not advice.has_advice[0] and advice.prompts == [None] and advisor.stats.bad_states == 2
    with pytest.raises(ValueError, match="session_move_atr"):
        builder.fields(up_state(session_move_atr=NAN))
    with pytest.raises(KeyError, match="session_vol_ratio"):
        builder.fields({k: v for k, v in up_state().items() if k != "session_vol_ratio"})


# -- Advisor.distributions ------------------------------------------------------------------------
class TableBackend:
    """Answers each prompt text from a table of HOLD/BUY/SELL probabilities; records every batch."""

    identity = "table"

    def __init__(self, table):
        self.table, self.batches = table, []

    def option_logprobs(self, prefix, texts, words):
        assert words == ["HOLD", "BUY", "SELL"]
        self.batches.append(list(texts))
        return np.log(np.array([self.table[t] for t in texts]))


TABLE = {"a": [0.2, 0.5, 0.3], "b": [0.6, 0.1, 0.3], "c": [0.1, 0.1, 0.8], "d": [0.25, 0.25, 0.5],
         "e": [0.4, 0.4, 0.2]}


def table_advisor(cache=None):
    backend = TableBackend(TABLE)
    builder = PromptBuilder(PromptTemplate("t", "PREFIX ", "{time}"))
    return Advisor(backend, builder, AdvisorConfig(calibrate=False), cache), backend


def test_distributions_ask_each_missing_text_once_in_batches_and_cache_the_answers():
    advisor, backend = table_advisor()
    texts = ["a", "b", "a", "c", "d", "b", "e"]
    out = advisor.distributions(texts, FLAT, batch_size=2)
    # Five distinct texts in first-seen order, two per batch; duplicates share one answer.
    assert backend.batches == [["a", "b"], ["c", "d"], ["e"]]
    expected = np.zeros((7, 7))
    expected[:, :3] = [TABLE[t] for t in texts]
    np.testing.assert_allclose(out, expected)
    assert len(advisor.cache) == 5 and advisor.stats.model_queries == 5
    np.testing.assert_allclose(advisor.cache.get(advisor._key("c", FLAT))[0], [0.1, 0.1, 0.8, 0, 0, 0, 0])

    again = advisor.distributions(["e", "a"], FLAT, batch_size=2)
    assert len(backend.batches) == 3  # every text cached: nothing asked
    np.testing.assert_allclose(again, expected[[6, 0]])


def test_distributions_ask_only_the_texts_the_cache_lacks():
    cache = AdviceCache()
    advisor, backend = table_advisor(cache)
    cache.put(advisor._key("b", FLAT), np.array([0.9, 0.05, 0.05, 0, 0, 0, 0]), 0.9)  # an earlier answer
    out = advisor.distributions(["a", "b", "c"], FLAT, batch_size=16)
    assert backend.batches == [["a", "c"]]
    np.testing.assert_allclose(out[1], [0.9, 0.05, 0.05, 0, 0, 0, 0])  # served from the cache, not re-asked
    np.testing.assert_allclose(out[[0, 2], :3], [TABLE["a"], TABLE["c"]])
    # The same texts under other allowed actions are other questions.
    assert not advisor.is_cached("a", (0,))


def test_distributions_leave_failed_answers_empty_and_uncached():
    advisor, backend = table_advisor()
    advisor.config = AdvisorConfig(calibrate=False, max_consecutive_failures=2)
    backend.table = {"a": [0.2, 0.5, 0.3]}  # "z" has no answer: the backend raises
    out = advisor.distributions(["a", "z", "a"], FLAT, batch_size=1)
    assert backend.batches == [["a"], ["z"]]
    np.testing.assert_allclose(out[[0, 2], :3], [TABLE["a"]] * 2)
    assert np.isnan(out[1]).all() and advisor.stats.failures == 1 and len(advisor.cache) == 1
    # The failed text is asked again; its second failure in a row switches the advisor off:
    # no further batches.
    again = advisor.distributions(["z", "y", "x"], FLAT, batch_size=1)
    assert advisor.stats.disabled and backend.batches == [["a"], ["z"], ["z"]] and np.isnan(again).all()
