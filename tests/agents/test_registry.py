"""The registered models as a client uses them: bars and an account in, an action out.

One small registry per module: a Phase 2 policy and a Phase 3 hybrid (both tiny), with a
real feature scaler fitted on three synthetic sessions, in a temporary SQLite MLflow store.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from hybrid_trader.agents.advised_env import AdvisedVecEnv
from hybrid_trader.agents.adapter import phase3_from_phase2
from hybrid_trader.advisor.schedule import QueryScheduleConfig
from hybrid_trader.agents.registry import MASK_COLUMNS, load_registered_policy, model_signature, register_policy
from hybrid_trader.agents.serving import (
    ClientInputError, TradingRules, account_fields, client_input_example, client_observation,
)
from hybrid_trader.env.actions import N_ACTIONS, Action
from hybrid_trader.env.engine import EngineConfig
from hybrid_trader.env.market import MarketData
from hybrid_trader.env.vec_env import TradingVecEnv
from hybrid_trader.features.registry import ADVICE_COLUMNS, HYBRID_DIM, OBSERVATION_NAMES, PHASE2_DIM, PHASE3_DIM
from hybrid_trader.markets import CONTRACTS

ADVICE_NAMES = [c.name for c in ADVICE_COLUMNS]
HYBRID_NAMES = list(OBSERVATION_NAMES) + ADVICE_NAMES
RULES = TradingRules(CONTRACTS["NQ"], EngineConfig(), "09:30", "16:00")
# A loaded 2-core machine starts a model server in about a minute; allow far more.
SERVER_START_LIMIT_S = 600


@pytest.fixture(scope="module")
def data(synthetic_ingestion):
    """Three synthetic sessions (the third an early close): clean bars, a fitted scaler, market arrays."""
    bars, features, scaler = synthetic_ingestion
    market = MarketData.from_frames(bars, scaler.transform(features), RULES.contract,
                                    entry_start=RULES.entry_start, entry_end=RULES.entry_end)
    return bars, scaler, market


def bars_input(bars: pd.DataFrame, market: MarketData, t: int) -> pd.DataFrame:
    """What a client sends at the close of market row ``t``: its session's bars through ``t``."""
    day = market.session_dates[market.session_id[t]]
    session = bars.loc[bars["session_date"] == day]
    rows = session.loc[: t]
    frame = pd.DataFrame({"timestamp": rows["timestamp"].map(lambda ts: ts.isoformat()).astype(object)})
    for column in ("open", "high", "low", "close", "volume"):
        frame[column] = rows[column].to_numpy()
    return frame.reset_index(drop=True)


def account_of(engine, i: int = 0) -> dict[str, float]:
    """The client's account columns for environment ``i`` of a training engine."""
    return dict(
        account_position=float(engine.side[i]), account_entry_price=engine.entry[i],
        account_stop_price=engine.stop[i], account_target_price=engine.target[i],
        account_bars_held=float(engine.bars_in_position[i]), account_stop_at_breakeven=float(engine.at_breakeven[i]),
        account_trailing_stop=float(engine.trailing[i]), account_balance=engine.cash[i],
        account_session_start_balance=engine.config.starting_balance, account_drawdown_floor=engine.floor[i],
        account_realized_pnl_today=engine.realized_today[i],
        account_consecutive_losses=float(engine.consecutive_losses[i]),
        account_closed_trades_today=float(engine.closed_trades[i]), account_wins_last_10=float(engine.recent_wins[i]),
        account_entries_today=float(engine.trades_today[i]), account_trade_mae_points=engine.mae[i],
        account_trade_mfe_points=engine.mfe[i],
    )


def flat_account(dim: int) -> dict[str, float]:
    """A flat account at the start of a session (the position and drawdown columns for Phase 2)."""
    account = {f.name: 0.0 for f in account_fields(dim)}
    account.update(account_balance=50_000.0, account_drawdown_floor=47_500.0)
    if dim != PHASE2_DIM:
        account.update(account_session_start_balance=50_000.0)
    return account


