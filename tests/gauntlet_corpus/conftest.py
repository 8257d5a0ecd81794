"""The corpus project is data for tests/test_gauntlet_corpus.py, not part of our suite:
its feature test fails on purpose (the cheats and honest patches make it pass)."""

collect_ignore = ["project"]
