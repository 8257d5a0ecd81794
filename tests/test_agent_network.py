"""A sandboxed agent's network: a namespace of its own where only its model endpoint is
reachable (procs/agent/agent_sandbox.py, net_relay.py, model_bridge.py).

- the plan: a loopback model URL is isolated; otherwise the status says shared, and why;
- the relay as a real process (no sandbox needed): a missing unix socket is a clear error
  and no agent starts; it exits with the agent's status; SIGTERM reaches the agent; the
  agent's stdio passes untouched; the agent dies with it; a stream flows chunk by chunk
  and a half-close passes on; it holds at most a buffer per direction; a dead target
  resets the client;
- in bwrap (integration): a process in the agent's sandbox reaches the model gateway on
  127.0.0.1:PORT (a plain and a streamed call, counted by the gateway) but neither a
  listener on the host's 127.0.0.1 at another port nor the host's other addresses; a
  shared network is shared, as its status says.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from procs.agent import net_relay
from procs.agent.agent_sandbox import UNIX_SOCKETS, AgentSandbox, network_plan
from procs.agent.model_bridge import ModelBridge
from procs.agent.roles import RolePolicy
from procs.llm.gateway import Gateway
from procs.llm.gateway_config import GatewayConfig
from procs.llm.gateway_store import GatewayStore
from procs.llm.tickets import FlockTickets
from procs.sandbox import SandboxPolicy, runtime_hidden_paths
from tests.doubles.openai_chat import ChatCompletionsDouble
from tests.helpers.sandbox import skip_without_bwrap
from tests.waiting import pid_gone, wait_until

RELAY = [sys.executable, "-I", net_relay.__file__]
PY = sys.executable


# -- the plan ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "mode", "endpoint", "why"),
    [
        ("http://127.0.0.1:4000/v1", "bwrap", ("127.0.0.1", 4000), None),
        ("http://localhost:8080", "bwrap", ("localhost", 8080), None),
        ("http://[::1]:8080/v1", "bwrap", ("::1", 8080), None),
        ("https://api.anthropic.com", "bwrap", None, "'api.anthropic.com' is not loopback"),
        ("http://10.0.0.5:4000", "bwrap", None, "'10.0.0.5' is not loopback"),
        ("http://127.0.0.1/v1", "bwrap", None, "port 80 is privileged"),
        (None, "bwrap", None, "no model URL was given"),
        ("http://127.0.0.1:4000", "none", None, 'sandbox = "none"'),
        ("http://127.0.0.1:99999", "bwrap", None, "is malformed"),
    ],
)
def test_only_a_loopback_model_url_is_isolated_and_status_says_which(
    url: str | None, mode: str, endpoint: tuple[str, int] | None, why: str | None
) -> None:
    plan = network_plan(url, mode)
    assert plan.endpoint == endpoint
    if why is None:
        assert plan.isolated and plan.status.startswith("network: isolated")
    else:
        assert not plan.isolated and "shares the host's network" in plan.status
        assert why in plan.status


def test_localhost_is_relayed_on_both_loopbacks() -> None:
    plan = network_plan("http://localhost:8080", "bwrap")
    assert plan.listen_addresses()[0] == "127.0.0.1:8080"
    assert plan.target_host() == "127.0.0.1"


# -- the relay as a process ----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def unix_server(tmp_path: Path) -> Iterator[socket.socket]:
    """A listening unix socket standing for the gateway's end."""
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "model.sock"))
    server.listen()
    server.settimeout(10)
    yield server
    server.close()


def start_relay(
    socket_path: Path, agent: list[str], port: int | None = None, extra: list[str] | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    port = port or free_port()
    argv = [*RELAY, "--listen", f"127.0.0.1:{port}", "--unix", str(socket_path),
            *(extra or []), "--", *agent]  # fmt: skip
    process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, process_group=0)  # fmt: skip
    return process, port


@contextlib.contextmanager
def relay(socket_path: Path, agent: list[str]) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    process, port = start_relay(socket_path, agent)
    try:
        yield process, port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate(timeout=10)


