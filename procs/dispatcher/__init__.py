"""The dispatcher: ready beads become loop children, one live loop per bead, never more
loops than free loop slots (DESIGN.md "The factory"; seed fs-190..193).

- `policy`: what to do about a claimed bead, which ready beads to start, backoff. Pure.
- `records`: the dispatcher's own SQLite records (dispatches, each bead's backoff).
- `peers`: the beads service, factoryd, loops.sqlite3 and the ledger, asked with bounds.
- `landing`: whether a loop's commit is on golden (a bead is closed only then).
- `leftovers`: the workspace of a loop that died: destroyed, or kept on request.
- `rounds`: one round (settle every live dispatch, then start loops); `service`: the
  service (signals, the reconcile timer, pidfds of loop processes, the control socket).
"""
