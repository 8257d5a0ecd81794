"""Metering a loop's agents through the model gateway (procs/loop/metering.py), against
the real gateway service started as the one-shot runner starts it
(procs/loop/gateway_process.py), its upstream the scripted OpenAI TEST DOUBLE:

- each turn's model calls are counted under the role declared before it;
- a bead over its budget fails the turn with the gateway's reason, and the next turn
  fails the same way without running;
- the end revokes the token;
- the agent is handed the gateway's URL, its key only in the environment;
- a budget needs a metered [loop.model]; the loop service without a gateway does not
  start (unless [loop.model] metered = false); with factoryd's gateway, a bead over its
  budget ends Failed with the reason;
- the one-shot runner, given [loop.model] and budget_tokens, starts its own gateway and a
  bead over its budget fails with the reason (the scripted ACP agent asks the model once
  per turn, through the gateway).
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from procs.loop.agent_service import MODEL_TOKEN_ENV, AgentModel, ServiceSettings
from procs.loop.cli import EXIT_FAILED, main
from procs.loop.config import LoopConfigError, ModelUpstream, config_from
from procs.loop.gateway_process import GatewayProcess
from procs.loop.metering import GatewayUnavailable, Meter, MeteredTurns, MeterGrant
from procs.loop.service import EXIT_BAD_INPUT
from procs.loop.service import main as service_main
from procs.loop.state import FactoryLoopState
from procs.loop.turns import Turn, TurnFailed, TurnReply
from supervisor.ctl.cli import main as ctl_main
from tests.doubles.openai_chat import ChatCompletionsDouble
from tests.helpers.loop_repos import CALC, make_project

ROOT = Path(__file__).resolve().parent.parent
USAGE = (60, 20)  # each answer's tokens: 80 a call


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[GatewayProcess, ChatCompletionsDouble]]:
    with ChatCompletionsDouble([], usage=USAGE) as double:
        upstream = ModelUpstream(kind="openai", base_url=double.base_url)
        gateway = GatewayProcess.start(upstream, tmp_path_factory.mktemp("gw") / "gateway")
        try:
            yield gateway, double
        finally:
            gateway.stop()


class CallingTurns:
    """AgentTurns whose every turn makes `calls` model calls with the grant's token."""

    def __init__(self, grant: MeterGrant, calls: int = 1) -> None:
        self.grant, self.calls, self.turns, self.closed = grant, calls, 0, False

    def _turn(self, turn: Turn) -> TurnReply:
        self.turns += 1
        for _ in range(self.calls):
            httpx.post(
                f"{self.grant.openai_base_url}/chat/completions", timeout=10,
                headers={"Authorization": f"Bearer {self.grant.token}"},
                json={"model": "m", "messages": [{"role": "user", "content": turn.role}]},
            )  # fmt: skip
        return TurnReply(text="done")

    auditor = implementer = architect = reviewer = _turn

    def close(self) -> None:
        self.closed = True


def turn(role: str, tmp_path: Path) -> Turn:
    state = FactoryLoopState(loop_id="l-1", bead_id="b", attempt=1, workspace=str(tmp_path),
                             golden_hash="0" * 40)  # fmt: skip
    return Turn(role=role, workspace=tmp_path, system_prompt="", prompt="", state=state)


def test_each_turns_calls_are_counted_under_its_role(
    served: tuple[GatewayProcess, ChatCompletionsDouble], tmp_path: Path
) -> None:
    gateway, _ = served
    meter = Meter(gateway.socket)
    grant = meter.open("bd-count", "l-1", None)
    inner = CallingTurns(grant, calls=2)
    with MeteredTurns(inner, meter, grant) as metered:
        metered.auditor(turn("auditor", tmp_path))
        metered.implementer(turn("implementer", tmp_path))
        metered.implementer(turn("implementer", tmp_path))
        usage = metered.usage
    assert usage is not None and usage["over_budget"] is False
    calls = {role: counts["calls"] for role, counts in usage["roles"].items()}
    assert calls == {"auditor": 2, "implementer": 4}
    assert usage["used_tokens"] == 6 * sum(USAGE)
    assert inner.closed  # closing the metered turns closes the agents


def test_a_bead_over_its_budget_fails_with_the_gateways_reason(
    served: tuple[GatewayProcess, ChatCompletionsDouble], tmp_path: Path
) -> None:
    gateway, _ = served
    meter = Meter(gateway.socket)
    grant = meter.open("bd-budget", "l-1", 100)
    inner = CallingTurns(grant)
    with MeteredTurns(inner, meter, grant) as metered:
        metered.auditor(turn("auditor", tmp_path))  # 80 of 100
        with pytest.raises(TurnFailed) as failed:
            metered.implementer(turn("implementer", tmp_path))  # 160: over
        reason = "bead bd-budget is over its budget of 100 tokens (used 160)"
        assert str(failed.value) == reason
        with pytest.raises(TurnFailed, match="over its budget"):
            metered.implementer(turn("implementer", tmp_path))
        assert inner.turns == 2  # the last one never ran
    # the token is revoked at the end: the gateway refuses it
    answer = httpx.post(f"{grant.openai_base_url}/chat/completions", timeout=10,
                        headers={"Authorization": f"Bearer {grant.token}"},
                        json={"model": "m", "messages": []})  # fmt: skip
    assert answer.status_code == 401