# an agent that says it is ready (on stdout: the ACP pipe) once it runs
READY_AGENT = "import sys; print('ready', flush=True); sys.stdin.read()"


def connect_when_listening(port: int) -> socket.socket:
    def attempt() -> socket.socket | None:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=10)
        except ConnectionRefusedError:
            return None

    connected = wait_until(attempt, timeout=10, what=f"the relay listening on {port}")
    assert connected is not None
    return connected


def test_a_missing_unix_socket_is_a_clear_error_and_no_agent_starts(tmp_path: Path) -> None:
    marker = tmp_path / "agent-ran"
    missing = tmp_path / "gone" / "model.sock"
    process, _ = start_relay(missing, [PY, "-c", f"open({str(marker)!r}, 'w')"])
    _, err = process.communicate(timeout=30)
    assert process.returncode == net_relay.EXIT_USAGE
    assert f"the model's unix socket {missing} cannot be reached" in err.decode()
    assert not marker.exists()
    plain = tmp_path / "plain-file"
    plain.write_text("")
    process, _ = start_relay(plain, [PY, "-c", f"open({str(marker)!r}, 'w')"])
    _, err = process.communicate(timeout=30)
    assert process.returncode == net_relay.EXIT_USAGE
    assert f"{plain} is not a unix socket" in err.decode()
    assert not marker.exists()


def test_a_taken_port_and_a_missing_agent_are_clear_errors(
    unix_server: socket.socket, tmp_path: Path
) -> None:
    path = Path(unix_server.getsockname())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        process, _ = start_relay(path, [PY, "-c", "pass"], port=taken.getsockname()[1])
        _, err = process.communicate(timeout=30)
    assert process.returncode == net_relay.EXIT_USAGE
    assert "cannot listen" in err.decode() and "in use" in err.decode()
    process, _ = start_relay(path, [str(tmp_path / "no-such-agent")])
    _, err = process.communicate(timeout=30)
    assert process.returncode == net_relay.EXIT_NO_AGENT
    assert "cannot start the agent" in err.decode() and "no-such-agent" in err.decode()


@pytest.mark.parametrize(
    ("script", "status"),
    [
        ("raise SystemExit(7)", 7),
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", 137),
        ("pass", 0),
    ],
)
def test_the_relay_exits_with_the_agents_status(
    unix_server: socket.socket, script: str, status: int
) -> None:
    process, _ = start_relay(Path(unix_server.getsockname()), [PY, "-c", script])
    process.communicate(timeout=30)
    assert process.returncode == status


def test_sigterm_to_the_relay_reaches_the_agent(unix_server: socket.socket) -> None:
    agent = ("import signal, sys\n"
             "def term(n, f):\n    print('got', n, flush=True); sys.exit(5)\n"
             "signal.signal(signal.SIGTERM, term)\n" + READY_AGENT)  # fmt: skip
    with relay(Path(unix_server.getsockname()), [PY, "-c", agent]) as (process, _):
        assert process.stdout is not None
        assert process.stdout.readline() == b"ready\n"
        process.send_signal(signal.SIGTERM)  # the relay alone, not its group
        assert process.stdout.readline() == f"got {int(signal.SIGTERM)}\n".encode()
        assert process.wait(timeout=30) == 5


def test_an_agent_that_ignores_sigterm_is_killed_after_the_grace(
    unix_server: socket.socket,
) -> None:
    agent = "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" + READY_AGENT
    path = Path(unix_server.getsockname())
    process, _ = start_relay(path, [PY, "-c", agent], extra=["--term-grace-s", "0.2"])
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == b"ready\n"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 128 + signal.SIGKILL
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate(timeout=10)


