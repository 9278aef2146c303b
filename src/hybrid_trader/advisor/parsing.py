"""Strict parsing of generated answers: ``ACTION | CONFIDENCE | REASON``.

``ACTION`` is one of the answer words of
:data:`~hybrid_trader.advisor.prompts.ANSWER_WORDS` (``HOLD``, ``BUY``,
``SELL``, ``BREAKEVEN``, ``TRAIL``, ``UNTRAIL``, ``EXIT``; case-insensitive),
``CONFIDENCE`` a number in [0, 1], ``REASON`` non-empty text; surrounding
whitespace is ignored and only the first line counts. Anything else is ``None``: an
abstention that the caller counts, never a silent HOLD.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hybrid_trader.advisor.prompts import ANSWER_WORDS
from hybrid_trader.env.actions import Action

__all__ = ["ParsedAnswer", "parse_answer"]

_WORD_TO_ACTION = {word: int(action) for action, word in ANSWER_WORDS.items()}
_PATTERN = re.compile(r"^\s*([A-Za-z_]+)\s*\|\s*(\d*\.?\d+)\s*\|\s*(\S.*?)\s*$")


@dataclass(frozen=True)
class ParsedAnswer:
    action: int
    confidence: float
    reason: str


def parse_answer(text: str, allowed: tuple[int, ...] | None = None) -> ParsedAnswer | None:
    """The answer in ``text``, or ``None`` when it is not exactly in the documented format
    (or names an action outside ``allowed``)."""
    first_line = text.strip().splitlines()[0] if text.strip() else ""
    match = _PATTERN.match(first_line)
    if not match:
        return None
    word, confidence, reason = match.group(1).upper(), float(match.group(2)), match.group(3)
    if word not in _WORD_TO_ACTION or not 0.0 <= confidence <= 1.0:
        return None
    action = _WORD_TO_ACTION[word]
    if allowed is not None and action not in allowed:
        return None
    return ParsedAnswer(int(Action(action)), confidence, reason)
