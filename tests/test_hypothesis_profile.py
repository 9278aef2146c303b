"""Property tests are reproducible: the default Hypothesis profile is fixed."""

from __future__ import annotations

import pytest
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
    if settings.get_current_profile_name() != "ci":  # HYPOTHESIS_PROFILE=explore searches afresh on purpose
        pytest.skip(f"the {settings.get_current_profile_name()!r} Hypothesis profile is active")
    profile = settings.default
    assert profile.derandomize and profile.database is None and profile.deadline is None
    assert profile.max_examples == 50
    first = _examples_drawn()
    assert len(set(first)) > 10 and _examples_drawn() == first