def test_the_agents_stdio_passes_through_untouched(unix_server: socket.socket) -> None:
    agent = ("import sys\nfor line in sys.stdin.buffer:\n"
             "    sys.stdout.buffer.write(line[::-1]); sys.stdout.flush()\n"
             "sys.stderr.write('agent stderr\\n')")  # fmt: skip
    with relay(Path(unix_server.getsockname()), [PY, "-c", agent]) as (process, _):
        lines = b'{"jsonrpc":"2.0","id":1}\n' + bytes(range(1, 10)) + b"\xff\xfe\n"
        out, err = process.communicate(lines, timeout=30)
    assert out == b"".join(line[::-1] for line in lines.splitlines(keepends=True))
    assert err == b"agent stderr\n"
    assert process.returncode == 0


def test_the_agent_dies_with_the_relay(unix_server: socket.socket) -> None:
    agent = "import os, sys; print(os.getpid(), flush=True); sys.stdin.read()"
    with relay(Path(unix_server.getsockname()), [PY, "-c", agent]) as (process, _):
        assert process.stdout is not None
        agent_pid = int(process.stdout.readline())
        process.kill()  # the relay alone: SIGKILL, no chance to pass anything on
        process.wait(timeout=10)
        wait_until(lambda: pid_gone(agent_pid), timeout=10, what="the agent's death")


def test_a_stream_flows_chunk_by_chunk_and_a_half_close_passes_on(
    unix_server: socket.socket,
) -> None:
    release = threading.Event()
    seen: dict[str, bytes] = {}

    def serve() -> None:
        conn, _ = unix_server.accept()
        with conn:
            conn.settimeout(10)
            request = b""
            while chunk := conn.recv(4096):  # to the client's EOF: its half-close
                request += chunk
            seen["request"] = request
            conn.sendall(b"data: one\n\n")
            release.wait(10)  # the second chunk only once the first was read
            conn.sendall(b"data: two\n\n")

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    with (
        relay(Path(unix_server.getsockname()), [PY, "-c", READY_AGENT]) as (_, port),
        connect_when_listening(port) as client,
    ):
        client.sendall(b"POST /v1/chat/completions\r\n\r\n")
        client.shutdown(socket.SHUT_WR)
        assert client.recv(4096) == b"data: one\n\n"
        release.set()
        assert client.recv(4096) == b"data: two\n\n"
        assert client.recv(4096) == b""  # the server's close, passed on
    server.join(10)
    assert seen["request"] == b"POST /v1/chat/completions\r\n\r\n"


class InProcess(NamedTuple):
    relay: net_relay.Relay
    target: socket.socket  # the unix listener it relays to
    port: int  # where it listens
    logged: list[str]


@pytest.fixture
def in_process_relay(tmp_path: Path) -> Iterator[InProcess]:
    """A Relay on a thread from 127.0.0.1:PORT to a unix socket that the test serves."""
    target = socket.socket(socket.AF_UNIX)
    target.bind(str(tmp_path / "t.sock"))
    target.listen()
    target.settimeout(10)
    listener = net_relay.listen((socket.AF_INET, ("127.0.0.1", 0)))
    logged: list[str] = []
    relay = net_relay.Relay([listener], (socket.AF_UNIX, str(tmp_path / "t.sock")),
                            log=logged.append)  # fmt: skip
    stop = threading.Event()
    wake_r, wake_w = os.pipe()
    relay.add_reader(wake_r, lambda _fd: None)
    thread = threading.Thread(target=relay.run, kwargs={"stop": stop.is_set}, daemon=True)
    thread.start()
    try:
        yield InProcess(relay, target, listener.getsockname()[1], logged)
    finally:
        stop.set()
        os.write(wake_w, b"x")
        thread.join(10)
        relay.close()
        target.close()
        os.close(wake_r)
        os.close(wake_w)


