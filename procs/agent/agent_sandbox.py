"""The agent process itself under the sandbox (procs.sandbox, bubblewrap), for one role.

Real agents write files themselves once a permission is granted, and an agent in a mode
that approves by itself (or a bug in one) never asks: so the process that holds the
model's tools runs where its role's limits are the kernel's. Its command is prefixed so
that:
- the workspace is read-write and the rest of the filesystem read-only; /tmp is private;
- the role's locked paths (procs.agent.locked_paths: for the implementer, tests/ and the
  harness files) are bound read-only over the workspace, so a write there fails with
  EROFS whoever asks for it; a path that does not exist yet cannot be bound (a new test
  file outside a test directory is caught by the loop's diff check instead);
- the agent's private HOME (its config, its session store) is bound read-write;
- it dies with its parent, in the caller's process group, with an address-space limit;
- its network is its own (bwrap --unshare-net: loopback only) and the one thing it can
  reach is its model endpoint: the relay (procs.agent.net_relay) listens inside on the
  address the agent's config names (the gateway's 127.0.0.1:PORT), starts the agent as
  its child and hands each connection to a ModelBridge (procs.agent.model_bridge) that
  this process holds, which relays it to that port on the host. Nothing else of the
  host's (its other 127.0.0.1 ports, its other addresses, the internet) is reachable;
- /run and the factory's runtime dir (ipc.paths: factoryd's and the services' control
  sockets, the gateway's token socket) are empty tmpfs: a network namespace does not
  cover unix sockets in the filesystem, which connect() reaches even read-only. Other
  unix sockets elsewhere on the host's filesystem are not hidden, and status says so.

Where that cannot be done the agent shares the host's network, and `status()` says so
and why: sandbox "none"; no model URL given (the agent's own config may name any host);
a model URL whose host is not loopback (only a loopback endpoint can be relayed); a
privileged port (the sandbox has no capabilities to listen on it). A usable bwrap can
always unshare the network: procs.sandbox's probe checks it. The locks are per role, so
a sandboxed agent serves one role: a kept agent is one process per role in a loop.
"""

from __future__ import annotations

import ipaddress
import math
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from procs.agent import net_relay
from procs.agent.locked_paths import locked_paths
from procs.agent.model_bridge import SANDBOX_DIR, SOCKET_NAME, ModelBridge
from procs.agent.roles import RolePolicy
from procs.sandbox import SandboxPolicy, command_prefix

# Node reserves large address ranges (V8's heap cage, WebAssembly): RLIMIT_AS counts them.
AGENT_MEMORY_MB = 64 * 1024
SHARED = "network: the agent shares the host's network namespace (it reaches all the host can): "
DEFAULT_PORTS = {"http": 80, "https": 443}
UNIX_SOCKETS = (
    "unix sockets: /run and the factory's runtime dir are hidden, but a unix socket "
    "elsewhere on the host's filesystem (read-only; connect() still works) is reachable"
)


@dataclass(frozen=True)
class NetworkPlan:
    """The sandbox's network: `endpoint` (host, port) the one address relayed out of an
    isolated namespace, or None when the host's network is shared; `status` says which
    (and, shared, why)."""

    endpoint: tuple[str, int] | None
    status: str

    @property
    def isolated(self) -> bool:
        return self.endpoint is not None

    def listen_addresses(self) -> list[str]:
        """The relay's --listen addresses inside: the URL's own host; for "localhost"
        both loopbacks (clients may resolve it to either) where IPv6 exists."""
        assert self.endpoint is not None
        host, port = self.endpoint
        if host == "localhost":
            v6 = [f"[::1]:{port}"] if os.path.exists("/proc/net/if_inet6") else []
            return [f"127.0.0.1:{port}", *v6]
        return [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]

    def target_host(self) -> str:
        """The host-side address the bridge connects to."""
        assert self.endpoint is not None
        return "127.0.0.1" if self.endpoint[0] == "localhost" else self.endpoint[0]


