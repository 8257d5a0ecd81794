"""`python -m procs.beads ready --jsonl FILE [--unassigned] --json` (see procs.beads.cli)."""

import sys

from procs.beads.cli import main

sys.exit(main())
