"""The wire: signal types, the ZeroMQ bus, the control protocol, the shared-memory ledger.

`ipc` knows nothing of services: it never imports `supervisor` or `procs`.
"""
