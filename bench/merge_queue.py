"""Speculative speed-up of the merge queue: 10 good patches, a 2 s suite, K = 1 and K = 4.

    python bench/merge_queue.py [--patches 10] [--ks 1,4] [--suite-s 2.0]

Method: a tiny project whose one test sleeps --suite-s seconds; N patches, each adding
one module and its test, all made on the same golden commit (so each but the first is
merged onto the patches ahead of it, as in real use). The golden master and the merge
queue run as processes (sandbox bwrap where it works, else "none"; no bus); all N are
proposed at once, and the time runs from the first proposal to the last acceptance
(golden HEAD then holds all N). Figures per K:
- wall: proposal to the last landing;
- run: one suite run as the queue measured it (sandbox + interpreter + pytest + the sleep);
- landing: from a run's verdict to its acceptance (the CAS advance through the golden
  master, the fetch into golden, the bookkeeping) for each landed patch;
- overhead per landing beyond the test time, at K = 1 only (runs are serial there):
  the gap between consecutive acceptances (landings 2..N; the first also holds the N
  proposals' fetches and is shown apart) minus that patch's run (build, checkout,
  scheduling and the landing), and the same minus the bare --suite-s (all of the above
  plus the sandbox and pytest start). The goal is <= 200 ms for the first.
Median and p95 over the N landings. Runs on whatever else the machine is doing: report
the load with the figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ipc import control  # noqa: E402
from procs.sandbox import SandboxUnavailable, usable_bwrap  # noqa: E402

GIT_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "HOME": "/nonexistent",
           "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@b",
           "PATH": os.environ.get("PATH", "/usr/bin:/bin")}  # fmt: skip
TEST_COMMAND = (
    f"env PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 {sys.executable} -m pytest -q -p no:cacheprovider"
)


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          env=GIT_ENV, check=True, timeout=60)  # fmt: skip
    return done.stdout.strip()


def commit(repo: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "add", "--", *files)
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def project(tmp: Path, n: int, suite_s: float) -> tuple[Path, Path]:
    golden, work = tmp / "golden", tmp / "work"
    golden.mkdir()
    git(golden, "init", "-q", "-b", "main")
    base = commit(golden, {
        "pytest.ini": "[pytest]\npythonpath = .\ntestpaths = tests\n",
        "tests/test_slow.py": f"import time\n\n\ndef test_slow():\n    time.sleep({suite_s})\n",
    }, "a project with a slow suite")  # fmt: skip
    git(tmp, "clone", "-q", str(golden), str(work))
    for i in range(n):
        git(work, "checkout", "-q", "-b", f"p{i}", base)
        commit(work, {f"m{i}.py": f"V = {i}\n",
                      f"tests/test_m{i}.py": f"from m{i} import V\n\n\n"
                                             f"def test_v():\n    assert V == {i}\n"},
               f"patch {i}")  # fmt: skip
    return golden, work


def start(kind: str, tmp: Path, env: dict[str, str], *argv: str) -> subprocess.Popen[bytes]:
    log = open(tmp / f"{kind}.log", "wb")  # noqa: SIM115 - kept open for the child's life
    proc = subprocess.Popen(
        [sys.executable, "-m", f"procs.{kind}.service", "--runtime-dir", str(tmp / "run"),
         "--state-dir", str(tmp / "state"), "--no-bus", "--test-command", TEST_COMMAND, *argv],
        cwd=ROOT, stderr=log, env=env, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        text = (tmp / f"{kind}.log").read_bytes()
        if b'"event":"ready"' in text:
            return proc
        if proc.poll() is not None:
            raise SystemExit(f"{kind} did not start: {text.decode()[-2000:]}")
        time.sleep(0.05)
    raise SystemExit(f"{kind}: not ready in 120 s")


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def line(name: str, samples: list[float]) -> str:
    if not samples:
        return f"  {name:<44} -"
    return (f"  {name:<44} median {statistics.median(samples):8.1f} ms   "
            f"p95 {pct(samples, 0.95):8.1f} ms")  # fmt: skip


def one(k: int, n: int, suite_s: float, env: dict[str, str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-mq-") as raw:
        tmp = Path(raw)
        golden, work = project(tmp, n, suite_s)
        procs = [start("golden", tmp, env, "--repo", str(golden))]
        try:
            procs.append(start("merge_queue", tmp, env, "--k", str(k)))
            sock = tmp / "run" / "merge_queue.sock"

            def propose(i: int) -> Any:
                args = {"source": str(work), "ref": f"refs/heads/p{i}", "key": f"p{i}"}
                return control.call(sock, "propose", args, timeout=60)

            began = time.time()
            with ThreadPoolExecutor(n) as pool:
                entries = list(pool.map(propose, range(n)))
            decided = [control.call(sock, "wait", {"patch_id": e["patch_id"], "timeout_s": 600},
                                    timeout=660) for e in entries]  # fmt: skip
            status = control.call(sock, "status", {}, timeout=30)
        finally:
            for proc in procs:
                os.killpg(proc.pid, 15)
                proc.wait(timeout=30)
        bad = [d for d in decided if d["state"] != "accepted"]
        if bad:
            raise SystemExit(f"K={k}: not all landed: {orjson.dumps(bad[:2]).decode()}")
        done_at = sorted(d["decided_at"] for d in decided)
        used = [r for r in status["runs"] if not r["cancelled"]]
        by_patch = {r["patch_id"]: r["ms"] for r in used}
        order = sorted(decided, key=lambda d: d["decided_at"])
        gaps = []
        previous = began
        for d in order:
            gaps.append((d["decided_at"] - previous) * 1000.0 - by_patch.get(d["patch_id"], 0.0))
            previous = d["decided_at"]
        return {"k": k, "wall_s": done_at[-1] - began, "runs_ms": [r["ms"] for r in used],
                "cancelled": len(status["runs"]) - len(used), "landing_ms": status["landing_ms"],
                "gap_minus_run_ms": gaps,
                "gap_minus_suite_ms": [g + by_patch.get(d["patch_id"], 0.0) - suite_s * 1000
                                       for g, d in zip(gaps, order, strict=True)]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patches", type=int, default=10)
    parser.add_argument("--ks", default="1,4")
    parser.add_argument("--suite-s", type=float, default=2.0)
    args = parser.parse_args()
    try:
        mode = "bwrap" if usable_bwrap() else "none"
    except SandboxUnavailable:
        mode = "none"
    env = {**os.environ, "FACTORY_SANDBOX": mode}
    print(f"merge queue: {args.patches} good patches, a {args.suite_s} s suite, sandbox {mode}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")  # fmt: skip
    for k in (int(x) for x in args.ks.split(",")):
        r = one(k, args.patches, args.suite_s, env)
        print(f"K={k}: all {args.patches} landed in {r['wall_s']:.2f} s "
              f"({r['cancelled']} runs discarded)")  # fmt: skip
        print(line("run (sandbox + pytest + the suite)", r["runs_ms"]))
        print(line("landing (verdict -> accepted, CAS advance)", r["landing_ms"]))
        if k == 1:  # the first gap also holds the N proposals' fetches: shown apart
            first = r["gap_minus_run_ms"][0]
            print(f"  first landing: proposal to acceptance minus its run  {first:8.1f} ms")
            print(line("overhead per landing beyond the run", r["gap_minus_run_ms"][1:]))
            print(line(f"overhead per landing beyond {args.suite_s} s",
                       r["gap_minus_suite_ms"][1:]))  # fmt: skip


if __name__ == "__main__":
    main()
