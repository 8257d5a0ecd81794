"""The merge queue (fs-210..214): nothing lands on golden that was not tested exactly so.

    python3 -m procs.merge_queue.service [--k 4] [--config loop.toml]
        [--test-command 'python3 -m pytest -q'] [--suite-timeout-s 600] [--golden golden]
        [--reconcile-s 5] [--no-bus]

Run by factoryd (target = "procs.merge_queue.service:main") after the golden master,
whose control socket it uses for the golden repository, its HEAD and every advance.
The suite is loop.toml's [loop] test_command and suite_timeout_s (--config: the one
place the project's test command is set, as the loops and the golden master read it);
--test-command and --suite-timeout-s override it (procs/suite_config).

A patch is commits on top of some golden commit, fetched from a repository: a loop's
workspace (`source` = its path, `ref` = its tested HEAD) or a git bundle file. Patches
wait in SQLite (<state_dir>/merge_queue.sqlite3) ordered by priority, then age; the first
K are tested at once, speculatively as Zuul's dependent pipelines do: patch i on golden
HEAD plus patches 0..i-1 (a fast-forward where it sits on that base already, else one
squashed commit from a three-way merge), each in one of K reused git worktrees, the suite
in the sandbox with a timeout. Only the patch at the head of the queue is decided:
- its build conflicts with HEAD: rejected (`conflict`); its loop rebases and proposes again;
- its suite failed: rejected (`tests`), the run's output kept;
- it passed: golden advances by compare-and-swap (HEAD must still be the tree it was built
  on) to exactly the tested commit, and it is accepted with that hash.
A patch behind that fails (or conflicts) is taken out of the chain at once: the ones
behind it are rebuilt without it and retested; it is decided when it reaches the head.
A golden HEAD moved by someone else (a refresh) invalidates every build; they are rebuilt.
While golden is red, only a patch whose tested tree is green lands: i.e. one that turns
golden green. So every golden commit the queue makes passed the suite.

Control (<runtime_dir>/merge_queue.sock):
    propose {source, ref?, base?, priority?, key?, bead_id?, title?, group?}
                          -> entry {patch_id, state, ...}; a `key` (the loop id) with a
                             live patch of the same tip gets that patch; another tip
                             supersedes it (the old one: rejected `stale`). A `group`
                             (a swarm's fixes for one failure): the first to land wins,
                             the others are rejected `stale` and their runs cancelled
    wait    {patch_id, timeout_s}  -> entry once decided, or as it is at the timeout
    cancel  {patch_id}    -> entry (rejected `stale`, "withdrawn") unless already decided;
                             while its advance is in flight, the answer decides it
    landed  {patch_id} or {key}
                          -> {patch_id, landed_hash, golden_head, landed, state}: `landed`
                             only when landed_hash is an ancestor of golden HEAD, checked
                             now (close a bead only then); by `key`: the key's (the loop
                             id's) latest patch
    show    {patch_id}    -> entry with the full test output
    queue   {}            -> {golden, k, entries (in order, with their speculative build),
                              speculative_heads, recent (last decisions), counts}
    status  {}            -> counts and settings
An entry: {patch_id, state (queued|accepted|rejected), reason (conflict|tests|gauntlet|
stale), detail, priority, key, bead_id, source, tip, base, landed_hash, proposed_at,
decided_at, group, output_tail}.

With --cheat-detection, a green suite is followed by the gauntlet's static cheat
detection on the change (AST and diff, milliseconds); a finding rejects (`gauntlet`).

Signals: PatchProposed on a new patch, PatchAccepted(hash) / PatchRejected(reason) on a
decision (the data is here; a signal says "look").
"""
