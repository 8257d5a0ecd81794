"""Which paths are tests or test harness: procs.testfiles, the rules the agent's role
locks and the loop use too."""

from procs.testfiles import (
    HARNESS_FILES,
    MACHINERY_MODULES,
    TEST_DIRS,
    is_harness_path,
    is_protected,
    is_test_module,
    is_test_path,
    shadows_machinery,
)

__all__ = [
    "HARNESS_FILES",
    "MACHINERY_MODULES",
    "TEST_DIRS",
    "is_harness_path",
    "is_protected",
    "is_test_module",
    "is_test_path",
    "shadows_machinery",
]
