"""Which changed paths are tests or test harness (what an implementer's diff may not
touch): procs.testfiles, the rules the agent's role locks and the gauntlet use too."""

from procs.testfiles import HARNESS_FILES, TEST_DIRS, is_harness_path, is_test_path, protected

__all__ = ["HARNESS_FILES", "TEST_DIRS", "is_harness_path", "is_test_path", "protected"]
