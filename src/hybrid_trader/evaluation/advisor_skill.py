"""How skilled an advisor is at the flat-account question, each figure defined once here.

An advisor answers, for a flat account at a bar's close, a probability distribution over
HOLD, BUY and SELL. In this module a probability array is always ``(n, 3)`` with the columns
in the order of :data:`SKILL_ACTIONS`: column 0 HOLD, 1 BUY, 2 SELL. A label is the column
index (0 HOLD, 1 BUY, 2 SELL) of the action that paid off over the label horizon, and
``forward_points`` is the realised move over that horizon in index points (entry at the next
bar's open). Advisors are scored on validation and test bars only, never on train bars.

Figures of :func:`skill_figures` (``p`` is a row's probabilities, ``y`` its label):

* ``bars``: rows with advice. A row with any NaN probability has no advice and is left out
  of every other figure; ``coverage`` = ``bars`` / all rows (NaN with no rows).
* ``lean`` (not reported, used below) = ``p[BUY] - p[SELL]``.
* ``direction_bars``: rows with advice whose label is BUY or SELL.
* ``direction_accuracy``: share of those rows whose lean has the label's sign (lean > 0 for
  BUY, lean < 0 for SELL; a lean of exactly 0 counts as wrong).
* ``direction_accuracy_se`` and ``direction_accuracy_lower95``: the standard deviation
  (``ddof=1``) and the 5th percentile of the direction accuracy over ``bootstrap_draws``
  session-bootstrap draws. A draw resamples, with replacement, as many sessions as have
  direction rows, from those sessions, and pools their rows (correct rows / direction rows of
  the drawn sessions). Sessions are resampled whole because bars of one session are not
  independent. NaN with no direction rows or no draws; the draws come from
  ``numpy.random.default_rng(seed)``.
* ``log_loss``: mean of ``-log(max(p[y], 1e-12))``.
* ``brier``: mean over rows of ``sum over the 3 actions of (p[a] - [a == y])^2`` (0 to 2).
* ``lean_correlation``: Pearson correlation of lean with ``forward_points`` (NaN with fewer
  than 2 rows or when either is constant).
* ``top_hold_share``, ``top_buy_share``, ``top_sell_share``: share of rows whose top answer
  (argmax of ``p``; a tie goes to the first column, HOLD before BUY before SELL) is each action.
* ``follow_net_points``: mean over rows of ``side * forward_points - cost_points * |side|``
  with ``side`` = +1 when the top answer is BUY, -1 when SELL, 0 when HOLD: the P&L of
  following the top answer alone, per decision (HOLD decisions included, at 0), one contract,
  in points, net of the round-trip cost ``cost_points``.
* ``follow_net_dollars`` = ``follow_net_points * point_value``.
* ``follow_trades``: share of rows whose side is not 0.

Every figure other than ``bars``, ``direction_bars`` and ``coverage`` is NaN when no row has
advice; the direction figures are NaN when no row with advice has a BUY or SELL label.

Reference advisors: :func:`always_buy` and :class:`LogisticBaseline` (a multinomial logistic
regression on the numeric prompt features, fitted on train rows only).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from hybrid_trader.advisor.labels import LABEL_ACTIONS, LABEL_WORDS

__all__ = ["SKILL_ACTIONS", "SKILL_NAMES", "skill_figures", "always_buy", "LogisticBaseline",
           "skill_report", "render_skill_markdown", "FIGURE_DEFINITIONS"]

SKILL_ACTIONS: tuple[int, int, int] = LABEL_ACTIONS
"""The action of each probability column: 0 HOLD, 1 BUY, 2 SELL."""
SKILL_NAMES: tuple[str, str, str] = LABEL_WORDS

_HOLD, _BUY, _SELL = 0, 1, 2  # column indices
_LOG_FLOOR = 1e-12
_SUM_TOLERANCE = 1e-5  # float32 probabilities renormalised upstream are off by ~1e-7

FIGURE_DEFINITIONS: dict[str, str] = {
    "direction accuracy": "among bars labelled BUY or SELL, the share where lean = P(BUY) - P(SELL) "
                          "has the label's sign (lean 0 is wrong); ± its session-bootstrap standard "
                          "deviation",
    "lower 95%": "5th percentile of the session-bootstrap direction accuracy",
    "log loss": "mean of -log(max(P(label), 1e-12))",
    "Brier": "mean over bars of the sum over HOLD, BUY, SELL of (P - 1[label])^2",
    "lean corr.": "Pearson correlation of lean with the realised forward move in points",
    "top BUY/HOLD/SELL": "share of bars whose most probable answer is BUY, HOLD, SELL "
                         "(ties go to HOLD, then BUY)",
    "follow net $/decision": "mean over bars of the net P&L, in dollars, of one contract following "
                             "the top answer alone (BUY long, SELL short, HOLD nothing) over the "
                             "label horizon, after the round-trip cost",
    "coverage": "share of bars with advice (bars without it are left out of every other figure)",
}

_NAN = float("nan")


def _check_labels(labels: np.ndarray, n: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {y.shape}")
    if n and not (np.issubdtype(y.dtype, np.number) and np.isin(y, (0, 1, 2)).all()):
        raise ValueError("labels must be 0 (HOLD), 1 (BUY) or 2 (SELL)")
    return y.astype(int)


def _session_bootstrap(correct: np.ndarray, sessions: np.ndarray, draws: int,
                       seed: int) -> tuple[float, float]:
    """(std, 5th percentile) of the pooled accuracy over session-resampled draws."""
    if len(correct) == 0 or draws <= 0:
        return _NAN, _NAN
    # factorize accepts any hashable session key (dates, strings, datetime64).
    session_index, keys = pd.factorize(pd.Series(sessions, dtype=object), use_na_sentinel=False)
    n_sessions = len(keys)
    hits = np.bincount(session_index, weights=correct.astype(float), minlength=n_sessions)
    totals = np.bincount(session_index, minlength=n_sessions).astype(float)
    rng = np.random.default_rng(seed)
    # Every session drawn has at least one row, so no draw divides by zero.
    drawn = rng.integers(0, n_sessions, size=(draws, n_sessions))
    accuracy = hits[drawn].sum(axis=1) / totals[drawn].sum(axis=1)
    se = float(accuracy.std(ddof=1)) if draws > 1 else _NAN
    return se, float(np.percentile(accuracy, 5))


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2:
        return _NAN
    da, db = a - a.mean(), b - b.mean()
    denominator = math.sqrt(float(np.dot(da, da)) * float(np.dot(db, db)))
    return float(np.dot(da, db) / denominator) if denominator > 0 else _NAN


def skill_figures(probabilities: np.ndarray, labels: np.ndarray, forward_points: np.ndarray,
                  cost_points: float, sessions: np.ndarray, *, point_value: float,
                  bootstrap_draws: int = 2000, seed: int = 0) -> dict[str, float]:
    """An advisor's skill figures on ``n`` bars (defined in the module docstring).

    ``probabilities`` is ``(n, 3)`` in HOLD, BUY, SELL order (NaN rows: no advice),
    ``labels`` the paying column per bar, ``forward_points`` the realised move in points,
    ``cost_points`` the round-trip cost of one contract in points, ``sessions`` each bar's
    session (for the bootstrap) and ``point_value`` dollars per point.
    """
    p = np.asarray(probabilities, dtype=float)
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f"probabilities must have shape (n, 3) (HOLD, BUY, SELL), got {p.shape}")
    n = p.shape[0]
    y = _check_labels(labels, n)
    forward = np.asarray(forward_points, dtype=float)
    if forward.shape != (n,):
        raise ValueError(f"forward_points must have shape ({n},), got {forward.shape}")
    session = np.asarray(sessions)
    if session.shape != (n,):
        raise ValueError(f"sessions must have shape ({n},), got {session.shape}")
    if bootstrap_draws < 0:
        raise ValueError(f"bootstrap_draws must be >= 0, got {bootstrap_draws}")

    advised = ~np.isnan(p).any(axis=1)
    p, y, forward, session = p[advised], y[advised], forward[advised], session[advised]
    bars = int(advised.sum())
    # Malformed advice would give meaningless figures rather than an error, so refuse it.
    if bars and ((p < 0).any() or np.abs(p.sum(axis=1) - 1.0).max() > _SUM_TOLERANCE):
        raise ValueError("each advised row of probabilities must be non-negative and sum to 1")
    if not np.isfinite(forward).all():
        raise ValueError("forward_points must be finite on every row with advice")

    lean = p[:, _BUY] - p[:, _SELL]
    direction = y != _HOLD
    correct = np.where(y[direction] == _BUY, lean[direction] > 0, lean[direction] < 0)
    se, lower95 = _session_bootstrap(correct, session[direction], bootstrap_draws, seed)

    top = p.argmax(axis=1) if bars else np.zeros(0, dtype=int)
    side = np.select([top == _BUY, top == _SELL], [1.0, -1.0], 0.0)
    follow = side * forward - float(cost_points) * np.abs(side)
    onehot = np.eye(3)[y]

    def mean(values: np.ndarray) -> float:
        return float(values.mean()) if len(values) else _NAN

    follow_net_points = mean(follow)
    return {
        "bars": float(bars),
        "coverage": bars / n if n else _NAN,
        "direction_accuracy": mean(correct.astype(float)),
        "direction_bars": float(len(correct)),
        "direction_accuracy_se": se,
        "direction_accuracy_lower95": lower95,
        "log_loss": mean(-np.log(np.maximum(p[np.arange(bars), y], _LOG_FLOOR))),
        "brier": mean(((p - onehot) ** 2).sum(axis=1)),
        "lean_correlation": _pearson(lean, forward),
        "top_buy_share": mean((top == _BUY).astype(float)),
        "top_hold_share": mean((top == _HOLD).astype(float)),
        "top_sell_share": mean((top == _SELL).astype(float)),
        "follow_net_points": follow_net_points,
        "follow_net_dollars": follow_net_points * float(point_value),
        "follow_trades": mean((side != 0).astype(float)),
    }


def always_buy(n: int) -> np.ndarray:
    """The always-BUY advisor: ``(n, 3)`` rows ``(0, 1, 0)``."""
    out = np.zeros((n, 3))
    out[:, _BUY] = 1.0
    return out


class LogisticBaseline:
    """Multinomial logistic regression on prompt features, standardised (``C=1``, 1000 iterations).

    Non-numeric columns are one-hot encoded with the training columns kept at prediction
    (a category unseen in training is all zeros). A class absent from training gets
    probability 0; with a single training class every prediction is that class.
    """

    def __init__(self) -> None:
        self.columns: list[Any] = []  # raw feature columns, as fitted
        self.categorical: list[Any] = []
        self.encoded_columns: list[Any] = []  # after one-hot encoding
        self.classes: np.ndarray = np.zeros(0, dtype=int)
        self.model: Pipeline | None = None

    def _encode(self, features: pd.DataFrame) -> np.ndarray:
        encoded = pd.get_dummies(features[self.columns], columns=self.categorical, dtype=float)
        encoded = encoded.reindex(columns=self.encoded_columns, fill_value=0.0)
        values = encoded.to_numpy(dtype=float, na_value=np.nan)
        if np.isnan(values).any():
            missing = [c for c in encoded.columns if encoded[c].isna().any()]
            raise ValueError(f"numeric features have missing values in columns {missing}")
        return values

    @classmethod
    def fit(cls, features: pd.DataFrame, labels: np.ndarray) -> LogisticBaseline:
        """A baseline fitted on ``features`` (train rows only) and their labels (0, 1, 2)."""
        if len(features) == 0 or features.shape[1] == 0:
            raise ValueError(f"cannot fit the logistic baseline on empty training data "
                             f"({features.shape[0]} rows, {features.shape[1]} columns)")
        y = _check_labels(labels, len(features))
        self = cls()
        self.columns = list(features.columns)
        self.categorical = [c for c in self.columns
                            if not pd.api.types.is_numeric_dtype(features[c])]
        self.encoded_columns = list(pd.get_dummies(features, columns=self.categorical,
                                                   dtype=float).columns)
        x = self._encode(features)
        self.classes = np.unique(y)
        if len(self.classes) > 1:  # scikit-learn refuses a single class
            self.model = Pipeline([("scale", StandardScaler()),
                                   ("logistic", LogisticRegression(C=1.0, max_iter=1000))])
            self.model.fit(x, y)
        return self

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        """``(n, 3)`` probabilities in HOLD, BUY, SELL order (0 for classes absent in training)."""
        absent = [c for c in self.columns if c not in features.columns]
        if absent:
            raise ValueError(f"features lack the fitted columns {absent}")
        out = np.zeros((len(features), 3))
        if len(features) == 0:
            return out
        if self.model is None:
            out[:, self.classes[0]] = 1.0
            return out
        logistic: LogisticRegression = self.model.named_steps["logistic"]
        out[:, logistic.classes_.astype(int)] = self.model.predict_proba(self._encode(features))
        return out


def _plain(value: Any) -> Any:
    """Numbers as plain ``float``/``int`` so the report is JSON-serialisable."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    return value


