"""python3 -m procs.demo: see procs/demo/service.py."""

import sys

from procs.demo.service import main

sys.exit(main())
