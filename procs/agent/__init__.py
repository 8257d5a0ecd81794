"""ACP client: drive a coding agent over the Agent Client Protocol under a role's rules.

A thin adapter over the `agent-client-protocol` package (module `acp`): session.AcpAgent
(process, initialize, session/new, prompt, cancel, close), client.FactoryClient (the
handlers the agent calls), sessions (each session's role policy, record and terminals),
result (TurnResult and its outcome), serve (a kept agent serving turns on stdio), roles
(what each role may write), permissions (the decision per tool call), files (fs/*),
terminals (terminal/*), transport (stdio that reports bad input), record (what a turn
produced, bounded), opencode (config/env for opencode-ai), profiles (each agent kind
as data: profiles.toml), modes (the session mode every turn is pinned to).
This package is named `agent`, not `acp`, so that it never shadows the library.
"""

from procs.agent.client import FactoryClient
from procs.agent.permissions import Decision, decide
from procs.agent.record import RecordLimits, TurnRecord
from procs.agent.result import TurnResult
from procs.agent.roles import PathRefused, Role, RolePolicy
from procs.agent.session import (
    AcpAgent,
    AgentDied,
    AgentError,
    AgentProtocolError,
    AgentTimeout,
    UnsafeMode,
)

__all__ = [
    "AcpAgent",
    "AgentDied",
    "AgentError",
    "AgentProtocolError",
    "AgentTimeout",
    "Decision",
    "FactoryClient",
    "PathRefused",
    "RecordLimits",
    "Role",
    "RolePolicy",
    "TurnRecord",
    "TurnResult",
    "UnsafeMode",
    "decide",
]
