"""The synapse: a red golden is bisected to its culprit, then a swarm of mutators races to
fix it; the first fix to land wins and the rest of the swarm is stopped (seed fs-300..304).

Run by factoryd (target = "procs.synapse.service:main", after the bus, the golden master
and the merge queue). On TestFailure(file, error, context_hash) from the heartbeat, a
generation starts (one per red commit at a time):
  1. Bisection. The suspects are golden's first-parent commits after the last commit
     known green (golden's state at start, then each TestPassing) up to the red one, at
     most --max-suspects. k = --bisect-workers workspaces test k commits of the span at
     once (the suite in the sandbox, with --suite-timeout-s): ceil(log_{k+1} n) rounds
     for n suspects, about log2(n)/log2(k+1). A bisection that cannot run (no
     workspace, no sandbox) is reported and the swarm runs without a culprit.
  2. The swarm. min(--swarm-size, the ledger's free mutator slots, free RAM above the
     governor's floor / --mutator-ram-mb) mutators start as dynamic children of
     factoryd's --mutators supervisor (simple_one_for_one, restart temporary, target
     procs.synapse.mutator:main) with `--generation FILE --variant I`. What each does
     is in procs/synapse/mutator.py; all of a generation's fixes go to the merge queue
     in one group (`synapse-<generation>`): the first to land wins, the queue rejects
     the rest `stale`.
  3. The end (fs-304). Evolution (golden moved to another commit) or PatchAccepted of a
     patch of the generation's group stops every mutator of the generation through
     factoryd: `kill` (SIGTERM to every mutator's process group at once, no wait), then
     `stop` of each (waits for the exit, SIGKILL after its shutdown time); as each dies,
     the kernel gives its mutator slot back and the workspace manager reaps its
     workspace (it is the owner). A TestFailure whose commit is no longer golden HEAD
     starts nothing (stale).
     A swarm whose mutators all ended by themselves is done (--reconcile-s).
  4. Again, by golden's state (procs/synapse/again.py, each --reconcile-s): a red verdict
     on golden HEAD with no live generation gets one, whatever the signals did (a
     TestFailure lost while the bus or the synapse restarted, a generation that failed
     or got no mutator, a swarm whose fixes were all lost): at most 3 in a row per red
     commit, then one each --retry-red-s after the last started.
Its memory is SQLite (<state>/synapse/synapse.sqlite3, procs/synapse/store.py),
written on every change of a generation, so a synapse restarted mid-episode (SIGKILL
included) takes each live generation up again and never starts a second one for the
same red while one is live: it adopts the mutators still running (by the --generation
in their start line, written or not), stops them if golden moved meanwhile or the
generation was stopping, bisects again if it was bisecting (or had started no mutator),
and stops a mutator of a generation that is done.

Control (<runtime_dir>/synapse.sock):
    status {}                                -> {known_good, counts, live, generations
                                                 (newest first), settings}
    react  {context_hash, file?, error?}     -> the generation (as on TestFailure)
    stop   {generation}                      -> the generation, stopping
A generation: {id, group, state (bisecting|swarming|stopping|done), file, error,
context_hash, suspects, culprit, bisect {rounds, runs, workers, ms, error}, size,
children (factoryd child ids), ended (why), stop_ms (the ending signal to the last
mutator stopped), resumed (restarts that took it up)}. The store keeps every live
generation and the newest 20 others; the generation files stay in
<state>/synapse/generations.

Modules: again (when a red gets a generation, pure), bisect (the plan, pure), culprit
(the plan in k workspaces), prompt (fs-303's request and the strict diff it takes,
pure), generation (the mutators' input file and the swarm's size, pure), git, trial
(one sandboxed suite run), workspace, peers (factoryd, golden, the merge queue, the
ledger), records, store, service, mutator.
"""