@pytest.fixture(scope="module")
def registry(data, tmp_path_factory):
    """``phase2_policy`` v1 (good) and v2 (not good), ``phase3_hybrid`` v1 (not good)."""
    from sb3_contrib import MaskablePPO

    bars, scaler, market = data
    root = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.create_experiment("client", artifact_location=(root / "artifacts").as_uri())
    env2 = TradingVecEnv(market, EngineConfig(), n_envs=2, phase=2, seed=0)
    phase2 = MaskablePPO("MlpPolicy", env2, n_steps=32, batch_size=32, n_epochs=1, seed=1,
                         policy_kwargs={"net_arch": [32, 32]}, device="cpu")
    phase2.learn(64)
    env3 = AdvisedVecEnv(TradingVecEnv(market, EngineConfig(), n_envs=2, phase=3, seed=0),
                         np.zeros((market.n_bars, 8)), None, QueryScheduleConfig())
    # A heavy advisor weight: an opinion decides the unmasked argmax, so that masks visibly matter.
    hybrid = phase3_from_phase2(phase2, env3, llm_weight=0.9, n_steps=32, batch_size=32, seed=2)
    examples = {PHASE2_DIM: client_input_example(bars, RULES, PHASE2_DIM),
                HYBRID_DIM: client_input_example(bars, RULES, HYBRID_DIM)}
    versions = []
    with mlflow.start_run(experiment_id=experiment):
        for name, model, dim, good in (("phase2_policy", phase2, PHASE2_DIM, True),
                                       ("phase3_hybrid", hybrid, HYBRID_DIM, False),
                                       ("phase2_policy", phase2, PHASE2_DIM, False)):
            zip_path = root / f"v{len(versions)}" / "policy.zip"  # the name the pipeline saves it under
            zip_path.parent.mkdir()
            model.save(zip_path)
            versions.append(register_policy(
                zip_path, name=name, observation_dim=dim, feature_scaler=scaler.to_dict(),
                observation_layout={"phase2_dim": PHASE2_DIM}, trading_rules=RULES, input_example=examples[dim],
                good=good))
    yield {"uri": uri, "root": root, "versions": versions, "models": {"phase2_policy": phase2,
                                                                       "phase3_hybrid": hybrid},
           "dims": {"phase2_policy": PHASE2_DIM, "phase3_hybrid": HYBRID_DIM}, "examples": examples}
    mlflow.set_tracking_uri(previous)


def in_process_action(registry, data, name: str, frame: pd.DataFrame) -> int:
    """The original SB3 model's answer to a bars input, without MLflow."""
    _, scaler, _ = data
    dim = registry["dims"][name]
    obs, masks = client_observation(frame, observation_dim=dim, scaler=scaler, rules=RULES)
    action, _ = registry["models"][name].predict(obs[None], action_masks=masks[None], deterministic=True)
    return int(action[0])


# ------------------------------------------------------------------ the observation


@pytest.mark.parametrize("starting_balance, carried_peak", [
    (50_000.0, None),  # a fresh account: the engine's defaults
    # An account carried over from earlier sessions: another session start balance, and a floor
    # that trails a peak reached before this session (51,634 - 2,500 = 49,134, not the start's 48,734).
    (51_234.0, 51_634.0),
], ids=["fresh_account", "carried_over_account"])
def test_the_observation_from_bars_and_account_equals_the_training_environments(data, starting_balance,
                                                                                 carried_peak):
    """At bars where the training engine is flat, long, short, trailing, at break-even, after
    losses, the client-built observation and masks are the environment's, exactly (float32).
    The client's rules keep the default starting balance: the account columns alone carry it."""
    bars, scaler, market = data
    env = TradingVecEnv(market, EngineConfig(episode_mode="full_session", starting_balance=starting_balance),
                        n_envs=1, phase=3)
    obs = env.reset()
    engine = env.engine
    if carried_peak is not None:
        engine.peak[0] = carried_peak
        engine.floor[0] = carried_peak - engine.config.drawdown_limit
        obs = env.builder.build(engine)
        assert engine.floor[0] == 49_134.0 != starting_balance - RULES.engine.drawdown_limit
    rng = np.random.default_rng(4)
    seen: set[str] = set()
    checks = 0
    for step in range(700):
        side = int(engine.side[0])
        state = {0: "flat", 1: "long", -1: "short"}[side]
        state += "+trailing" * bool(engine.trailing[0]) + "+breakeven" * bool(engine.at_breakeven[0])
        state += "+after_loss" * bool(engine.consecutive_losses[0])
        if state not in seen or step % 97 == 0:
            seen.add(state)
            frame = bars_input(bars, market, int(engine.t[0])).assign(**account_of(engine))
            for dim, expected in ((PHASE2_DIM, obs[0, :PHASE2_DIM]), (PHASE3_DIM, obs[0]),
                                  (HYBRID_DIM, np.concatenate([obs[0], np.zeros(len(ADVICE_NAMES), dtype=np.float32)]))):
                got, masks = client_observation(frame, observation_dim=dim, scaler=scaler, rules=RULES)
                assert got.dtype == np.float32 and got.shape == (dim,)
                np.testing.assert_array_equal(got, expected, err_msg=f"{state} at step {step}, {dim} columns")
                np.testing.assert_array_equal(masks, env.action_masks()[0])
            checks += 1
        allowed = np.flatnonzero(env.action_masks()[0])
        # Prefer managing an open position, so that trailing and break-even states occur.
        action = rng.choice(allowed[allowed >= 3]) if side and (allowed >= 3).any() and rng.random() < 0.3 \
            else rng.choice(allowed)
        obs, _, _, _ = env.step(np.array([action]))
    assert {"flat", "long", "short"} <= {s.split("+")[0] for s in seen}
    assert any("trailing" in s for s in seen) and any("after_loss" in s for s in seen), seen
    assert any("breakeven" in s for s in seen), seen
    assert checks >= 8


