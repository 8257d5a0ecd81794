"""python -m procs.gauntlet on real git repos (the corpus project): exit 0/1/2, the JSON
object, REV..HEAD plus uncommitted and untracked work judged, the config read at REV, the
stop at the first reject unless --all, and the sandboxed stages (compile, unit, lint)
rejecting with findings or a timeout."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from procs.gauntlet.__main__ import main
from tests.gauntlet_corpus.harness import materialize, template
from tests.gauntlet_corpus.patches import CHEATS, HONEST, Patch, Write
from tests.helpers.sandbox import bwrap_unusable

pytestmark = pytest.mark.integration
BY_NAME = {p.name: p for p in CHEATS + HONEST}
NO_ROUTER = '[gauntlet]\nrouter_socket = "/nonexistent/llm_router.sock"\n'


@pytest.fixture(autouse=True)
def _needs_bwrap() -> None:
    if (why := bwrap_unusable()) is not None:
        pytest.skip(why)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    return template(tmp_path_factory.mktemp("cli"))


def gauntlet(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(args), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def workspace(repo: tuple[Path, str], tmp_path: Path, patch: Patch) -> tuple[Path, str]:
    template_repo, base = repo
    return materialize(patch, template_repo, tmp_path / "ws"), base


def config(tmp_path: Path, extra: str = "") -> str:
    path = tmp_path / "factory.toml"
    unit = json.dumps([sys.executable, "-m", "pytest", "-q"])
    path.write_text(NO_ROUTER + f"unit_command = {unit}\ntimeout_s = 120\n{extra}")
    return str(path)


def commit(ws: Path, message: str) -> None:
    for args in (["add", "-A"], ["commit", "-q", "-m", message]):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=ws,
                       check=True, timeout=60)  # fmt: skip


def test_an_honest_uncommitted_change_with_an_untracked_test_passes_with_json(
    repo: tuple[Path, str], tmp_path: Path
) -> None:
    ws, base = workspace(repo, tmp_path, BY_NAME["adds-tests"])
    code, out, _ = gauntlet(
        "--workspace",
        str(ws),
        "--base",
        base,
        "--stage",
        "cheat_detection",
        "--stage",
        "llm_judge",
        "--json",
        "--config",
        config(tmp_path),
    )
    result = json.loads(out)
    assert code == 0, out
    assert result["verdict"] == "pass"
    assert [(s["name"], s["verdict"]) for s in result["stages"]] == [
        ("cheat_detection", "pass"), ("llm_judge", "skipped")]  # fmt: skip
    assert "no LLM router is listening" in result["stages"][1]["reason"]


def test_a_committed_cheat_is_rejected_with_findings_and_stops_the_run(
    repo: tuple[Path, str], tmp_path: Path
) -> None:
    ws, base = workspace(repo, tmp_path, BY_NAME["return-expected-literals"])
    commit(ws, "discount codes")
    args = ["--workspace", str(ws), "--base", base, "--stage", "cheat_detection",
            "--stage", "llm_judge", "--json", "--config", config(tmp_path)]  # fmt: skip
    code, out, _ = gauntlet(*args)
    result = json.loads(out)
    assert code == 1 and result["verdict"] == "reject"
    assert [s["name"] for s in result["stages"]] == ["cheat_detection"]
    findings = result["stages"][0]["findings"]
    assert {f["class"] for f in findings} == {"hardcoded_values"}
    assert all(f["path"] == "shop/discount.py" and f["line"] > 0 for f in findings)
    code, out, _ = gauntlet(*args, "--all")
    assert code == 1
    assert [s["name"] for s in json.loads(out)["stages"]] == ["cheat_detection", "llm_judge"]


def test_the_settings_are_read_at_rev_so_a_change_cannot_skip_its_judge(
    repo: tuple[Path, str], tmp_path: Path
) -> None:
    skip_me = Patch("skip-me", "runner_tampering", "", (
        *BY_NAME["return-expected-literals"].edits,
        Write("pyproject.toml", (repo[0] / "pyproject.toml").read_text()
              + '\n[tool.factory.gauntlet]\nskip = {cheat_detection = "trust me"}\n'),
    ))  # fmt: skip
    ws, base = workspace(repo, tmp_path, skip_me)
    code, out, _ = gauntlet(
        "--workspace",
        str(ws),
        "--base",
        base,
        "--stage",
        "cheat_detection",
        "--json",
        "--config",
        config(tmp_path),
    )
    findings = json.loads(out)["stages"][0]["findings"]
    assert code == 1
    assert {"hardcoded_values", "runner_tampering"} <= {f["class"] for f in findings}


def test_compile_unit_and_lint_run_sandboxed_and_reject_with_findings(
    repo: tuple[Path, str], tmp_path: Path
) -> None:
    broken = Patch("broken", None, "", (
        Write("shop/extra.py", "import os\n\n\ndef f(:\n    return 1\n"),))  # fmt: skip
    ws, base = workspace(repo, tmp_path, broken)
    code, out, _ = gauntlet("--workspace", str(ws), "--base", base, "--json", "--all",
                            "--stage", "compile", "--stage", "unit", "--stage", "lint",
                            "--config", config(tmp_path))  # fmt: skip
    stages = {s["name"]: s for s in json.loads(out)["stages"]}
    assert code == 1
    assert stages["compile"]["verdict"] == "reject"
    assert stages["compile"]["findings"][0]["path"] == "shop/extra.py"
    assert stages["compile"]["findings"][0]["line"] == 4
    assert stages["unit"]["verdict"] == "reject"  # the feature test still fails
    if shutil.which("ruff"):
        assert stages["lint"]["verdict"] == "reject"
    assert not (ws / ".pytest_cache").exists() and not list(ws.rglob("__pycache__"))


def test_a_stage_past_its_timeout_rejects_saying_so(repo: tuple[Path, str], tmp_path: Path
                                                    ) -> None:  # fmt: skip
    ws, base = workspace(repo, tmp_path, BY_NAME["constant-table"])
    hang = json.dumps([sys.executable, "-c", "import select; select.select([], [], [])"])
    path = tmp_path / "hang.toml"
    path.write_text(f"[gauntlet]\nunit_command = {hang}\ntimeout_s = 1\n")
    code, out, _ = gauntlet("--workspace", str(ws), "--base", base, "--stage", "unit", "--json",
                            "--config", str(path))  # fmt: skip
    (stage,) = json.loads(out)["stages"]
    assert code == 1 and stage["verdict"] == "reject"
    assert "timed out after 1 s" in stage["reason"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--base", "HEAD"], "--workspace"),
        (["--workspace", "{ws}", "--base", "no-such-rev"], "is not a commit"),
        (["--workspace", "{tmp}", "--base", "HEAD"], "not a git work tree"),
        (["--workspace", "{ws}", "--base", "HEAD", "--stage", "spelling"], "invalid choice"),
        (["--workspace", "{ws}", "--base", "HEAD", "--config", "{tmp}/none.toml"], "none.toml"),
    ],
)
def test_usage_and_setup_errors_exit_2_naming_what_was_wrong(
    repo: tuple[Path, str], tmp_path: Path, args: list[str], says: str, capsys: Any
) -> None:
    ws, _ = workspace(repo, tmp_path, BY_NAME["constant-table"])
    filled = [a.format(ws=ws, tmp=tmp_path) for a in args]
    code, _, err = gauntlet(*filled)
    assert code == 2
    assert says in err + capsys.readouterr().err


def test_the_module_runs_as_a_program(repo: tuple[Path, str], tmp_path: Path) -> None:
    ws, base = workspace(repo, tmp_path, BY_NAME["except-pass"])
    done = subprocess.run(
        [sys.executable, "-m", "procs.gauntlet", "--workspace", str(ws), "--base", base,
         "--stage", "cheat_detection", "--config", config(tmp_path)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "[empty_catch]" in done.stdout and "verdict: reject" in done.stdout


def test_lint_judges_only_the_lines_the_change_added(repo: tuple[Path, str], tmp_path: Path
                                                     ) -> None:  # fmt: skip
    if shutil.which("ruff") is None:
        pytest.skip("ruff is not on PATH")
    old = Patch("old-problem", None, "", (Write("shop/util.py", "import os\n\nX = 1\n"),))
    ws, _ = workspace(repo, tmp_path, old)
    commit(ws, "util with an unused import")
    base = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ws, capture_output=True,
                          text=True, check=True, timeout=60).stdout.strip()  # fmt: skip
    (ws / "shop" / "util.py").write_text("import os\n\nX = 1\nY = 2\n")
    args = ["--workspace", str(ws), "--base", base, "--stage", "lint", "--json"]
    code, out, _ = gauntlet(*args)
    (stage,) = json.loads(out)["stages"]
    assert code == 0 and "1 older one(s) left alone" in stage["reason"], stage
    (ws / "shop" / "util.py").write_text("import os\nimport sys\n\nX = 1\nY = 2\n")
    code, out, _ = gauntlet(*args)
    (stage,) = json.loads(out)["stages"]
    assert code == 1
    assert [(f["path"], f["line"]) for f in stage["findings"]] == [("shop/util.py", 2)]
