"""Property tests are reproducible: the default Hypothesis profile is fixed."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st


def _examples_drawn() -> list[int]:
    drawn: list[int] = []

    @given(st.integers())
    def record(value: int) -> None:
        drawn.append(value)

    record()
    return drawn


def test_property_tests_draw_the_same_examples_on_every_run():
    profile = settings.default
    assert profile.derandomize and profile.database is None and profile.deadline is None
    assert profile.max_examples == 50
    first = _examples_drawn()
    assert len(set(first)) > 10 and _examples_drawn() == first