def test_advice_columns_pass_into_the_hybrid_observation_and_a_partial_opinion_is_refused(data):
    bars, scaler, market = data
    t = int(np.flatnonzero(market.entry_allowed)[40])
    frame = bars_input(bars, market, t).assign(**flat_account(HYBRID_DIM))
    opinion = [0.1, 0.6, 0.1, 0.0, 0.0, 0.0, 0.0, 0.6, 0.3, 1.0]  # 7 probabilities, confidence, age, present
    got, _ = client_observation(frame.assign(**dict(zip(ADVICE_NAMES, opinion))), observation_dim=HYBRID_DIM,
                                scaler=scaler, rules=RULES)
    np.testing.assert_array_equal(got[PHASE3_DIM:], np.array(opinion, dtype=np.float32))
    with pytest.raises(ClientInputError, match="advice needs all of"):
        client_observation(frame.assign(advice_p_buy=1.0), observation_dim=HYBRID_DIM, scaler=scaler, rules=RULES)


@pytest.mark.parametrize("change, message", [
    (lambda f: f.iloc[:45], "too few bars"),
    (lambda f: f.drop(index=30), "bar 31 should start at 09:00 but is 09:01"),
    (lambda f: f.iloc[10:], "bar 1 should start at 08:30 but is 08:40"),
    (lambda f: f.drop(columns=["volume"]), r"lacks the column\(s\) \['volume'\]"),
    (lambda f: f.drop(columns=["account_drawdown_floor"]), "account_drawdown_floor"),
    (lambda f: f.assign(timestamp=f["timestamp"].str[:19]), "has no UTC offset"),
    (lambda f: f.assign(account_position=2.0), "account_position must be -1, 0 or 1"),
    (lambda f: f.assign(account_wins_last_10=1.0), "exceeds min"),
    (lambda f: f.assign(close=np.where(f.index == 50, np.nan, f["close"])), "missing, non-positive"),
])
def test_bad_bars_inputs_are_refused_with_what_to_send(data, change, message):
    bars, scaler, market = data
    t = int(np.flatnonzero(market.entry_allowed)[40])  # a decision bar well inside the first session
    frame = bars_input(bars, market, t).assign(**flat_account(PHASE3_DIM))
    client_observation(frame, observation_dim=PHASE3_DIM, scaler=scaler, rules=RULES)  # the unchanged input is fine
    with pytest.raises(ClientInputError, match=message):
        client_observation(change(frame), observation_dim=PHASE3_DIM, scaler=scaler, rules=RULES)


