"""The one-command demo of the whole factory: `python3 -m procs.demo` (service.py)."""
