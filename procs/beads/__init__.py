"""The beads service: the only reader and writer of the beads store (DESIGN.md "Beads").

- `ready`: the ready rules of `bd ready` and the dispatch order (pure).
"""