def skill_report(advisors: Mapping[str, Mapping[str, np.ndarray]], rows: Mapping[str, pd.DataFrame],
                 *, cost_points: float, point_value: float, horizon_bars: int, label_rule: str,
                 market: str, bootstrap_draws: int = 2000) -> dict:
    """Skill figures of every advisor on every split of ``rows`` (e.g. validation, test).

    ``rows[split]`` has columns ``label``, ``forward_points`` and ``session_date``;
    ``advisors[name][split]`` holds that advisor's ``(len(rows[split]), 3)`` probabilities.
    Each split's bootstrap uses seed 0, so every advisor is resampled over the same sessions.
    """
    splits: dict[str, Any] = {}
    for split, frame in rows.items():
        missing = {"label", "forward_points", "session_date"} - set(frame.columns)
        if missing:
            raise ValueError(f"rows[{split!r}] lacks the columns {sorted(missing)}")
        labels = _check_labels(frame["label"].to_numpy(), len(frame))
        counts = np.bincount(labels, minlength=3)
        figures = {}
        for name, by_split in advisors.items():
            if split not in by_split:
                raise ValueError(f"advisor {name!r} has no probabilities for split {split!r}")
            probabilities = np.asarray(by_split[split], dtype=float)
            if probabilities.ndim != 2 or probabilities.shape[0] != len(frame):
                raise ValueError(f"advisor {name!r} has {probabilities.shape[0] if probabilities.ndim else 0} "
                                 f"rows of probabilities for split {split!r}, which has {len(frame)} rows")
            figures[name] = skill_figures(probabilities, labels, frame["forward_points"].to_numpy(),
                                          cost_points, frame["session_date"].to_numpy(),
                                          point_value=point_value, bootstrap_draws=bootstrap_draws)
        splits[split] = {
            "bars": len(frame),
            "sessions": int(frame["session_date"].nunique()),
            "label_shares": {name: (counts[i] / len(frame) if len(frame) else _NAN)
                             for i, name in enumerate(SKILL_NAMES)},
            "advisors": figures,
        }
    return _plain({"market": market, "horizon_bars": int(horizon_bars), "label_rule": label_rule,
                   "cost_points": float(cost_points), "point_value": float(point_value),
                   "bootstrap_draws": int(bootstrap_draws), "splits": splits})


