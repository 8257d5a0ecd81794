"""`python -m procs.loop run ...`: the one-shot runner (procs.loop.cli)."""

import sys

from procs.loop.cli import main

if __name__ == "__main__":
    sys.exit(main())