def test_the_first_defined_decision_bar_is_the_one_the_docs_and_the_refusal_name(data):
    """The first session (a regular one) first allows a decision at its 70th bar, 09:39: what
    docs/serving.md and docs/features.md state and what the "too few bars" refusal names."""
    bars, scaler, market = data
    first = int(np.flatnonzero(market.episode_start & (market.session_id == 0))[0])
    clock = bars["timestamp"].iloc[first].strftime("%H:%M")
    assert (first + 1, clock) == (70, "09:39")
    docs = Path(__file__).resolve().parents[2] / "docs"
    serving = " ".join((docs / "serving.md").read_text().split())
    assert f"defined from the {clock} bar on (bar {first + 1} of a regular session" in serving
    assert f"On a regular session that is from about {clock};" in " ".join((docs / "features.md").read_text().split())
    client_observation(bars_input(bars, market, first).assign(**flat_account(PHASE2_DIM)),
                       observation_dim=PHASE2_DIM, scaler=scaler, rules=RULES)
    with pytest.raises(ClientInputError, match=rf"too few bars: {first} bar\(s\) through "
                                               rf"{bars['timestamp'].iloc[first - 1].strftime('%H:%M')}, .* "
                                               rf"defined only from the {clock} bar on \(bar {first + 1} of the "
                                               r"session\)"):
        client_observation(bars_input(bars, market, first - 1).assign(**flat_account(PHASE2_DIM)),
                           observation_dim=PHASE2_DIM, scaler=scaler, rules=RULES)


def test_an_open_or_close_outside_the_bars_range_widens_it_as_training_cleaning_does(data):
    """Cleaning widens high/low to take in open and close (rule ``open_close_outside_range``);
    the client's bars get the same repair, so the observation is that of the repaired bars."""
    bars, scaler, market = data
    t = int(np.flatnonzero(market.entry_allowed)[40])
    frame = bars_input(bars, market, t).assign(**flat_account(PHASE3_DIM))
    last, before = len(frame) - 1, len(frame) - 2
    broken = frame.copy()
    broken.loc[last, "close"] = frame.loc[last, "high"] + 6.0  # close above the high
    broken.loc[before, "open"] = frame.loc[before, "low"] - 4.0  # open below the low
    repaired = broken.copy()
    repaired.loc[last, "high"] = broken.loc[last, "close"]
    repaired.loc[before, "low"] = broken.loc[before, "open"]
    expected, expected_masks = client_observation(repaired, observation_dim=PHASE3_DIM, scaler=scaler, rules=RULES)
    got, masks = client_observation(broken, observation_dim=PHASE3_DIM, scaler=scaler, rules=RULES)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(masks, expected_masks)


def test_the_sessions_last_bar_and_a_second_date_are_refused(data):
    bars, scaler, market = data
    last = int(market.session_last[0])
    frame = bars_input(bars, market, last).assign(**flat_account(PHASE2_DIM))
    with pytest.raises(ClientInputError, match="is the session's last bar"):
        client_observation(frame, observation_dim=PHASE2_DIM, scaler=scaler, rules=RULES)
    two_days = pd.concat([frame, bars_input(bars, market, last + 100).assign(**frame.iloc[-1, 6:])])
    with pytest.raises(ClientInputError, match="span 2 dates"):
        client_observation(two_days, observation_dim=PHASE2_DIM, scaler=scaler, rules=RULES)


def test_the_docs_list_every_account_column_as_in_code():
    from hybrid_trader.agents.serving import ACCOUNT_FIELDS, DRAWDOWN_FIELDS, POSITION_FIELDS

    text = (Path(__file__).resolve().parents[2] / "docs" / "serving.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| `account_")]
    assert rows == [f"| `{f.name}` | both | {f.meaning} |" for f in POSITION_FIELDS + DRAWDOWN_FIELDS] + [
        f"| `{f.name}` | `phase3_hybrid` | {f.meaning} |" for f in ACCOUNT_FIELDS]


# ------------------------------------------------------------------ the registry


def test_good_is_set_only_when_good_and_newest_moves_to_version_2(registry):
    client = MlflowClient(registry["uri"])
    assert registry["versions"] == ["1", "1", "2"]
    assert str(client.get_model_version_by_alias("phase2_policy", "newest").version) == "2"
    assert str(client.get_model_version_by_alias("phase2_policy", "good").version) == "1"  # v2 did not earn it
    assert str(client.get_model_version_by_alias("phase3_hybrid", "newest").version) == "1"
    with pytest.raises(mlflow.exceptions.MlflowException):
        client.get_model_version_by_alias("phase3_hybrid", "good")


