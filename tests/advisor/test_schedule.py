"""The query schedule on hand-written bar sequences: each trigger, the cooldown, the edges."""

from __future__ import annotations

import numpy as np
import pytest

from hybrid_trader.advisor.schedule import QuerySchedule, QueryScheduleConfig


def asked_bars(schedule: QuerySchedule, top: list[float], side: list[int]) -> list[int]:
    """Bars (of one environment) at which the schedule asks."""
    return [bar for bar, (p, s) in enumerate(zip(top, side)) if schedule.due(np.array([p]), np.array([s]))[0]]


def test_each_trigger_is_served_after_the_cooldown_and_counted_once():
    schedule = QuerySchedule(QueryScheduleConfig(query_interval=3, confidence_threshold=0.5, query_cooldown=1), 1)
    schedule.reset(side=np.array([0]))
    nan = float("nan")
    #     bar:  0    1    2    3    4     5     6    7    8    9    10
    top = [.9, .9, .5, .9, .49, .49, nan, nan, .9, .9, .9]
    side = [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1]
    # 0: first bar. 2: a top probability equal to the threshold is not uncertain. 3: interval.
    # 4: uncertain, but bar 4 is within the cooldown of 3; served at 5. 6: the position changed,
    # within the cooldown of 5; served at 7 (NaN is never uncertain). 9: the change was served,
    # nothing is pending. 10: interval (3 bars after 7).
    assert asked_bars(schedule, top, side) == [0, 3, 5, 7, 10]
    assert schedule.trigger_counts == {"interval": 3, "uncertain": 1, "position_change": 1}


def test_a_query_is_counted_under_its_first_matching_trigger_only():
    schedule = QuerySchedule(QueryScheduleConfig(query_interval=2, confidence_threshold=0.5, query_cooldown=0), 1)
    schedule.reset(side=np.array([0]))
    # 0: interval, uncertain and changed (0 -> 1): interval. 1: uncertain and changed (1 -> -1):
    # uncertain. 2: nothing (1 bar since 1). 3: interval and changed (-1 -> 0): interval.
    # 4: changed only (0 -> 1).
    assert asked_bars(schedule, [.1, .1, .9, .9, .9], [1, -1, -1, 0, 1]) == [0, 1, 3, 4]
    assert schedule.trigger_counts == {"interval": 2, "uncertain": 1, "position_change": 1}


def test_a_cooldown_longer_than_the_interval_still_asks_at_the_first_bar():
    schedule = QuerySchedule(QueryScheduleConfig(query_interval=2, confidence_threshold=0.5, query_cooldown=3), 1)
    schedule.reset()
    # Every bar is due by interval from bar 2 after a query on; the cooldown (3) lets every 4th through.
    assert asked_bars(schedule, [.9] * 9, [0] * 9) == [0, 4, 8]
    assert schedule.trigger_counts == {"interval": 3, "uncertain": 0, "position_change": 0}


def test_an_interval_of_one_without_cooldown_asks_at_every_bar():
    schedule = QuerySchedule(QueryScheduleConfig(query_interval=1, confidence_threshold=0.0, query_cooldown=0), 1)
    schedule.reset()
    assert asked_bars(schedule, [.9] * 4, [0] * 4) == [0, 1, 2, 3]


def test_environments_are_scheduled_independently():
    schedule = QuerySchedule(QueryScheduleConfig(query_interval=3, confidence_threshold=0.5, query_cooldown=1), 3)
    schedule.reset(side=np.array([0, 1, 0]))
    rows = [schedule.due(np.array([.9, .9, .2]), np.array([0, 1, 0])).tolist() for _ in range(4)]
    # env 0 and 1: first bar, then every 3rd; env 2 (uncertain): every 2nd (cooldown 1).
    assert rows == [[True, True, True], [False, False, False], [False, False, True], [True, True, False]]


def test_reset_of_some_environments_leaves_the_others_alone():
    schedule = QuerySchedule(QueryScheduleConfig(query_interval=4, confidence_threshold=0.5, query_cooldown=1), 2)
    schedule.reset(side=np.array([0, 0]))
    assert schedule.due(np.array([.9, .9]), np.array([0, 0])).tolist() == [True, True]
    assert schedule.due(np.array([.9, .9]), np.array([0, 1])).tolist() == [False, False]  # env 1 changed: pending
    # A new episode for env 1: due at its first bar whatever the interval left (its last query is
    # 2 bars back: outside the cooldown of 1).
    schedule.reset(envs=np.array([1]), side=np.array([1, -1]))
    assert schedule.due(np.array([.9, .9]), np.array([0, -1])).tolist() == [False, True]
    assert schedule.due(np.array([.9, .9]), np.array([0, -1])).tolist() == [False, False]
    assert schedule.due(np.array([.9, .9]), np.array([0, -1])).tolist() == [True, False]  # env 0: 4 bars on


def test_the_cooldown_runs_on_into_the_next_episode():
    schedule = QuerySchedule(QueryScheduleConfig(query_interval=5, confidence_threshold=0.5, query_cooldown=3), 1)
    schedule.reset(side=np.array([0]))
    uncertain = np.array([0.1])
    asked = [bool(schedule.due(uncertain, np.array([0]))[0]) for _ in range(2)]  # bars 0, 1 of episode 1
    schedule.reset(envs=np.array([0]), side=np.array([0]))  # episode 2 starts 2 bars after the last query
    asked += [bool(schedule.due(uncertain, np.array([0]))[0]) for _ in range(6)]
    # Asked at episode 1's first bar, then not before the cooldown's end (episode 2's 3rd bar),
    # then every 4th bar: 3 queries in 8 bars, never more than 1 in 4.
    assert asked == [True, False, False, False, True, False, False, False]
    schedule.reset(side=np.array([0]))  # a fresh start (all environments): due at once
    assert schedule.due(uncertain, np.array([0])).tolist() == [True]


@pytest.mark.parametrize("settings, match", [
    ({"query_interval": 0}, "query_interval must be >= 1"),
    ({"query_cooldown": -1}, "query_cooldown must be >= 0"),
    ({"confidence_threshold": -0.01}, "confidence_threshold must be in [0, 1]"),
    ({"confidence_threshold": 1.01}, "confidence_threshold must be in [0, 1]"),
])
def test_settings_out_of_range_are_rejected_naming_the_parameter(settings, match):
    with pytest.raises(ValueError) as error:
        QueryScheduleConfig(**settings)
    assert str(error.value) == f"phase3.advisor_queries.{match}"


def test_settings_at_their_limits_are_accepted():
    for settings in ({"query_interval": 1}, {"query_cooldown": 0}, {"confidence_threshold": 0.0},
                     {"confidence_threshold": 1.0}):
        QueryScheduleConfig(**settings)
    assert QueryScheduleConfig() == QueryScheduleConfig(query_interval=5, confidence_threshold=0.6, query_cooldown=3)