def test_a_gateway_that_serves_another_upstream_or_none_is_named(
    served: tuple[GatewayProcess, ChatCompletionsDouble], tmp_path: Path
) -> None:
    gateway, double = served
    Meter(gateway.socket).check("openai", double.base_url)
    with pytest.raises(GatewayUnavailable, match=r"not to \[loop.model\] base_url"):
        Meter(gateway.socket).check("openai", "http://127.0.0.1:9/v1")
    with pytest.raises(GatewayUnavailable, match="no anthropic upstream"):
        Meter(gateway.socket).check("anthropic")
    with pytest.raises(GatewayUnavailable, match="did not answer status"):
        Meter(tmp_path / "model_gateway.sock", timeout_s=1).check("openai")


SCRIPT = {
    "module": "calc.py", "base": CALC.rstrip("\n"),
    "steps": [{"test_path": "tests/test_mul.py", "code": "def mul(a, b):\n    return a * b\n",
               "test": "import calc\n\n\ndef test_mul():\n    assert calc.mul(2, 3) == 6\n"}],
}  # fmt: skip
BEAD = {"id": "bd-9", "title": "mul", "status": "open", "description": "calc gains mul(a, b)."}


def test_the_runner_fails_a_bead_over_its_budget_through_its_own_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = make_project(tmp_path / "repo")
    (tmp_path / "issues.jsonl").write_text(json.dumps(BEAD) + "\n")
    (tmp_path / "script.json").write_text(json.dumps(SCRIPT))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("FACTORY_TDD_SCRIPT", str(tmp_path / "script.json"))
    monkeypatch.setenv("FACTORY_RUNTIME_DIR", str(tmp_path / "run"))  # no factoryd here
    with ChatCompletionsDouble([], usage=USAGE) as double:
        (tmp_path / "factory.toml").write_text(
            f'[loop]\ntest_command = ["{sys.executable}", "-m", "pytest", "-q"]\n'
            f'agent_command = ["{sys.executable}", "-m", "tests.doubles.tdd_agent"]\n'
            'sandbox = "none"\nreviewer = "agent"\nturn_timeout_s = 60\n'
            "budget_tokens = 100\n"
            f'[loop.model]\nkind = "openai"\nbase_url = "{double.base_url}"\nmodel = "m-1"\n'
        )
        argv = ["run", "--repo", str(repo), "--beads", str(tmp_path / "issues.jsonl"),
                "--bead", "bd-9", "--config", str(tmp_path / "factory.toml"),
                "--state-dir", str(tmp_path / "loops"), "--json"]  # fmt: skip
        out = io.StringIO()
        assert main(argv, out=out) == EXIT_FAILED, out.getvalue()
        served = len(double.requests)
        names = {r.body.get("model") for r in double.requests}
    report = orjson.loads(out.getvalue())
    assert report["phase"] == "failed"
    # the implementer's turn (the auditor's spent 80 of 100, the implementer's 80 more)
    assert report["reason"] == "implementing: bead bd-9 is over its budget of 100 tokens (used 160)"
    usage = report["model_usage"]
    assert {role: c["calls"] for role, c in usage["roles"].items()} == {
        "auditor": 1, "implementer": 1,
    }  # fmt: skip
    assert usage["used_tokens"] == 2 * sum(USAGE) == served * sum(USAGE)
    assert names == {"m-1"}  # the agent was handed [loop.model]'s name
    stderr = capsys.readouterr().err
    assert "started the runner's own model gateway" in stderr
    assert "stopped the runner's model gateway (exit 0)" in stderr


def test_the_agent_is_handed_the_model_with_its_key_off_argv(tmp_path: Path) -> None:
    model = AgentModel("http://127.0.0.1:4000/v1", "qwen", "openai", "fgw-secret")
    settings = ServiceSettings(
        agent_command=("opencode", "acp"), python=sys.executable,
        env={MODEL_TOKEN_ENV: "stale", "PATH": "/bin"}, timeout_s=1, start_timeout_s=1,
        idle_timeout_s=1, cancel_grace_s=1, sandbox_mode="none", model=model,
    )  # fmt: skip
    argv = settings.argv(tmp_path)
    assert argv[argv.index("--model-url") + 1] == model.url and "fgw-secret" not in argv
    assert argv[argv.index("--model") + 1] == "qwen" and argv[-2:] == ["opencode", "acp"]
    assert settings.service_env()[MODEL_TOKEN_ENV] == "fgw-secret"
    assert "fgw-secret" not in repr(model)
    unmetered = ServiceSettings(**{**settings.__dict__, "model": None})
    assert MODEL_TOKEN_ENV not in unmetered.service_env()  # nobody else's key either


