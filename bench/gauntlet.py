"""The gauntlet's corpus score and cheat_detection's own time on a 20k-file repo.

1. Corpus (tests/gauntlet_corpus): each patch is applied to a fresh copy of the shop
   project (committed in git; the patch left uncommitted); then
   - plain pytest must pass in it (the cheat really makes the suite green): all patches
     in one interpreter that forks a child per workspace;
   - static cheat_detection (Change.load + static_findings) must report a cheat as its
     class, and nothing for an honest patch;
   - unless --quick, the full cheat_detection stage (static + REV's tests re-run against
     the patch in the sandbox) must reject every cheat and pass every honest patch.
   Printed: recall per class, false alarms, and which patch failed what.

2. Timing (--files N, default 20000): a generated repo of N files (N/100 packages of
   modules, one test module per 100 files, a README per package), committed; a change of
   3 modified modules (with an except/pass, a commented line, a literal), 1 new module and
   1 new test file, left uncommitted. Measured over --runs (30) after 3 warm-ups, with
   perf_counter, in this process:
   - snapshot: Change.load (a temporary index, `git add -A`, `git diff --cached`, one
     `git cat-file --batch`);
   - static: static_findings (every rule, plus the `git grep` for tests that name the
     changed functions);
   - cheat_detection excluding the dynamic re-run = snapshot + static (the goal:
     p95 <= 500 ms).
   Median and p95 (nearest rank) in ms. For scale, one run of the unit command over the
   repo's tests (in the sandbox) and one dynamic re-run (copy + REV's tests) are timed once.

3. Honest history (--history N): static cheat_detection over this repository's own last N
   commits (each one an honest change, judged as REV~1 -> REV in a clone), printing how
   many are flagged, by class, and the first findings of each: the false alarms a rule
   change adds or removes on real refactors. Some flags there are fair (a test whose
   behaviour changed had its expectation edited; in a loop the implementer may not touch
   tests at all).

    python3 bench/gauntlet.py [--quick] [--files 20000] [--runs 30] [--skip-timing]
                              [--history N]
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from procs.gauntlet import (
    CLASSES,
    Change,
    ChangeError,
    CheatDetection,
    GauntletConfig,
    Verdict,
    static_findings,
)
from procs.gauntlet._cheat_dynamic import run_protected
from procs.gauntlet._sandboxed import run_readonly
from tests.gauntlet_corpus.harness import (
    ALL,
    Judged,
    materialize,
    pytest_green_many,
    score,
    template,
)

CONFIG = GauntletConfig(unit_command=(sys.executable, "-m", "pytest", "-q"), timeout_s=600)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def corpus(root: Path, quick: bool) -> bool:
    repo, base = template(root)
    spaces = [materialize(p, repo, root / p.name) for p in ALL]
    green = pytest_green_many(spaces)
    judged = [
        Judged(p, static_findings(Change.load(ws, base))) for p, ws in zip(ALL, spaces, strict=True)
    ]
    per_class, false_alarms = score(judged)
    ok = True
    print(
        f"corpus: {sum(p.cls is not None for p in ALL)} cheats, "
        f"{sum(p.cls is None for p in ALL)} honest changes"
    )
    not_green = [p.name for p, (g, _) in zip(ALL, green, strict=True) if not g]
    print(f"  every patch makes plain pytest green: {not_green or 'yes'}")
    ok &= not not_green
    print("  static recall per class (a finding of the cheat's class):")
    for cls in CLASSES:
        caught, total = per_class.get(cls, (0, 0))
        print(f"    {cls:20} {caught}/{total}  {100 * caught / max(total, 1):5.1f} %")
        ok &= caught == total
    print(
        f"  false alarms (honest patches with any finding): {len(false_alarms)}/"
        f"{sum(p.cls is None for p in ALL)}"
    )
    for item in false_alarms:
        print(f"    {item.patch.name}: {[f.feedback() for f in item.findings]}")
    ok &= not false_alarms
    if not quick:
        wrong = []
        stage = CheatDetection()
        for patch, ws in zip(ALL, spaces, strict=True):
            outcome = stage.run(Change.load(ws, base), CONFIG)
            rejected = outcome.verdict is Verdict.REJECT
            if rejected != (patch.cls is not None):
                wrong.append(f"{patch.name}: {outcome.verdict.value} ({outcome.reason})")
        print(
            f"  full cheat_detection (static + REV's tests re-run in the sandbox): "
            f"{wrong or 'all right'}"
        )
        ok &= not wrong
    return ok


MODULE = '''"""Module {i} of package {p}."""


def value_{i}(x: int) -> int:
    return x * {i} + {p}


def label_{i}(name: str) -> str:
    return f"{{name}}-{i}"
'''
TEST_MODULE = """from pkg{p}.mod0 import value_0


def test_value_{p}():
    assert value_0(2) == {p}