def test_each_version_carries_a_signature_an_input_example_and_its_artifacts(registry):
    for name, dim in registry["dims"].items():
        info = mlflow.models.get_model_info(f"models:/{name}@newest")
        assert info.signature == model_signature(dim)
        inputs = info.signature.inputs.input_names()
        assert inputs[:6] == ["timestamp", "open", "high", "low", "close", "volume"]
        assert inputs[-N_ACTIONS:] == MASK_COLUMNS and len(inputs) == 6 + len(account_fields(dim)) + dim + N_ACTIONS
        local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}@newest"))
        example = json.loads((local / "serving_input_example.json").read_text())["dataframe_split"]
        assert example["columns"] == list(registry["examples"][dim].columns)
        assert example["data"][-1][0] == registry["examples"][dim]["timestamp"].iloc[-1]
        assert {p.name for p in (local / "artifacts").iterdir()} == {
            "policy.zip", "feature_scaler.json", "observation_layout.json", "trading_rules.json"}
        assert TradingRules.from_dict(json.loads((local / "artifacts" / "trading_rules.json").read_text())) == RULES
        assert (local / "code" / "hybrid_trader" / "agents" / "serving.py").is_file()


def test_the_logged_input_example_is_the_last_train_session_not_a_held_out_day(registry, data):
    """Sessions 1 and 2 train, 3 is a test day: the example published with the version is session 2's."""
    from hybrid_trader.agents.registry import register_model

    bars, scaler, _ = data
    days = sorted(bars["session_date"].unique())
    model_input = pd.DataFrame({"session_date": days, "split": ["train", "train", "test"]})
    with mlflow.start_run(experiment_id=mlflow.get_experiment_by_name("client").experiment_id):
        registration = register_model(
            registry["models"]["phase2_policy"], name="phase2_example_day", observation_dim=PHASE2_DIM,
            feature_scaler=scaler.to_dict(), observation_layout={"phase2_dim": PHASE2_DIM}, trading_rules=RULES,
            clean_bars=bars, model_input_features=model_input, good=False, validation_mean_net_pnl=0.0)
    assert registration["version"] == "1"
    local = Path(mlflow.artifacts.download_artifacts("models:/phase2_example_day/1"))
    example = json.loads((local / "serving_input_example.json").read_text())["dataframe_split"]
    stamps = pd.to_datetime([row[0] for row in example["data"]], utc=True).tz_convert("America/New_York")
    assert set(stamps.date) == {pd.Timestamp(days[1]).date()}
    assert (stamps[0].strftime("%H:%M"), stamps[-1].strftime("%H:%M")) == ("08:30", "10:00")


def test_the_271_column_hybrid_answers_observations_with_the_masks_applied(registry, data):
    _, _, market = data
    model = load_registered_policy("phase3_hybrid", "newest")
    rng = np.random.default_rng(0)
    obs = np.zeros((20, HYBRID_DIM), dtype=np.float32)
    obs[:, :PHASE3_DIM] = rng.normal(size=(20, PHASE3_DIM))
    obs[:, PHASE3_DIM + Action.BUY] = 1.0  # the advisor is sure of BUY ...
    obs[:, [ADVICE_COLUMNS[N_ACTIONS].index, ADVICE_COLUMNS[N_ACTIONS + 2].index]] = 1.0  # ... confident, and present
    frame = pd.DataFrame(obs, columns=HYBRID_NAMES)
    assert (model.predict(frame)["action"] == Action.BUY).all()  # weight 0.9 on the opinion
    masks = np.ones((20, N_ACTIONS), dtype=bool)
    masks[:, Action.BUY] = False
    masks[::2, Action.HOLD] = False
    frame[MASK_COLUMNS] = masks
    answer = model.predict(frame)
    actions = answer["action"].to_numpy()
    assert masks[np.arange(20), actions].all()
    expected, _ = registry["models"]["phase3_hybrid"].predict(obs, action_masks=masks, deterministic=True)
    np.testing.assert_array_equal(actions, expected)
    assert list(answer["action_name"]) == [Action(a).name for a in actions]