def network_plan(model_url: str | None, mode: str) -> NetworkPlan:
    """Isolated with `model_url`'s endpoint relayed where it can be, else shared and why."""
    if mode == "none":
        return NetworkPlan(None, SHARED + 'sandbox = "none": nothing is isolated')
    if model_url is None:
        return NetworkPlan(None, SHARED + "no model URL was given (the agent's own config "
                           "may name any host), so there is no one endpoint to relay")  # fmt: skip
    try:
        url = urlsplit(model_url)
        host, port = url.hostname, url.port or DEFAULT_PORTS.get(url.scheme)
    except ValueError as exc:
        return NetworkPlan(None, SHARED + f"the model URL {model_url!r} is malformed ({exc})")
    if host is None or port is None:
        return NetworkPlan(None, SHARED + f"the model URL {model_url!r} names no host and port")
    if not _is_loopback(host):
        return NetworkPlan(None, SHARED + f"the model URL's host {host!r} is not loopback; "
                           "only a loopback endpoint can be relayed")  # fmt: skip
    if port < 1024:
        return NetworkPlan(None, SHARED + f"the model URL's port {port} is privileged; the "
                           "sandbox has no capability to listen on it")  # fmt: skip
    return NetworkPlan(
        (host, port),
        f"network: isolated (a namespace of its own, loopback only); the model endpoint "
        f"{host}:{port} is relayed to the host's, nothing else is reachable",
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def sandboxed_command(
    command: Sequence[str],
    *,
    workspace: Path,
    policy: RolePolicy,
    home: Path | None = None,
    mode: str = "bwrap",
    memory_mb: int = AGENT_MEMORY_MB,
    network: NetworkPlan | None = None,
    bridge: ModelBridge | None = None,
) -> list[str]:
    """`command` prefixed to run under bwrap with `policy`'s role locks (see the module
    docstring). `home`: a directory bound read-write besides the workspace (the agent's
    private HOME). `network` isolated (with its open `bridge`): the command runs behind
    the relay in a namespace of its own; else (the default) it shares the host's. Mode
    "none" gives only the memory limit. Raises SandboxUnavailable (bwrap or prlimit
    cannot run here), TooManyPaths (the workspace is too large to lock path by path),
    ValueError (a bad workspace or limit, an isolated network without its bridge)."""
    isolated = mode != "none" and network is not None and network.isolated
    if isolated and bridge is None:
        raise ValueError("an isolated network needs its ModelBridge open")
    sandbox = SandboxPolicy(
        workspace=workspace, readonly_paths=locked_paths(policy, workspace),
        timeout_s=math.inf, memory_mb=memory_mb, network=not isolated, mode=mode,
    )  # fmt: skip
    prefix = command_prefix(sandbox)
    if mode == "none":
        return [*prefix, *command]
    # bwrap's own options end at the first "--"; these binds come last, after the
    # private /tmp that would hide them.
    binds: list[str] = []
    if (tool := _tool_root_under_tmp(command[0])) is not None:
        binds += ["--ro-bind", tool, tool]  # the agent's own install, under /tmp
    for path in _files_under_tmp(command[1:], workspace):
        binds += ["--ro-bind", path, path]  # a script the command names (python3 /tmp/x.py)
    if home is not None:
        home_dir = str(home.resolve())
        binds += ["--bind", home_dir, home_dir]
    if isolated:
        assert network is not None and bridge is not None
        relay = str(Path(net_relay.__file__).resolve())
        binds += ["--ro-bind", str(bridge.directory), SANDBOX_DIR, "--ro-bind", relay, relay]
        listen = [arg for address in network.listen_addresses() for arg in ("--listen", address)]
        command = [sys.executable, "-I", relay, *listen,
                   "--unix", f"{SANDBOX_DIR}/{SOCKET_NAME}", "--", *command]  # fmt: skip
    end = prefix.index("--")
    prefix[end:end] = binds
    return [*prefix, *command]


class AgentSandbox:
    """One agent process's sandbox: `argv`, which runs the agent there, and, with an
    isolated network, the ModelBridge that must live as long as the agent (`close()`)."""

    def __init__(
        self, argv: list[str], network: NetworkPlan, bridge: ModelBridge | None, mode: str
    ) -> None:
        self.argv = argv
        self.network = network
        self.bridge = bridge
        self.mode = mode

    @classmethod
    def open(
        cls,
        command: Sequence[str],
        *,
        workspace: Path,
        policy: RolePolicy,
        home: Path | None = None,
        mode: str = "bwrap",
        memory_mb: int = AGENT_MEMORY_MB,
        model_url: str | None = None,
    ) -> AgentSandbox:
        """Plan the network for `model_url` (network_plan), open its bridge where it is
        isolated, and make the argv (sandboxed_command). Raises what sandboxed_command
        does, OSError when the bridge's socket cannot be made; the bridge is closed
        again on any failure."""
        network = network_plan(model_url, mode)
        bridge = None
        if network.isolated:
            assert network.endpoint is not None
            bridge = ModelBridge.open(network.target_host(), network.endpoint[1])
        try:
            argv = sandboxed_command(
                command, workspace=workspace, policy=policy, home=home, mode=mode,
                memory_mb=memory_mb, network=network, bridge=bridge,
            )  # fmt: skip
        except BaseException:
            if bridge is not None:
                bridge.close()
            raise
        return cls(argv, network, bridge, mode)

    def status(self) -> dict[str, Any]:
        """For the ready line: {"network": what it is, "not_isolated": [what is not]}."""
        shared = [] if self.network.isolated else [self.network.status]
        sockets = [UNIX_SOCKETS] if self.mode != "none" else []
        return {"network": self.network.status, "not_isolated": [*shared, *sockets]}

    def close(self) -> None:
        """Close the bridge (once the agent is gone). Idempotent."""
        if self.bridge is not None:
            self.bridge.close()


def _files_under_tmp(args: Sequence[str], workspace: Path) -> list[str]:
    """The operator's command's own files under /tmp (a script it runs: `python3
    /tmp/checkout/agent.py`), which the private /tmp would hide; not the workspace's."""
    found: list[str] = []
    for arg in args:
        if not arg.startswith("/tmp/"):
            continue
        path = Path(arg).resolve()
        if (
            path.is_file()
            and path.is_relative_to("/tmp")
            and not path.is_relative_to(workspace.resolve())
        ):
            found.append(str(path))
    return found


def _tool_root_under_tmp(program: str) -> str | None:
    """Where the agent's program really lives when that is under /tmp (a checkout's
    `.ci/node`): its node_modules when it is an npm package, else its directory."""
    found = shutil.which(program)
    if found is None:
        return None
    real = Path(found).resolve()
    if not real.is_relative_to("/tmp"):
        return None
    for parent in real.parents:
        if parent.name == "node_modules":
            return str(parent)
    return str(real.parent)
