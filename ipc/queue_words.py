"""Words of the merge queue's replies that its callers act on (the queue and the loop's
lander are separate process kinds: neither imports the other, both import this).

GOLDEN_RED_NOTE is said, in parentheses, after a `tests` rejection's detail while golden
is red: the patch failed on golden's own red test, which says nothing of the patch, so
the loop's lander waits for golden to be green and proposes again.
"""

from __future__ import annotations

GOLDEN_RED_NOTE = "golden is red: only a patch that turns it green lands"