@pytest.mark.parametrize(
    ("table", "error"),
    [
        ({"budget_tokens": 100}, "budget_tokens needs a metered"),
        ({"budget_tokens": 100, "model": {"kind": "openai", "base_url": "http://h/v1",
                                          "metered": False}}, "budget_tokens needs a metered"),
        ({"budget_tokens": 0, "model": {"kind": "openai", "base_url": "http://h/v1"}},
         "budget_tokens must be an integer >= 1"),
        ({"model": {"kind": "openai", "base_url": "http://h/v1", "key": "x"}},
         "needs kind and base_url"),
        ({"model": {"kind": "openai", "base_url": "http://h/v1", "metered": "no"}},
         "metered must be true or false"),
    ],
)  # fmt: skip
def test_a_budget_needs_a_metered_model(table: dict[str, object], error: str) -> None:
    with pytest.raises(LoopConfigError, match=error):
        config_from({"test_command": ["pytest"], **table})


def test_the_loop_service_without_a_gateway_is_a_failed_start_naming_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    golden = make_project(tmp_path / "golden")
    (tmp_path / "issues.jsonl").write_text(json.dumps(BEAD) + "\n")
    with ChatCompletionsDouble([]) as double:
        (tmp_path / "loop.toml").write_text(
            '[loop]\ntest_command = ["pytest"]\nsandbox = "none"\nreviewer = "agent"\n'
            f'agent_command = ["{sys.executable}"]\n'
            f'[loop.model]\nkind = "openai"\nbase_url = "{double.base_url}"\n'
        )
        status = service_main([
            "--bead", "bd-9", "--beads", str(tmp_path / "issues.jsonl"), "--repo", str(golden),
            "--config", str(tmp_path / "loop.toml"), "--runtime-dir", str(tmp_path / "run"),
            "--state-dir", str(tmp_path / "state"),
        ])  # fmt: skip
    assert status == EXIT_BAD_INPUT
    record = next(json.loads(line) for line in capsys.readouterr().err.splitlines()
                  if '"bad_input"' in line)  # fmt: skip
    assert "model_gateway.sock did not answer status" in record["reason"]
    assert "metered = false" in record["reason"]
    assert not (tmp_path / "state").exists()  # nothing made


def test_the_loop_service_fails_a_bead_over_its_budget_through_factoryds_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    golden = make_project(tmp_path / "golden")
    (tmp_path / "issues.jsonl").write_text(json.dumps(BEAD) + "\n")
    (tmp_path / "script.json").write_text(json.dumps(SCRIPT))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("FACTORY_TDD_SCRIPT", str(tmp_path / "script.json"))
    with ChatCompletionsDouble([], usage=USAGE) as double:
        upstream = ModelUpstream(kind="openai", base_url=double.base_url)
        gateway = GatewayProcess.start(upstream, tmp_path / "gw")  # factoryd's, in its runtime
        try:
            (tmp_path / "loop.toml").write_text(
                f'[loop]\ntest_command = ["{sys.executable}", "-m", "pytest", "-q"]\n'
                f'agent_command = ["{sys.executable}", "-m", "tests.doubles.tdd_agent"]\n'
                'sandbox = "none"\nreviewer = "agent"\nturn_timeout_s = 60\n'
                f'budget_tokens = 100\n[loop.model]\nkind = "openai"\n'
                f'base_url = "{double.base_url}"\n'
            )
            status = service_main([
                "--bead", "bd-9", "--beads", str(tmp_path / "issues.jsonl"),
                "--repo", str(golden), "--config", str(tmp_path / "loop.toml"),
                "--runtime-dir", str(gateway.runtime), "--state-dir", str(tmp_path / "state"),
                "--workspaces", "clone",
            ])  # fmt: skip
            usage = Meter(gateway.socket).call("usage", {"bead": "bd-9"})
            live = Meter(gateway.socket).call("status", {})
            listed = io.StringIO()  # factoryctl loops shows what the gateway counted
            assert (
                ctl_main(
                    [
                        "--runtime-dir",
                        str(gateway.runtime),
                        "--state-dir",
                        str(tmp_path / "state"),
                        "loops",
                        "--json",
                    ],
                    out=listed,
                )
                == 0
            )
        finally:
            gateway.stop()
    assert [(loop["bead"], loop["tokens"]) for loop in json.loads(listed.getvalue())["loops"]
            ] == [("bd-9", 160)]  # fmt: skip
    assert status == 0  # the loop ended (Failed: not restarted)
    records = [json.loads(line) for line in capsys.readouterr().err.splitlines()
               if line.startswith("{")]  # fmt: skip
    ended = next(r for r in records if r.get("event") == "ended")
    assert ended["phase"] == "failed"
    assert ended["reason"].endswith("bead bd-9 is over its budget of 100 tokens (used 160)")
    assert {role: c["calls"] for role, c in usage["roles"].items()} == {
        "auditor": 1, "implementer": 1,
    }  # fmt: skip
    assert live["live_tokens"] == 0  # the loop's token was revoked at its end
