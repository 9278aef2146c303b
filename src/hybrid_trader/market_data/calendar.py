"""Trading sessions from the CME equity-futures calendar.

Times are America/New_York. Every session this project uses spans from
``window_start`` (08:30, an hour of indicator warm-up) to the exchange close;
the last bar starts one minute before the close (16:59 on a normal day,
12:59 on an early close). ``rth_open`` (09:30) is the cash open. A bar's
timestamp is the start of its minute. A session that closes before the cash
open (Good Friday 2024 closed at 09:15) has nothing to trade and is left out.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

import pandas as pd
import pandas_market_calendars as mcal

__all__ = [
    "EXCHANGE_TZ",
    "CALENDAR_NAME",
    "WINDOW_START",
    "RTH_OPEN",
    "trading_sessions",
    "sessions_between",
    "expected_bar_times",
]

EXCHANGE_TZ = "America/New_York"
CALENDAR_NAME = "CME_Equity"
WINDOW_START = dt.time(8, 30)
RTH_OPEN = dt.time(9, 30)

SESSION_COLUMNS = [
    "session_date",
    "window_start",
    "rth_open",
    "last_bar",
    "early_close",
    "break_start",
    "break_end",
    "n_expected_bars",
]


@lru_cache(maxsize=1)
def _calendar() -> mcal.MarketCalendar:
    return mcal.get_calendar(CALENDAR_NAME)


def sessions_between(start: str | dt.date, end: str | dt.date) -> pd.DataFrame:
    """All trading sessions with ``start <= session_date <= end``.

    Returns:
        One row per session, columns :data:`SESSION_COLUMNS`; timestamps are
        tz-aware America/New_York. ``break_start``/``break_end`` are NaT when
        the session has no intraday halt inside the window.
    """
    schedule = _calendar().schedule(start_date=start, end_date=end)
    return _to_sessions(schedule)


def trading_sessions(start: str | dt.date, n_sessions: int) -> pd.DataFrame:
    """The first ``n_sessions`` trading sessions on or after ``start``."""
    if n_sessions < 1:
        raise ValueError(f"n_sessions must be >= 1, got {n_sessions}")
    start_ts = pd.Timestamp(start)
    # ~252 sessions a year; ask for enough calendar days with a margin for holidays.
    end_ts = start_ts + pd.Timedelta(days=int(n_sessions * 1.6) + 10)
    sessions = sessions_between(start_ts.date(), end_ts.date())
    return sessions.iloc[:n_sessions].reset_index(drop=True)


def _to_sessions(schedule: pd.DataFrame) -> pd.DataFrame:
    dates = pd.DatetimeIndex(schedule.index)
    day_start = dates.tz_localize(EXCHANGE_TZ)
    close = pd.DatetimeIndex(schedule["market_close"]).tz_convert(EXCHANGE_TZ)
    window_start = day_start + pd.Timedelta(hours=WINDOW_START.hour, minutes=WINDOW_START.minute)
    rth_open = day_start + pd.Timedelta(hours=RTH_OPEN.hour, minutes=RTH_OPEN.minute)
    last_bar = close - pd.Timedelta(minutes=1)
    regular_close = day_start + pd.Timedelta(hours=17)
    early = close < regular_close

    sessions = pd.DataFrame(
        {
            "session_date": dates.date,
            "window_start": window_start,
            "rth_open": rth_open,
            "last_bar": last_bar,
            "early_close": early,
        }
    )
    if {"break_start", "break_end"} <= set(schedule.columns):
        b_start = pd.DatetimeIndex(schedule["break_start"]).tz_convert(EXCHANGE_TZ)
        b_end = pd.DatetimeIndex(schedule["break_end"]).tz_convert(EXCHANGE_TZ)
        has_break = (b_end > b_start) & (b_start < close) & (b_end > window_start)
        sessions["break_start"] = b_start.where(has_break)
        sessions["break_end"] = b_end.where(has_break)
    else:
        sessions["break_start"] = pd.NaT
        sessions["break_end"] = pd.NaT
    sessions["n_expected_bars"] = [len(expected_bar_times(row)) for row in sessions.itertuples()]
    sessions = sessions.loc[sessions["last_bar"] >= sessions["rth_open"]]
    return sessions[SESSION_COLUMNS].reset_index(drop=True)


def expected_bar_times(session) -> pd.DatetimeIndex:
    """Bar start times of one session row (from :func:`sessions_between`)."""
    times = pd.date_range(session.window_start, session.last_bar, freq="1min")
    if pd.notna(session.break_start):
        times = times[(times < session.break_start) | (times >= session.break_end)]
    return times
