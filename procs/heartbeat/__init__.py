"""The heartbeat: the golden suite on golden HEAD, on an interval and at once on
GoldenMasterUpdated; TestFailure on green->red and on a new error, TestPassing on
red->green (seed fs-200..204). Code only: it never calls a model.

- `suite`: one sandboxed run on an export of a commit, and its verdict (pure `judge`).
- `verdicts`: what a verdict announces (pure `announce`) and the SQLite record of runs
  and of what was announced (a restart does not announce the same red again).
- `golden`: golden HEAD from the golden master's socket, or the repository.
- `service`: the service (timer, signal, worker, publishing, control socket).
"""