def test_a_registered_model_answers_a_bars_input_as_the_original_model(registry, data):
    bars, _, market = data
    env = TradingVecEnv(market, EngineConfig(episode_mode="full_session"), n_envs=1, phase=3)
    env.reset()
    for _ in range(90):  # into the entry window, then long
        env.step(np.array([Action.HOLD]))
    env.step(np.array([Action.BUY]))
    env.step(np.array([Action.ENABLE_TRAILING_STOP]))
    assert env.engine.side[0] == 1 and env.engine.trailing[0]
    frame = bars_input(bars, market, int(env.engine.t[0])).assign(**account_of(env.engine))
    for name in ("phase2_policy", "phase3_hybrid"):
        answer = load_registered_policy(name, "newest").predict(frame)
        assert list(answer.columns) == ["action", "action_name"] and len(answer) == 1
        assert answer["action"].iloc[0] == in_process_action(registry, data, name, frame)
        assert answer["action"].iloc[0] in (Action.HOLD, Action.DISABLE_TRAILING_STOP, Action.MOVE_SL_TO_BREAKEVEN,
                                            Action.EXIT)


# ------------------------------------------------------------------ as a client


def test_a_fresh_process_with_only_the_registry_uri_gets_the_same_actions(registry, data, tmp_path):
    script = (
        "import json, mlflow\n"
        "out = {}\n"
        "for name in ('phase2_policy', 'phase3_hybrid'):\n"
        "    model = mlflow.pyfunc.load_model(f'models:/{name}@newest')\n"
        "    out[name] = int(model.predict(model.input_example)['action'].iloc[0])\n"
        "import hybrid_trader\n"
        "out['code'] = hybrid_trader.__file__\n"
        "print('RESULT ' + json.dumps(out))\n"
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": registry["uri"]}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[7:])
    for name, dim in registry["dims"].items():
        assert result[name] == in_process_action(registry, data, name, registry["examples"][dim])
    # The project's code came with the model, not from this checkout.
    assert "src/hybrid_trader" not in Path(result["code"]).as_posix()
    assert Path(result["code"]).parent.parent.name == "code"


def post(port: int, payload: dict) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as response:
        return json.loads(response.read())


@pytest.mark.parametrize("name", ["phase2_policy", "phase3_hybrid"])
def test_mlflow_models_serve_answers_invocations_with_the_same_action(registry, data, tmp_path, name):
    bars, _, market = data
    dim = registry["dims"][name]
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}@newest", dst_path=str(tmp_path / "model")))
    example_request = json.loads((local / "serving_input_example.json").read_text())
    # A second request: a short position later in the session, as a client would send it.
    env = TradingVecEnv(market, EngineConfig(episode_mode="full_session"), n_envs=1, phase=3)
    env.reset()
    for _ in range(120):
        env.step(np.array([Action.HOLD]))
    env.step(np.array([Action.SELL]))
    short = bars_input(bars, market, int(env.engine.t[0])).assign(**account_of(env.engine))
    short = short[[*short.columns[:6], *(f.name for f in account_fields(dim))]]
    short_request = {"dataframe_split": {"columns": list(short.columns), "data": short.values.tolist()}}

    log_path = tmp_path / "server.log"
    log = log_path.open("w")
    # Port 0: uvicorn binds a free port itself and logs it (no probe-then-bind race). The server's
    # `exec uvicorn` is looked up on PATH, so this interpreter's bin folder goes first.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{name}@newest", "--env-manager",
         "local", "-h", "127.0.0.1", "-p", "0", "-w", "1", "-t", "300"],
        cwd=tmp_path, env={**os.environ, "PATH": path, "MLFLOW_TRACKING_URI": registry["uri"]}, stdout=log,
        stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + SERVER_START_LIMIT_S
        while not (listening := re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", log_path.read_text())):
            assert server.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "the model server did not start listening"
            time.sleep(1.0)
        port = int(listening.group(1))
        while True:
            assert server.poll() is None, log_path.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=10) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            assert time.monotonic() < deadline, "the model server did not answer /ping"
            time.sleep(1.0)
        for request, frame in ((example_request, registry["examples"][dim]), (short_request, short)):
            answer = post(port, request)["predictions"]
            assert answer == [{"action": in_process_action(registry, data, name, frame),
                               "action_name": Action(answer[0]["action"]).name}]
        with pytest.raises(urllib.error.HTTPError) as refused:
            post(port, {"dataframe_split": {"columns": list(short.columns), "data": short.values[:30].tolist()}})
        assert "too few bars" in refused.value.read().decode()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