def _fmt(value: Any) -> str:
    """Three significant digits; NaN (or a missing figure) as n/a."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.3g}"


def render_skill_markdown(report: dict) -> str:
    """The skill report of :func:`skill_report` as Markdown: one table per split, then the definitions."""
    lines = [
        f"# Advisor skill: {report['market']}",
        "",
        f"Advisors answer HOLD, BUY or SELL for a flat account on {report['market']} bars. "
        f"Labels follow the rule `{report['label_rule']}` over {report['horizon_bars']} bars, "
        f"entering at the next bar's open; a round trip of one contract costs "
        f"{_fmt(report['cost_points'])} points"
        + (f" (${_fmt(report['cost_points'] * report['point_value'])})" if "point_value" in report else "")
        + ". Train bars are never scored.",
    ]
    header = ("| Advisor | Direction accuracy (± se) | Lower 95% | Log loss | Brier | Lean corr. "
              "| Top BUY / HOLD / SELL | Follow net $/decision | Coverage |")
    for split, data in report["splits"].items():
        shares = data["label_shares"]
        lines += [
            "",
            f"## {split.capitalize()}",
            "",
            f"{data['bars']} bars in {data['sessions']} session{'' if data['sessions'] == 1 else 's'}; "
            f"labels HOLD {_fmt(shares['HOLD'])}, BUY {_fmt(shares['BUY'])}, SELL {_fmt(shares['SELL'])}.",
            "",
            header,
            "|" + "---|" * header.count(" | ") + "---|",
        ]
        for name, f in data["advisors"].items():
            lines.append(
                f"| {name} | {_fmt(f['direction_accuracy'])} ± {_fmt(f['direction_accuracy_se'])} "
                f"(n={int(f['direction_bars'])}) | {_fmt(f['direction_accuracy_lower95'])} "
                f"| {_fmt(f['log_loss'])} | {_fmt(f['brier'])} | {_fmt(f['lean_correlation'])} "
                f"| {_fmt(f['top_buy_share'])} / {_fmt(f['top_hold_share'])} / {_fmt(f['top_sell_share'])} "
                f"| {_fmt(f['follow_net_dollars'])} | {_fmt(f['coverage'])} |")
    lines += ["", "## Definitions", ""]
    lines += [f"- **{name}**: {text}." for name, text in FIGURE_DEFINITIONS.items()]
    return "\n".join(lines) + "\n"


def template_fields(state_template: str, examples: pd.DataFrame) -> list[str]:
    """The prompt fields that ``state_template`` shows (``{name}`` placeholders) and ``examples`` hold:
    the logistic baseline reads exactly these."""
    import string

    names = [name for _, name, _, _ in string.Formatter().parse(state_template) if name]
    return [name for name in dict.fromkeys(names) if name in examples.columns and examples[name].nunique() > 1]


def evaluate_advisors(examples: pd.DataFrame, llm_answers: Mapping[str, Mapping[str, np.ndarray]],
                      fields: list[str], *, splits: tuple[str, ...] = ("validation", "test"),
                      **report_args: Any) -> dict:
    """The skill report of always-BUY, the logistic baseline (fitted on the train rows of
    ``examples`` over ``fields``) and each LLM advisor (``llm_answers[name][split]``: ``(n, 3)``
    probabilities on that split's rows of ``examples``), on ``splits``.

    ``examples`` has one row per bar: ``split``, ``session_date``, ``label``, ``forward_points``
    and the prompt's fields (:func:`hybrid_trader.advisor.labels.advisor_examples`).
    """
    train = examples.loc[examples["split"] == "train"]
    baseline = LogisticBaseline.fit(train[fields], train["label"].to_numpy())
    rows = {split: examples.loc[examples["split"] == split].reset_index(drop=True) for split in splits}
    advisors: dict[str, dict[str, np.ndarray]] = {
        "always_buy": {split: always_buy(len(r)) for split, r in rows.items()},
        "logistic": {split: baseline.predict_proba(r[fields]) for split, r in rows.items()},
    }
    advisors.update({name: dict(answers) for name, answers in llm_answers.items()})
    report = skill_report(advisors, rows, **report_args)
    report["logistic_fields"] = list(fields)
    return report
