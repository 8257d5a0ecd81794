"""Router overhead per call: what LLMRouter adds on top of the HTTP call itself.

Method: a llama.cpp /completion TEST DOUBLE on 127.0.0.1 answers instantly. We time
  raw     httpx POST /completion with the same client settings (the floor),
  router  LLMRouter.route_request (budget check, breaker, flock GPU ticket, HTTP,
          SQLite WAL usage record),
  service the same through the llm_router process's control socket (connect, frame,
          thread hand-off, route, reply),
N calls each after a warm-up, interleaved round-robin (so a load swing on this shared box
hits all three alike), and print median / p95 in ms and the differences to raw.

    python bench/llm_router.py [--calls 500]
"""

from __future__ import annotations

import argparse
import os
import signal
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

from ipc import paths  # noqa: E402
from ipc.control import call  # noqa: E402
from procs.llm.budget import BudgetStore  # noqa: E402
from procs.llm.config import RouterConfig  # noqa: E402
from procs.llm.router import LLMRouter  # noqa: E402
from procs.llm.tickets import FlockTickets  # noqa: E402
from procs.llm.types import LLMRequest  # noqa: E402
from tests.doubles.llama_cpp import LlamaCppDouble  # noqa: E402
from tests.waiting import wait_until  # noqa: E402

REQUEST = LLMRequest(model="", prompt="say ok", max_tokens=8)


def interleaved(fns: dict[str, Callable[[], object]], calls: int) -> dict[str, list[float]]:
    """Time each function `calls` times, round-robin, so load swings hit all alike."""
    for fn in fns.values():
        for _ in range(min(50, calls)):
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
    print(f"{name:<8} n={len(samples):<5} median {median:7.3f} ms   p95 {p95:7.3f} ms")
    return median, p95


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-router-"))
    with LlamaCppDouble() as llama:
        raw_client = httpx.Client(base_url=llama.base_url, trust_env=False)
        body = {"prompt": "say ok", "n_predict": 8, "temperature": 0.0, "stream": False}

        config = RouterConfig.from_dict({
            "roles": {"auditor": "local"},
            "endpoints": {"local": {"kind": "llama_cpp", "base_url": llama.base_url,
                                    "gpu_ticket": True}},
        })  # fmt: skip
        router = LLMRouter(
            config, BudgetStore(tmp / "llm_usage.sqlite", config.budget),
            FlockTickets(tmp / "tickets", 1),
        )  # fmt: skip

        cfg = tmp / "router.toml"
        cfg.write_text(
            f'[roles]\nauditor = "local"\n[endpoints.local]\nkind = "llama_cpp"\n'
            f'base_url = "{llama.base_url}"\ngpu_ticket = true\n'
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "procs.llm.service", "--config", str(cfg),
             "--runtime-dir", str(tmp / "run"), "--state-dir", str(tmp / "state")],
            cwd=ROOT, process_group=0,
        )  # fmt: skip
        sock = paths.control_socket(tmp / "run", "llm_router")
        try:
            wait_until(sock.exists, timeout=30, what="router socket")
            args_ = {"role": "auditor", "request": REQUEST.to_dict()}
            samples = interleaved(
                {
                    "raw": lambda: raw_client.post("/completion", json=body, timeout=5).json(),
                    "router": lambda: router.route_request("auditor", REQUEST, timeout=10),
                    "service": lambda: call(sock, "route", args_, timeout=10),
                },
                args.calls,
            )
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    print(f"llama.cpp test double on 127.0.0.1, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    raw_m, raw_p = summary("raw", samples["raw"])
    rt_m, rt_p = summary("router", samples["router"])
    sv_m, sv_p = summary("service", samples["service"])
    print(
        f"router overhead (router - raw): median {rt_m - raw_m:.3f} ms, p95 {rt_p - raw_p:.3f} ms"
    )
    print(f"service overhead (service - raw): median {sv_m - raw_m:.3f} ms, "
          f"p95 {sv_p - raw_p:.3f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
