"""The resource governor process: owns the ledger (`procs.governor.service:main`)."""