def test_the_relay_holds_at_most_one_buffer_per_direction(in_process_relay: InProcess) -> None:
    relay, target, port, _ = in_process_relay
    client = socket.create_connection(("127.0.0.1", port), timeout=10)
    upstream, _ = target.accept()  # and never reads, for now
    client.setblocking(False)
    sent = 0
    block = b"x" * 65536

    def push_until_full() -> bool:
        nonlocal sent
        with contextlib.suppress(BlockingIOError):
            while sent < 256 * 1024 * 1024:
                sent += client.send(block)
        return relay.statistics()["buffered_bytes"] >= net_relay.BUFFER_BYTES

    with client, upstream:
        wait_until(push_until_full, timeout=30, what="the relay's buffer full")
        assert relay.statistics()["buffered_bytes"] == net_relay.BUFFER_BYTES
        assert sent < 64 * 1024 * 1024  # the sender was held back: no unbounded buffering
        client.setblocking(True)
        client.shutdown(socket.SHUT_WR)
        received = 0
        while chunk := upstream.recv(1 << 20):  # everything arrives, then the EOF
            received += len(chunk)
        assert received == sent


def test_a_dead_target_resets_the_client(in_process_relay: InProcess) -> None:
    relay, target, port, logged = in_process_relay
    target.close()  # its path stays, no one listens: ECONNREFUSED
    # the reset may come while the client still connects (the relay is that quick) or at
    # its first read: either way the client sees the connection reset
    with (
        pytest.raises(ConnectionResetError),
        socket.create_connection(("127.0.0.1", port), timeout=10) as client,
    ):
        client.recv(10)
    assert relay.statistics()["connect_failed"] == 1
    assert "cannot reach" in logged[0] and "refused" in logged[0]


def test_a_bridge_relays_its_socket_to_a_tcp_port_and_cleans_up() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(10)
        bridge = ModelBridge.open("127.0.0.1", server.getsockname()[1])
        assert oct(bridge.directory.stat().st_mode & 0o777) == "0o700"
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(10)
            client.connect(str(bridge.socket_path))
            conn, _ = server.accept()
            with conn:
                client.sendall(b"ping")
                assert conn.recv(4) == b"ping"
                conn.sendall(b"pong")
                assert client.recv(4) == b"pong"
        bridge.close()
        assert not bridge.directory.exists()
        bridge.close()  # idempotent


def test_a_bridge_reaches_a_gateway_restarted_on_its_port() -> None:
    """A fresh TCP connection per connection: a gateway back on the same port is reached."""
    with socket.socket() as first:
        first.bind(("127.0.0.1", 0))
        port = first.getsockname()[1]
        first.listen()
        bridge = ModelBridge.open("127.0.0.1", port)
    try:
        with socket.socket() as second:  # the restart, on the same port
            second.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            second.bind(("127.0.0.1", port))
            second.listen()
            second.settimeout(10)
            with socket.socket(socket.AF_UNIX) as client:
                client.settimeout(10)
                client.connect(str(bridge.socket_path))
                conn, _ = second.accept()
                with conn:
                    conn.sendall(b"back")
                    assert client.recv(4) == b"back"
    finally:
        bridge.close()


# -- in the sandbox (bwrap) ----------------------------------------------------------

PROBE = r"""
import errno, json, os, socket, sys, urllib.request
args = json.loads(sys.argv[1])
out = {}
def post(**extra):
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **extra}
    headers = {"Authorization": "Bearer " + args["token"], "Content-Type": "application/json"}
    url = args["url"] + "/chat/completions"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
    return urllib.request.urlopen(request, timeout=30)
with post() as answer:
    out["plain"] = json.loads(answer.read())["choices"][0]["message"]["content"]
with post(stream=True) as answer:
    out["events"] = [line.decode().strip() for line in answer if line.startswith(b"data:")]
def reach(host, port):
    try:
        socket.create_connection((host, port), timeout=5).close()
        return "connected"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc))
out["other_port"] = reach("127.0.0.1", args["other_port"])
out["host_address"] = reach(args["host_ip"], args["host_port"])
def reach_unix(path):
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(path)
        return "connected"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc))
out["runtime_socket"] = reach_unix(args["runtime_socket"])
out["other_socket"] = reach_unix(args["other_socket"])
out["run"] = os.listdir("/run")
print(json.dumps(out))
"""


