"""What test modules share; no tests here (test modules never import each other).

- `processes`: children in their own process groups, killed as groups at teardown.
- `bus`: a connected publisher/subscriber pair, and a flooding publisher process.
- `governor`: the resource governor as a real process, and its status.
- `workspace_service`: the workspace manager as a real process.
- `repos`: small committed git repos.
- `loop_repos`: small committed Python projects (a module and its pytest suite) for the
  loop's TCR tests.
- `ramdisks`: real loop-mounted RAM disks, and why they cannot be tested here.
- `host`: facts about this machine (privileges, kernel, filesystems), read without
  calling the code under test, so a bug in our code cannot turn into a skip or change
  what a test expects.
- `signal_examples`: one signal of each type, and mutations of their frames.
- `skip_policy`: FACTORY_ALLOWED_SKIPS, the skips a run may have and still pass.
- `crashing_factoryd`: factoryd with one control handler broken by the test.
- `control_server`: a real control server answered from a thread, for client-side
  tests (factoryctl's output, exit codes).
- `sandbox`: whether bubblewrap can sandbox here (probed without our code), the mode
  terminal tests run in, and processes found by a marker in their command line.
- `zygote`: waiting for the zygote's spare child.

Beside the tests, not in here: `tests/harness.py` (a real factoryd), `tests/waiting.py`
(deadline-bounded waits) and `tests/children.py` (child behaviours, run by factoryd as
the Python target "tests.children:NAME"). Fixtures live in `tests/conftest.py`.
"""
