"""Workspace creation and destruction, every strategy side by side, on real RAM disks.

    python3 bench/workspace.py [--files 20000] [--small 2000] [--rounds 40] [--slow-rounds 5]
    python3 bench/workspace.py --slots-only [--slot-rounds 400]

Method: builds (once, cached under .bench/) git repos of real source files taken from
this Python's stdlib and site-packages, committed; provisions a btrfs and an XFS
(reflink=1) RAM disk in /dev/shm (loop-mounted, golden master imported: a subvolume on
btrfs); then times WorkspaceRegistry.create_workspace and destroy_workspace (record in
SQLite included) for each strategy, `rounds` times (`slow-rounds` for the strategies
whose cost grows with the repo), at both repo sizes. Prints median and p95 (nearest
rank) in ms, each create's ratio to `cp --reflink` (the reflink strategy on the XFS RAM
disk, the seed's method), and the first `git status` in a fresh workspace.
"auto -> snapshot (pool 2)" is the service's configuration: two snapshots of the golden
taken ahead and topped up after each round (as the service does between requests, not
timed); plain "snapshot" takes each snapshot on request.
Exits 1 if the `auto` strategy's create p95 exceeds 50 ms at any size (the seed's bar).
Needs root (loop mounts). Everything it mounts is torn down before it exits.

Slot overhead (printed first; alone with --slots-only, which needs no loop mount): a
ledger made with LedgerOwner in a scratch runtime dir (max_workspaces 64); times
WorkspaceSlots.take + give_back alone (min_free_ram_mb 0, then the governor's default
1024, which adds its free-RAM read), slots.statistics() (the snapshot read behind
status/list), and WorkspaceRegistry create + destroy of a 200-file repo with and without
the ledger, the two registries taking turns round by round (median / p95, µs or ms).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ipc import ledger  # noqa: E402
from ipc.ledger import LedgerOwner, Limits  # noqa: E402
from procs.workspaces import WorkspaceRegistry, WorkspaceSlots, _fsinfo  # noqa: E402
from procs.workspaces import ramdisk as ramdisks  # noqa: E402

BENCH_DIR = ROOT / ".bench"
SUFFIXES = (".py", ".pyi", ".txt", ".json", ".toml", ".cfg", ".rst", ".md")
AUTO_BAR_MS = 50.0
GOAL_MS = 5.0
GIT_ENV = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@factory.invalid",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@factory.invalid",
}


def git(repo: Path, *args: str, timeout_s: float = 600.0) -> str:
    env = {**os.environ, **GIT_ENV}
    proc = subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout_s,
        check=True,
    )
    return proc.stdout


def source_files(limit: int) -> list[tuple[Path, Path]]:
    """Up to `limit` (absolute, relative) real source files from the stdlib and site-packages."""
    found: list[tuple[Path, Path]] = []
    for base in (Path(sysconfig.get_paths()["stdlib"]), Path(sysconfig.get_paths()["purelib"])):
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for name in sorted(filenames):
                path = Path(dirpath) / name
                if path.suffix in SUFFIXES and path.is_file() and not path.is_symlink():
                    found.append((path, Path(base.name) / path.relative_to(base)))
                    if len(found) == limit:
                        return found
    return found


def build_repo(files: int) -> Path:
    """A committed git repo of `files` real source files, cached in .bench/."""
    repo = BENCH_DIR / f"workspace-src-{files}"
    if (repo / ".git").is_dir() and git(repo, "rev-parse", "--verify", "-q", "HEAD"):
        return repo
    shutil.rmtree(repo, ignore_errors=True)
    chosen = source_files(files)
    if len(chosen) < files:
        raise SystemExit(f"only {len(chosen)} source files found, {files} wanted")
    for src, rel in chosen:
        dest = repo / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"{files} real source files")
    return repo


def repo_bytes(repo: Path) -> int:
    return sum(p.stat().st_size for p in repo.rglob("*") if p.is_file() and ".git" not in p.parts)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass
class Row:
    label: str
    strategy: str
    rounds: int
    create_ms: list[float]
    destroy_ms: list[float]
    first_status_ms: float


def time_case(reg: WorkspaceRegistry, source: Path, strategy: str, rounds: int, label: str) -> Row:
    create, destroy = [], []
    first_status = 0.0
    used = strategy
    for i in range(rounds):
        t0 = time.perf_counter()
        ws = reg.create_workspace("bench", source, strategy)
        t1 = time.perf_counter()
        if i == 0:
            used = ws.strategy
            git(ws.path, "status", "--porcelain")
            first_status = (time.perf_counter() - t1) * 1000
        t2 = time.perf_counter()
        reg.destroy_workspace(ws.id)
        t3 = time.perf_counter()
        reg.refill_pools()  # what the service does between requests (no-op without a pool)
        create.append((t1 - t0) * 1000)
        destroy.append((t3 - t2) * 1000)
    name = f"auto -> {used}" if strategy == "auto" else strategy
    if reg.pool.size and used == "snapshot":
        name += f" (pool {reg.pool.size})"
    return Row(label, name, rounds, create, destroy, first_status)


def run_size(files: int, args: argparse.Namespace, runtime: Path) -> list[Row]:
    repo = build_repo(files)
    size_mb = max(1024, repo_bytes(repo) * 4 // 2**20 + 512)
    print(f"\n== {files} files, {repo_bytes(repo) / 2**20:.0f} MiB of source ({repo}) ==")
    specs = {
        fs: ramdisks.RamDiskSpec(
            name=f"bench-{fs}-{files}", size_mb=size_mb, fstype=fs, runtime_dir=runtime
        )
        for fs in ("btrfs", "xfs")
    }
    scratch = Path("/dev/shm") / f"factory-bench-scratch-{os.getpid()}"
    rows: list[Row] = []
    try:
        regs = {}
        for fs, spec in specs.items():
            t0 = time.perf_counter()
            ramdisks.destroy(spec, force=True)  # a previous run's leftovers
            ramdisks.create(spec, repo, fresh=True, timeout_s=600)
            print(f"  {fs} RAM disk + golden import: {time.perf_counter() - t0:.1f} s")
            db = runtime / f"bench-{fs}-{files}.sqlite3"
            db.unlink(missing_ok=True)
            regs[fs] = WorkspaceRegistry(spec.workspaces, db, scratch=scratch)
        pooled_db = runtime / f"bench-pooled-{files}.sqlite3"
        pooled_db.unlink(missing_ok=True)
        regs["pooled"] = WorkspaceRegistry(
            specs["btrfs"].workspaces, pooled_db, scratch=scratch, snapshot_pool=2
        )
        btrfs, xfs = specs["btrfs"], specs["xfs"]
        cases = [
            ("xfs", xfs.golden, "reflink", args.slow_rounds),  # the cp --reflink baseline
            ("pooled", btrfs.golden, "auto", args.rounds),  # as the service runs it
            ("btrfs", btrfs.golden, "auto", args.rounds),
            ("btrfs", btrfs.golden, "snapshot", args.rounds),
            ("btrfs", btrfs.golden, "overlay", args.rounds),
            ("xfs", xfs.golden, "overlay", args.rounds),
            ("btrfs", btrfs.golden, "reflink", args.slow_rounds),
            ("btrfs", btrfs.golden, "worktree", args.slow_rounds),
            ("btrfs", btrfs.golden, "copy", args.slow_rounds),
            ("btrfs", btrfs.golden, "jj", args.slow_rounds),
        ]
        for fs, golden, strategy, rounds in cases:
            reg = regs[fs]
            if strategy not in ("auto",) and (why := _unavailable(reg, golden, strategy)):
                print(f"  skip {strategy} on {fs}: {why}")
                continue
            rows.append(time_case(reg, golden, strategy, rounds, fs.replace("pooled", "btrfs")))
        for reg in regs.values():
            reg.close()
        compare_mount(btrfs.golden, scratch, args.rounds)
    finally:
        for spec in specs.values():
            ramdisks.destroy(spec, force=True)
        shutil.rmtree(scratch, ignore_errors=True)
    print_rows(rows)
    return rows


def _unavailable(reg: WorkspaceRegistry, golden: Path, strategy: str) -> str | None:
    from procs.workspaces import StrategyUnavailable

    try:
        reg.choose_strategy(golden, strategy)
    except StrategyUnavailable as exc:
        return str(exc)
    return None


def compare_mount(lower: Path, scratch: Path, rounds: int) -> None:
    """overlayfs through mount(2)/umount2(2) via ctypes against forking mount(8)/umount(8)."""
    base = scratch / "mount-compare"
    upper, work, target = base / "upper", base / "work", base / "mnt"
    for d in (upper, work, target):
        d.mkdir(parents=True, exist_ok=True)
    options = f"lowerdir={lower},upperdir={upper},workdir={work}"
    timings: dict[str, list[float]] = {
        k: [] for k in ("mount(2)", "umount2(2)", "mount(8)", "umount(8)")
    }
    for _ in range(rounds):
        t0 = time.perf_counter()
        _fsinfo.mount("overlay", target, "overlay", options)
        t1 = time.perf_counter()
        _fsinfo.unmount(target)
        t2 = time.perf_counter()
        subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o", options, str(target)],
            timeout=30,
            check=True,
        )
        t3 = time.perf_counter()
        subprocess.run(["umount", str(target)], timeout=30, check=True)
        t4 = time.perf_counter()
        for key, a, b in (
            ("mount(2)", t0, t1),
            ("umount2(2)", t1, t2),
            ("mount(8)", t2, t3),
            ("umount(8)", t3, t4),
        ):
            timings[key].append((b - a) * 1000)
    shutil.rmtree(base)
    print("  overlay mount, ctypes syscall against the mount(8) command:")
    for key, values in timings.items():
        med, p95 = statistics.median(values), pct(values, 0.95)
        print(f"    {key:11} median {med:6.2f} ms  p95 {p95:6.2f} ms")


def _figures(values: list[float], unit: str) -> str:
    return f"median {statistics.median(values):8.2f} {unit}  p95 {pct(values, 0.95):8.2f} {unit}"


def slot_overhead(rounds: int) -> None:
    """What taking a workspace slot from the ledger adds to a create (see the docstring)."""
    runtime = BENCH_DIR / f"slots-run-{os.getpid()}"
    runtime.mkdir(parents=True, exist_ok=True)
    scratch = Path("/dev/shm") / f"factory-bench-slots-{os.getpid()}"
    repo = build_repo(200)
    print(f"\n== workspace slot overhead ({rounds} rounds) ==")
    owner = LedgerOwner.create(runtime, Limits(max_workspaces=64))
    try:
        for min_free in (0, 1024):
            owner.adjust_limits(Limits(max_workspaces=64, min_free_ram_mb=min_free))
            slots, took = WorkspaceSlots(runtime), []
            for i in range(rounds):
                t0 = time.perf_counter()
                slots.take(f"{i:012x}")
                slots.give_back(f"{i:012x}")
                took.append((time.perf_counter() - t0) * 1e6)
            print(f"  take + give_back, min_free_ram_mb {min_free:4}: {_figures(took, 'µs')}")
        stats = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            slots.statistics()
            stats.append((time.perf_counter() - t0) * 1e6)
        print(f"  statistics() (status, list):          {_figures(stats, 'µs')}")
        regs = {
            name: WorkspaceRegistry(
                BENCH_DIR / f"slots-ws-{name[:2]}",
                runtime / f"slots-{name[:2]}.sqlite3",
                scratch=scratch,
                slots=WorkspaceSlots(runtime if name == "with ledger" else None),
            )
            for name in ("with ledger", "no ledger")
        }
        times: dict[str, list[float]] = {name: [] for name in regs}
        used = ""
        for i in range(rounds // 4):
            for name, reg in sorted(regs.items(), reverse=i % 2 == 1):  # who goes first alternates
                t0 = time.perf_counter()
                ws = reg.create_workspace("bench", repo)
                times[name].append((time.perf_counter() - t0) * 1000)
                reg.destroy_workspace(ws.id)
                used = ws.strategy
        for name, reg in regs.items():
            print(f"  create ({used}, 200 files), {name:11}: {_figures(times[name], 'ms')}")
            reg.close()
        delta = statistics.median(times["with ledger"]) - statistics.median(times["no ledger"])
        print(f"  difference of the medians: {delta * 1000:+.0f} µs")
    finally:
        owner.destroy()
        ledger.destroy(runtime)
        shutil.rmtree(runtime, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
        for name in ("wi", "no"):
            shutil.rmtree(BENCH_DIR / f"slots-ws-{name}", ignore_errors=True)


def print_rows(rows: list[Row]) -> None:
    base = next((r for r in rows if r.strategy == "reflink" and r.label == "xfs"), None)
    base_ms = statistics.median(base.create_ms) if base else float("nan")
    print(
        f"  {'strategy':25} {'fs':6} {'n':>3} {'create med':>11} {'p95':>9} "
        f"{'destroy med':>12} {'p95':>9} {'vs cp --reflink':>16} {'1st git status':>15}"
    )
    for r in rows:
        med = statistics.median(r.create_ms)
        p95 = pct(r.create_ms, 0.95)
        print(
            f"  {r.strategy:25} {r.label:6} {r.rounds:3d} {med:9.2f}ms {p95:7.2f}ms "
            f"{statistics.median(r.destroy_ms):10.2f}ms {pct(r.destroy_ms, 0.95):7.2f}ms "
            f"{med / base_ms:15.4f}x {r.first_status_ms:13.0f}ms"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=20000, help="large repo's file count")
    parser.add_argument("--small", type=int, default=2000, help="small repo's file count")
    parser.add_argument("--rounds", type=int, default=40, help="rounds, constant-time ones")
    parser.add_argument("--slow-rounds", type=int, default=5, help="rounds, size-bound ones")
    parser.add_argument("--slot-rounds", type=int, default=400, help="slot overhead rounds")
    parser.add_argument("--slots-only", action="store_true", help="only the slot overhead")
    args = parser.parse_args(argv)
    slot_overhead(args.slot_rounds)
    if args.slots_only:
        return 0
    if not _fsinfo.has_sys_admin():
        print("bench/workspace.py needs root (it loop-mounts RAM disks)", file=sys.stderr)
        return 2
    print(
        f"machine: {os.cpu_count()} cpus, Linux {platform.release()}, Python "
        f"{platform.python_version()}, load average {os.getloadavg()[0]:.1f}; times through "
        "WorkspaceRegistry (SQLite record included); p95 = nearest rank"
    )
    runtime = BENCH_DIR / "run"
    runtime.mkdir(parents=True, exist_ok=True)
    worst: dict[str, float] = {}
    for files in (args.small, args.files):
        for row in run_size(files, args, runtime):
            if row.strategy.startswith("auto"):
                p95 = pct(row.create_ms, 0.95)
                worst[row.strategy] = max(worst.get(row.strategy, 0.0), p95)
    print()
    for name, p95 in worst.items():
        verdict = "ok" if p95 <= AUTO_BAR_MS else "FAIL"
        goal = "met" if p95 <= GOAL_MS else "missed"
        print(
            f"{name}: create p95 at the worse size {p95:.2f} ms; bar {AUTO_BAR_MS:.0f} ms: "
            f"{verdict}; goal {GOAL_MS:.0f} ms: {goal}"
        )
    return 0 if worst and max(worst.values()) <= AUTO_BAR_MS else 1


if __name__ == "__main__":
    sys.exit(main())
