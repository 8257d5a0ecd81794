"""The golden master: the only writer of the golden repository's branch (fs-040..043, fs-231).

    python3 -m procs.golden.service --repo GOLDEN [--branch main] [--upstream origin]
        [--push] [--config loop.toml] [--test-command 'python3 -m pytest -q']
        [--suite-timeout-s 600]
        [--min-free-ram-mb 0] [--min-free-disk-mb 0] [--min-gpus 0] [--no-bus]
        [--ramdisk [--ramdisk-timeout-s 600]]

Run by factoryd (target = "procs.golden.service:main", ready = "notify"). Before READY=1
it checks that GOLDEN exists, is a git repository and has BRANCH checked out (or, bare,
has it), that free RAM, free disk and GPUs meet the minimums, and it runs the suite once
at HEAD in the sandbox (procs.sandbox, with a timeout; a bare golden's in a temporary
worktree) and records red or green: a red golden still starts (the merge queue then
lands only a patch that turns it green); a missing repository, a failed check or a
suite that cannot run is a start failure that says what is wrong. State (every move,
every suite verdict) lives in <state_dir>/golden.sqlite3.

The suite is loop.toml's [loop] test_command and suite_timeout_s with --config (one
place for the project's test command); --test-command and --suite-timeout-s override it.

With --ramdisk, GOLDEN is a seed: before anything else the golden master asks the
workspace manager (which must run first, normally with --ramdisk) to mount its RAM disk
and copy GOLDEN into it as a btrfs subvolume, once (a restart finds it there), and works
on that copy from then on (procs/golden/ramdisk.py); `get_hash` then also answers
`workspace_source`, the copy, where loops make their workspaces (snapshots). What lands
lives in RAM: give --upstream and --push to keep it; with --upstream the copy also
catches up with upstream's branch (a fast-forward) before its suite runs, so what
landed before a reboot comes back.

Control (<runtime_dir>/golden.sock), the API other services use:
    get_hash   {}                               -> {hash, branch, repo, state,
                                                    workspace_source (--ramdisk)}
    advance    {to, expected_head, source?, green, patch_id?, output?, reason?}
                                                -> {hash, previous}
               compare-and-swap: HEAD moves to `to` only if it is still `expected_head`
               and `to` descends from it (a fast-forward); `source` is a repository to
               fetch `to` from first. `green` must be true: only a tree tested green
               lands (the merge queue tests exactly `to`). Errors: `stale_head` (HEAD is
               not expected_head: the message names both), `not_descendant`,
               `not_tested`, `git_error`.
    refresh    {}                               -> {hash, previous, moved, fetched, pushed}
               fetch BRANCH from --upstream (fast-forward only) and, with --push, push
               landed commits there; a move re-runs the suite (in the background).
               Errors: `diverged` (neither descends from the other), `git_error`.
    record_run {hash, green, output?, source?}  -> {state, since}
               a suite verdict on `hash` from elsewhere (the heartbeat); ignored (with
               `ignored: true`) unless `hash` is HEAD.
    run_suite  {}                               -> {hash, green, output, duration_ms}
    status     {}                               -> {hash, branch, repo, state, since,
                                                    last_failure, moves, upstream, push,
                                                    checks, suite, ramdisk}
`state` is "green", "red" or "unknown" (HEAD moved and has no verdict yet); `since` is
when it became so (epoch s); `last_failure` {hash, at, output} the last red verdict.

Signals: GoldenMasterUpdated(hash, previous_hash) and Evolution(hash, reason) on every
move (advance or refresh).
"""
