"""Where golden HEAD is, read only: the golden master's control socket (`get_hash`, and
`record_run` to hand it the heartbeat's verdicts), or, where no golden master runs, the
repository itself (`git rev-parse refs/heads/BRANCH`).

    GoldenSource.head() -> (repo, hash)        raises GoldenUnknown
    GoldenSource.record(hash, green, output)   best effort: False when nobody took it
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from ipc import control, paths

ENDPOINT = "golden"
CALL_TIMEOUT_S = 10.0
GIT_TIMEOUT_S = 30.0
MAX_RECORDED_OUTPUT = 8 * 1024


class GoldenUnknown(Exception):
    """Golden HEAD could not be read; the message says why."""


class GoldenSource:
    """`repo`/`branch` when given; the golden master's socket when it exists (`auto`),
    always (`service`) or never (`git`)."""

    def __init__(self, runtime: Path, *, repo: Path | None, branch: str, via: str) -> None:
        if via not in ("auto", "service", "git"):
            raise ValueError(f"via must be auto, service or git, got {via!r}")
        if via == "git" and repo is None:
            raise ValueError("reading golden through git needs its repository (--repo)")
        self.socket = paths.control_socket(runtime, ENDPOINT)
        self.repo = repo
        self.branch = branch
        self.via = via

    def _service(self) -> bool:
        if self.via == "auto":
            return self.repo is None or self.socket.exists()
        return self.via == "service"

    def head(self) -> tuple[Path, str]:
        if self._service():
            try:
                got = control.call(self.socket, "get_hash", {}, timeout=CALL_TIMEOUT_S)
            except control.ControlError as exc:
                raise GoldenUnknown(f"the golden master: {exc}") from None
            return Path(str(got["repo"])), str(got["hash"])
        assert self.repo is not None
        ref = f"refs/heads/{self.branch}"
        try:
            done = subprocess.run(["git", "-C", str(self.repo), "rev-parse", "--verify", ref],
                                  capture_output=True, text=True, timeout=GIT_TIMEOUT_S,
                                  check=False)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise GoldenUnknown(f"git rev-parse {ref} in {self.repo}: {exc}") from None
        if done.returncode != 0:
            raise GoldenUnknown(f"{self.repo}: {ref}: {done.stderr.strip()[:300]}")
        return self.repo, done.stdout.strip()

    def record(self, commit: str, green: bool, output: str) -> bool:
        """Tell the golden master the verdict on `commit`, when one runs."""
        if not self._service() or not self.socket.exists():
            return False
        args = {"hash": commit, "green": green, "output": output[-MAX_RECORDED_OUTPUT:],
                "source": "heartbeat"}  # fmt: skip
        try:
            control.call(self.socket, "record_run", args, timeout=CALL_TIMEOUT_S)
        except control.ControlError:
            return False
        return True
