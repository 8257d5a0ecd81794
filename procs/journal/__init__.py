"""The signal journal process: every bus signal into SQLite (`procs.journal.service:main`)."""