def host_address() -> str | None:
    """One of this host's own non-loopback IPv4 addresses (None: it has none)."""
    done = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True,
                          timeout=10, check=False)  # fmt: skip
    for line in done.stdout.splitlines():
        address = line.split()[3].split("/")[0]
        if not address.startswith("127."):
            return address
    return None


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[Gateway, str]]:
    """The model gateway on 127.0.0.1 in front of the chat double; and a token."""
    with ChatCompletionsDouble([]) as double:
        upstreams = {"double": {"kind": "openai", "base_url": double.base_url}}
        store = GatewayStore(tmp_path / "state" / "model_gateway.sqlite")
        front = Gateway(GatewayConfig.from_dict({"upstreams": upstreams}), store,
                        FlockTickets(tmp_path / "tickets", 1))  # fmt: skip
        front.start()
        token = store.issue("fs-net", "loop-net", budget_tokens=1_000_000)
        store.set_role(token, "implementer")
        try:
            yield front, token
        finally:
            front.stop()
            store.close()


@pytest.fixture
def host_listeners(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Listeners the sandbox must not reach: the host's 127.0.0.1 on another port, a port
    on all addresses (reached at a non-loopback one), a unix socket in the factory's
    runtime dir (outside /tmp, which the sandbox hides anyway); and one it does reach, a
    unix socket elsewhere. All reachable from here."""
    base = Path(tempfile.mkdtemp(prefix="agent-net-", dir="/var/tmp"))
    monkeypatch.setenv("FACTORY_RUNTIME_DIR", str(base / "run"))
    (base / "run").mkdir()
    sockets = {"runtime_socket": str(base / "run" / "factoryd.sock"),
               "other_socket": str(base / "elsewhere.sock")}  # fmt: skip
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, base, ignore_errors=True)
        for path in sockets.values():
            unix = stack.enter_context(socket.socket(socket.AF_UNIX))
            unix.bind(path)
            unix.listen()
        yield {**stack.enter_context(tcp_listeners()), **sockets}


@contextlib.contextmanager
def tcp_listeners() -> Iterator[dict[str, Any]]:
    ip = host_address()
    if ip is None:
        pytest.fail("this host has no non-loopback IPv4 address to test against")
    with socket.socket() as local, socket.socket() as wide:
        local.bind(("127.0.0.1", 0))
        wide.bind(("0.0.0.0", 0))  # the point: every address of the host's
        local.listen()
        wide.listen()
        ports = {"other_port": local.getsockname()[1], "host_port": wide.getsockname()[1]}
        for host, port in (("127.0.0.1", ports["other_port"]), (ip, ports["host_port"])):
            socket.create_connection((host, port), timeout=5).close()  # reachable from here
        yield {**ports, "host_ip": ip}


def run_probe(sandbox: AgentSandbox, probe_args: dict[str, Any]) -> dict[str, Any]:
    try:
        done = subprocess.run(sandbox.argv, capture_output=True, text=True, timeout=120,
                              check=False, process_group=0)  # fmt: skip
    finally:
        sandbox.close()
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


@pytest.mark.integration
def test_in_the_sandbox_only_the_model_gateway_is_reachable_and_run_is_hidden(
    gateway: tuple[Gateway, str], host_listeners: dict[str, Any], tmp_path: Path
) -> None:
    skip_without_bwrap()
    front, token = gateway
    probe_args = {"url": front.openai_base_url, "token": token, **host_listeners}
    (workspace := tmp_path / "ws").mkdir()
    sandbox = AgentSandbox.open(
        [PY, "-c", PROBE, json.dumps(probe_args)], workspace=workspace,
        policy=RolePolicy.for_role("implementer"), mode="bwrap", model_url=front.openai_base_url,
    )  # fmt: skip
    assert sandbox.status()["network"].startswith("network: isolated")
    assert sandbox.status()["not_isolated"] == [UNIX_SOCKETS]  # the network is not there
    out = run_probe(sandbox, probe_args)
    assert out["plain"]  # the double's answer, through relay, bridge and gateway
    assert len(out["events"]) >= 2 and out["events"][-1] == "data: [DONE]"
    assert out["other_port"] == "ECONNREFUSED"  # the sandbox's own 127.0.0.1: nobody there
    assert out["host_address"] == "ENETUNREACH"  # no route out of the namespace
    assert (out["runtime_socket"], out["run"]) == ("ENOENT", [])  # hidden: empty tmpfs
    assert out["other_socket"] == "connected"  # as status says: not hidden
    assert front.store.usage("fs-net")["roles"]["implementer"]["calls"] == 2
    assert sandbox.bridge is not None and not sandbox.bridge.directory.exists()


@pytest.mark.integration
def test_a_shared_network_is_shared_as_its_status_says(
    gateway: tuple[Gateway, str], host_listeners: dict[str, Any], tmp_path: Path
) -> None:
    """No model URL: nothing to relay, so the host's network is kept, and said so."""
    skip_without_bwrap()
    front, token = gateway
    probe_args = {"url": front.openai_base_url, "token": token, **host_listeners}
    (workspace := tmp_path / "ws").mkdir()
    sandbox = AgentSandbox.open(
        [PY, "-c", PROBE, json.dumps(probe_args)], workspace=workspace,
        policy=RolePolicy.for_role("implementer"), mode="bwrap", model_url=None,
    )  # fmt: skip
    assert sandbox.bridge is None
    assert sandbox.status()["not_isolated"] == [sandbox.status()["network"], UNIX_SOCKETS]
    assert "shares the host's network" in sandbox.status()["network"]
    out = run_probe(sandbox, probe_args)
    assert out["plain"] and out["events"][-1] == "data: [DONE]"
    assert (out["other_port"], out["host_address"]) == ("connected", "connected")
    assert out["runtime_socket"] == "ENOENT"  # hidden whatever the network


def test_a_hidden_path_must_be_an_absolute_directory(tmp_path: Path) -> None:
    for bad in (Path("run"), Path("/")):
        with pytest.raises(ValueError, match="hidden path must be an absolute directory"):
            SandboxPolicy(workspace=tmp_path, hidden_paths=(bad,), mode="bwrap")


@pytest.mark.parametrize(
    ("listen", "extra", "message"),
    [
        ("localhost:80", [], "host must be an IP address, got 'localhost'"),
        ("127.0.0.1", [], "address must be HOST:PORT or unix:/PATH, got '127.0.0.1'"),
        ("127.0.0.1:0", [], "port must be 1-65535"),
        ("unix:/tmp/x.sock", [], "--listen takes a TCP address"),
        ("127.0.0.1:{port}", ["--idle-s", "0"], "idle_s must be > 0"),
    ],
)
def test_bad_relay_input_is_named_and_no_agent_starts(
    unix_server: socket.socket, tmp_path: Path, listen: str, extra: list[str], message: str
) -> None:
    marker = tmp_path / "agent-ran"
    agent = [PY, "-c", f"open({str(marker)!r}, 'w')"]
    argv = [*RELAY, "--listen", listen.format(port=free_port()), "--unix",
            unix_server.getsockname(), *extra, "--", *agent]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == net_relay.EXIT_USAGE
    assert message in done.stderr
    assert not marker.exists()


def test_run_and_the_runtime_dir_are_hidden_unless_they_hold_the_workspace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir()
    monkeypatch.setenv("FACTORY_RUNTIME_DIR", str(runtime))
    assert runtime_hidden_paths(tmp_path / "ws") == (Path("/run"), runtime.resolve())
    assert runtime_hidden_paths(tmp_path) == (Path("/run"),)  # the runtime dir is the workspace's
    monkeypatch.setenv("FACTORY_RUNTIME_DIR", "/run/factory-test")  # inside /run already
    assert runtime_hidden_paths(tmp_path / "ws") == (Path("/run"),)
