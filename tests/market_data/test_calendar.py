import datetime as dt

import pandas as pd

from hybrid_trader.market_data.calendar import expected_bar_times, sessions_between, trading_sessions


def test_holidays_are_skipped_and_early_closes_shorten_the_session():
    sessions = sessions_between("2024-12-20", "2025-01-03")
    dates = set(sessions["session_date"])
    assert dt.date(2024, 12, 25) not in dates and dt.date(2025, 1, 1) not in dates
    christmas_eve = sessions.set_index("session_date").loc[dt.date(2024, 12, 24)]
    assert christmas_eve["early_close"]
    assert christmas_eve["last_bar"] == pd.Timestamp("2024-12-24 12:59", tz="America/New_York")
    assert christmas_eve["n_expected_bars"] == 270  # 08:30 .. 12:59
    regular = sessions.set_index("session_date").loc[dt.date(2024, 12, 23)]
    assert not regular["early_close"] and regular["n_expected_bars"] == 510  # 08:30 .. 16:59


def test_session_window_is_fixed_in_new_york_across_dst():
    sessions = sessions_between("2024-03-08", "2024-03-11").set_index("session_date")
    before, after = sessions.loc[dt.date(2024, 3, 8)], sessions.loc[dt.date(2024, 3, 11)]
    assert before["window_start"].tz_convert("UTC") == pd.Timestamp("2024-03-08 13:30", tz="UTC")
    assert after["window_start"].tz_convert("UTC") == pd.Timestamp("2024-03-11 12:30", tz="UTC")
    times = expected_bar_times(sessions.reset_index().iloc[1])
    assert times[0].strftime("%H:%M") == "08:30" and times[-1].strftime("%H:%M") == "16:59"
    assert (times[1:] - times[:-1] == pd.Timedelta(minutes=1)).all()


def test_trading_sessions_counts_sessions_not_calendar_days():
    sessions = trading_sessions("2024-11-25", 5)
    assert list(sessions["session_date"].astype(str)) == [
        "2024-11-25", "2024-11-26", "2024-11-27", "2024-11-28", "2024-11-29",
    ]
    assert sessions["early_close"].tolist() == [False, False, False, True, True]


def test_a_session_closing_before_the_cash_open_is_left_out():
    # Good Friday 2024: CME equity futures traded only until 09:15 ET.
    dates = set(sessions_between("2024-03-28", "2024-04-01")["session_date"].astype(str))
    assert dates == {"2024-03-28", "2024-04-01"}