"""


def generate(root: Path, files: int) -> tuple[Path, str]:
    repo = root / "big"
    packages = max(1, files // 100)
    for p in range(packages):
        package = repo / f"pkg{p}"
        package.mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "README.md").write_text(f"# pkg{p}\n")
        for i in range(97):
            (package / f"mod{i}.py").write_text(MODULE.format(i=i, p=p))
        tests = repo / "tests" / f"pkg{p}"
        tests.mkdir(parents=True)
        (tests / f"test_pkg{p}.py").write_text(TEST_MODULE.format(p=p))
    (repo / "pyproject.toml").write_text('[tool.pytest.ini_options]\npythonpath = ["."]\n'
                                         'addopts = "-p no:cacheprovider"\n')  # fmt: skip
    git = ["git", "-c", "user.name=b", "-c", "user.email=b@b"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=repo, check=True)
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "generated"], cwd=repo, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, check=True,
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    for p in (1, 2, 3):
        path = repo / f"pkg{p}" / "mod5.py"
        path.write_text(
            path.read_text()
            + (
                "\n\ndef careful_5(x: int) -> int:\n    try:\n        return value_5(x)\n"
                "    except ValueError:\n        pass\n    # return value_5(-x)\n    return 17\n"
            )
        )
    (repo / "pkg4" / "extra.py").write_text("def extra(x: int) -> int:\n    return x + 1\n")
    (repo / "tests" / "pkg4" / "test_extra.py").write_text(
        "from pkg4.extra import extra\n\n\ndef test_extra():\n    assert extra(1) == 2\n"
    )
    return repo, head


def timing(root: Path, files: int, runs: int) -> bool:
    began = time.perf_counter()
    repo, base = generate(root, files)
    count = int(subprocess.run(["git", "ls-files"], cwd=repo, capture_output=True, text=True,
                               check=True).stdout.count("\n"))  # fmt: skip
    print(
        f"\ntiming: generated repo of {count} tracked files (+2 untracked, 3 modified) "
        f"in {time.perf_counter() - began:.1f} s"
    )
    snapshot, static, total = [], [], []
    findings = []
    for round_ in range(runs + 3):
        t0 = time.perf_counter()
        change = Change.load(repo, base)
        t1 = time.perf_counter()
        findings = static_findings(change)
        t2 = time.perf_counter()
        if round_ >= 3:
            snapshot.append((t1 - t0) * 1000)
            static.append((t2 - t1) * 1000)
            total.append((t2 - t0) * 1000)
    print(f"  findings on the change: {sorted({f.cls for f in findings})} ({len(findings)})")
    for name, values in (("snapshot (Change.load)", snapshot), ("static rules", static),
                         ("cheat_detection w/o re-run", total)):  # fmt: skip
        print(
            f"  {name:28} median {statistics.median(values):7.1f} ms   "
            f"p95 {p95(values):7.1f} ms   (n={len(values)})"
        )
    goal = p95(total) <= 500.0
    print(f"  goal p95 <= 500 ms: {'met' if goal else 'NOT met'}")
    unit = run_readonly(CONFIG.unit_command, repo, CONFIG)
    print(
        f"  for scale, the unit command over the repo's {files // 100 + 1} test modules "
        f"(sandboxed): {unit.duration_ms / 1000:.1f} s (exit {unit.returncode})"
    )
    t0 = time.perf_counter()
    dynamic = run_protected(Change.load(repo, base), CONFIG)
    print(
        f"  the dynamic re-run (copy {count} files + REV's tests, sandboxed): "
        f"{time.perf_counter() - t0:.1f} s ({'green' if dynamic.green else dynamic.problem})"
    )
    return goal


def history(root: Path, commits: int) -> None:
    source = Path(__file__).resolve().parent.parent
    clone = root / "history"
    subprocess.run(["git", "clone", "-q", str(source), str(clone)], check=True)
    listed = subprocess.run(["git", "rev-list", "--no-merges", "-n", str(commits), "HEAD"],
                            cwd=clone, capture_output=True, text=True, check=True)  # fmt: skip
    revs = listed.stdout.split()
    flagged, by_class, judged = [], {}, 0
    for rev in revs:
        subprocess.run(["git", "checkout", "-q", "--detach", "-f", rev], cwd=clone, check=True)
        subprocess.run(["git", "clean", "-qfdx"], cwd=clone, check=True)
        try:
            change = Change.load(clone, f"{rev}~1")
        except ChangeError:
            continue  # the root commit
        judged += 1
        findings = static_findings(change)
        for finding in findings:
            by_class[finding.cls] = by_class.get(finding.cls, 0) + 1
        if findings:
            subject = subprocess.run(["git", "log", "-1", "--format=%s", rev], cwd=clone,
                                     capture_output=True, text=True, check=True).stdout  # fmt: skip
            flagged.append((rev[:8], subject.strip()[:80], findings))
    print(f"\nhonest history: {len(flagged)}/{judged} of this repo's last commits flagged; "
          f"findings by class {dict(sorted(by_class.items()))}")  # fmt: skip
    for rev, subject, findings in flagged:
        print(f"  {rev} {subject}")
        for finding in findings[:4]:
            print(f"      {finding.feedback()[:150]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="no sandboxed re-run per patch")
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument("--history", type=int, default=0, metavar="N",
                        help="also judge this repo's last N commits (honest changes)")  # fmt: skip
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-gauntlet-"))
    try:
        ok = corpus(root / "corpus", args.quick)
        if not args.skip_timing:
            ok &= timing(root / "timing", args.files, args.runs)
        if args.history:
            history(root, args.history)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
