"""The factory loop: one process per bead, auditor -> red -> implementer -> TCR -> verify
(-> architect every N greens) -> ... -> reviewer -> push, resumable after any crash.

service.py:main is the loop process factoryd supervises (a dynamic child of the `loops`
simple_one_for_one supervisor); `python -m procs.loop run ...` (cli.py) runs one bead's
loop in the foreground. Library modules:
    state       FactoryPhase, LoopLimits, FactoryLoopState, HistoryEntry (frozen data)
    events      one dataclass per thing the loop can observe
    transition  transition(state, event) -> state, pure; IllegalTransition
    store       LoopStore: SQLite (WAL, 0600), state + history in one transaction
    git         the git commands TCR needs, each with a timeout, hooks off
    paths       which changed paths are tests or test harness
    suite       run_suite (pytest in the sandbox, junit read back), judge_red, tcr_policy
    tcr         commit (folding a red commit in), revert_non_test_code, reset_to, touched_tests
    prompts     the role prompts: Jinja2 templates in templates/, StrictUndefined
    turns       AgentTurns (one method per role turn), Turn, TurnReply, TurnFailed,
                parse_result (the FACTORY_RESULT line), session_history
    kept_agent  KeptAgentTurns: AgentTurns over one kept agent per loop, a new session
                (under the turn's role policy) per turn; the RAM held while it lives
    agent_service  AgentService: the kept `procs.agent.service --serve` process, bounded
    agent_process  ProcessTurns: a process (and an agent) per turn; the benches' baseline
    lander      Lander; FastForwardLander (compare-and-swap on a local golden branch)
    driver      LoopDriver: one persisted phase at a time, resume from phase_start_commit
    config      RunnerConfig from a TOML [loop] table, checked once
    bead_text   one bead's requirements from a beads JSONL export (read only)
    cli         the one-shot runner: checks every input before any change
    workspace   a loop's workspace from the workspace manager (or a clone), found again
                by every restart
    service     the supervised loop process: slot, workspace, driver, bus, STATUS=
"""

from procs.loop.events import EVENT_TYPES, LoopEvent
from procs.loop.state import FactoryLoopState, FactoryPhase, HistoryEntry, LoopLimits
from procs.loop.transition import EDGES, IllegalTransition, transition

__all__ = [
    "EDGES",
    "EVENT_TYPES",
    "FactoryLoopState",
    "FactoryPhase",
    "HistoryEntry",
    "IllegalTransition",
    "LoopEvent",
    "LoopLimits",
    "transition",
]
