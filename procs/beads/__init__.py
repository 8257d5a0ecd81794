"""The beads service: the only reader and writer of the beads store (DESIGN.md "Beads").

- `ready`: the ready rules of `bd ready` (beads 1.0.5) and the dispatch order. Pure.
- `jsonl`: a JSONL export read line by line (malformed lines kept) and changed one bead
  at a time (flock, temp file, fsync, rename; only the changed fields rewritten).
- `edits`: what a claim, close, failure or release changes in one record. Pure.
- `store`: the Backend interface and the JSONL backend; `bd`: the bd CLI backend.
- `claims`: claims in SQLite, with generations; `keeper`: claims kept in step with the
  store (never two live loops on one bead).
- `announce`: which beads to announce (BeadAssigned); `watch`: inotify on the store.
- `cli` (`python -m procs.beads ready ...`): the read-only CLI; `service`: the service.
"""
