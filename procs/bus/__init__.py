"""The signal bus broker process: `procs.bus.service:main` (sockets in ipc.bus.broker)."""
