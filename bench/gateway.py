"""The model gateway's added latency per model call (issue 11's Bench; issue 12's Gemini).

Method: the OpenAI chat-completions TEST DOUBLE (tests/doubles/openai_chat.py) and, with
--gemini, the Gemini API TEST DOUBLE (tests/doubles/gemini_api.py) on 127.0.0.1 answer at
once, so what is timed is plumbing, not a model. One httpx client (keep-alive) sends the
same chat request (and generateContent / streamGenerateContent?alt=sse request)
  direct   to the double,
  gateway  through the model gateway running as its real service process
           (procs.llm.gateway_service: token lookup, budget check, breaker, a flock GPU
           ticket, the upstream call, usage read from the answer, one SQLite WAL upsert),
  relayed  through the gateway as a sandboxed agent reaches it: the in-sandbox relay
           (procs/agent/net_relay.py, a real process listening on 127.0.0.1, its agent
           a no-op) to the ModelBridge's unix socket (procs/agent/model_bridge.py, on a
           thread here), on to the gateway's port; the relay runs outside bwrap here (the
           hops are the same; a namespace's loopback costs what the host's does),
plain and streamed (SSE, timed to the last byte; the gateway adds stream_options and
relays event by event). N calls per variant after a warm-up, interleaved round-robin so
a load swing on this shared box hits all variants alike; median and p95 in ms, and the
differences (gateway - direct, relayed - gateway). The double closes each streamed
connection (Connection: close), so direct streams pay a TCP connect, and so does the
gateway's upstream leg.

    python bench/gateway.py [--calls 300] [--gemini]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import orjson  # noqa: E402

from ipc import paths  # noqa: E402
from ipc.control import call  # noqa: E402
from procs.agent import net_relay  # noqa: E402
from procs.agent.model_bridge import ModelBridge  # noqa: E402
from tests.doubles.gemini_api import GeminiApiDouble  # noqa: E402
from tests.doubles.openai_chat import ChatCompletionsDouble  # noqa: E402

CHAT = {"model": "scripted", "messages": [{"role": "user", "content": "say ok"}]}
GEMINI = {"contents": [{"role": "user", "parts": [{"text": "say ok"}]}]}
GEMINI_KEY_ENV = "BENCH_GATEWAY_GEMINI_KEY"


def interleaved(fns: dict[str, Callable[[], object]], calls: int) -> dict[str, list[float]]:
    """Time each function `calls` times, round-robin, after a warm-up of each."""
    for fn in fns.values():
        for _ in range(min(30, calls)):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(calls):
        for name, fn in fns.items():
            began = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - began) * 1000)
    return samples


def summary(name: str, samples: list[float]) -> tuple[float, float]:
    median = statistics.median(samples)
    p95 = statistics.quantiles(samples, n=20)[18]
    print(f"{name:<18} n={len(samples):<5} median {median:7.3f} ms   p95 {p95:7.3f} ms")
    return median, p95


def start_gateway(
    tmp: Path, upstream: str, gemini: str | None
) -> tuple[subprocess.Popen[bytes], Path]:
    """The service process; returns once it sent READY=1."""
    config = tmp / "gateway.toml"
    text = f'[upstreams.local]\nkind = "openai"\nbase_url = "{upstream}"\ngpu_ticket = true\n'
    if gemini is not None:
        text += f'[upstreams.gemini]\nkind = "gemini"\nbase_url = "{gemini}"\n'
        text += f'api_key_env = "{GEMINI_KEY_ENV}"\n'
    config.write_text(text)
    notify_path = tmp / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(notify_path))
        notify.settimeout(60)
        proc = subprocess.Popen(
            [sys.executable, "-m", "procs.llm.gateway_service", "--config", str(config),
             "--runtime-dir", str(tmp / "run"), "--state-dir", str(tmp / "state")],
            cwd=ROOT, process_group=0,
            env={**os.environ, "NOTIFY_SOCKET": str(notify_path), GEMINI_KEY_ENV: "bench-key"},
        )  # fmt: skip
        notify.recv(4096)
    return proc, paths.control_socket(tmp / "run", "model_gateway")


def start_relay(gateway_port: int) -> tuple[subprocess.Popen[bytes], ModelBridge, int]:
    """The sandboxed agent's way to the gateway, less the namespace: the relay process
    on a free 127.0.0.1 port, to a bridge relaying to the gateway. Returns once the
    relay listens (its agent, started after the listen, says ready)."""
    bridge = ModelBridge.open("127.0.0.1", gateway_port)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    relay = subprocess.Popen(
        [sys.executable, "-I", net_relay.__file__, "--listen", f"127.0.0.1:{port}",
         "--unix", str(bridge.socket_path), "--", sys.executable, "-c",
         "import sys; print('ready', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, process_group=0,
    )  # fmt: skip
    assert relay.stdout is not None
    if relay.stdout.readline() != b"ready\n":  # the relay listens before its agent starts
        raise RuntimeError(f"the relay did not start (exit {relay.wait(10)})")
    return relay, bridge, port


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--gemini", action="store_true", help="time the Gemini API path too")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    with ChatCompletionsDouble([]) as double, GeminiApiDouble(expected_key="bench-key") as gem:
        proc, sock = start_gateway(tmp, double.base_url, gem.base_url if args.gemini else None)
        relay: subprocess.Popen[bytes] | None = None
        bridge: ModelBridge | None = None
        try:
            grant = call(sock, "token", {"bead": "bench", "loop": "bench"}, timeout=10)
            call(sock, "turn", {"token": grant["token"], "role": "implementer"}, timeout=10)
            client = httpx.Client(trust_env=False, timeout=10)
            direct_url = double.base_url + "/chat/completions"
            gateway_url = grant["openai_base_url"] + "/chat/completions"
            relay, bridge, relay_port = start_relay(httpx.URL(gateway_url).port or 80)
            relayed_url = gateway_url.replace(f":{httpx.URL(gateway_url).port}/",
                                              f":{relay_port}/")  # fmt: skip
            auth = {"Authorization": f"Bearer {grant['token']}"}
            plain, streamed = orjson.dumps(CHAT), orjson.dumps({**CHAT, "stream": True})

            def post(url: str, body: bytes, key: str = "") -> Callable[[], object]:
                headers = {"x-goog-api-key": key} if key else auth
                return lambda: client.post(url, content=body, headers=headers).read()

            variants = {
                "direct plain": post(direct_url, plain),
                "gateway plain": post(gateway_url, plain),
                "direct stream": post(direct_url, streamed),
                "gateway stream": post(gateway_url, streamed),
                "relayed plain": post(relayed_url, plain),
                "relayed stream": post(relayed_url, streamed),
            }
            if args.gemini:
                model = "/v1beta/models/double"
                gbody = orjson.dumps(GEMINI)
                for where, base, key in (
                    ("direct", gem.base_url, "bench-key"),
                    ("gateway", grant["gemini_base_url"], grant["token"]),
                ):
                    variants[f"{where} gemini"] = post(f"{base}{model}:generateContent", gbody, key)
                    stream_url = f"{base}{model}:streamGenerateContent?alt=sse"
                    variants[f"{where} gemini-sse"] = post(stream_url, gbody, key)
            samples = interleaved(variants, args.calls)
            usage = call(sock, "usage", {"bead": "bench"}, timeout=10)
        finally:
            if relay is not None:
                os.killpg(relay.pid, signal.SIGTERM)
                relay.wait(timeout=30)
            if bridge is not None:
                bridge.close()
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    print(f"OpenAI chat (and Gemini) TEST DOUBLES on 127.0.0.1, gateway as a service process, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    figures = {name: summary(name, values) for name, values in samples.items()}
    kinds = ("plain", "stream", "gemini", "gemini-sse") if args.gemini else ("plain", "stream")
    for kind in kinds:
        (dm, dp), (gm, gp) = figures[f"direct {kind}"], figures[f"gateway {kind}"]
        print(f"added by the gateway, {kind}: median {gm - dm:.3f} ms, p95 {gp - dp:.3f} ms")
    for kind in ("plain", "stream"):
        (gm, gp), (rm, rp) = figures[f"gateway {kind}"], figures[f"relayed {kind}"]
        print(f"added by the sandbox's relay and bridge, {kind}: median {rm - gm:.3f} ms, "
              f"p95 {rp - gp:.3f} ms")  # fmt: skip
    calls = usage["roles"]["implementer"]["calls"]
    print(f"gateway counted {calls} calls for the bench's bead ({usage['used_tokens']} tokens)")


if __name__ == "__main__":
    main()
