"""A config reload carried out on the running tree; the diff itself is pure (reload.py).

`reload_config` re-reads the file, refuses what a reload cannot do, plans the diff and
applies it; `apply_plan` applies one supervisor's part of the plan through the node's
child-spec operations (`add_child`, `remove_child`, `replace_child`, `restart_child`),
kept in this module so that tree.py stays small.
"""

from __future__ import annotations

import traceback
from dataclasses import replace
from typing import Any

from supervisor import config as config_mod
from supervisor.policy import ChildState
from supervisor.reload import ReloadPlan, plan_reload
from supervisor.spec import ChildSpec, Strategy, SupervisorSpec
from supervisor.tree import StartFailed, SupervisorNode


class ReloadRefused(Exception):
    """A reload that changed nothing: the new config could not be loaded, checked or
    diffed. `str()` says why (a ConfigError reads `FILE: KEY: problem`)."""


def reload_config(
    cfg: config_mod.DaemonConfig, root: SupervisorNode
) -> tuple[config_mod.DaemonConfig, dict[str, Any]]:
    """Re-read `cfg.source` and apply the difference to the tree under `root`.

    Returns the new config and the reply (changes, failures, notes). Any failure to
    load, check or diff the new config changes nothing: it is reported
    ("reload_refused") and ReloadRefused is raised. Blocks while replaced children stop
    (each bounded by its shutdown time) and new ones start.
    """
    try:
        new = config_mod.load(cfg.source)
        _check_root_kind(cfg.tree, new)
        plan = plan_reload(cfg.tree, new.tree)
    except config_mod.ConfigError as exc:
        root.host.report("reload_refused", reason=str(exc))
        raise ReloadRefused(str(exc)) from exc
    except Exception as exc:  # whatever it was, a reload must never take factoryd down
        reason = f"{cfg.source}: cannot load or diff the config: {exc!r}"
        root.host.report("reload_refused", reason=reason, traceback=traceback.format_exc())
        raise ReloadRefused(reason) from exc
    notes = []
    if (new.preload, new.runtime_dir, new.state_dir) != (
        cfg.preload,
        cfg.runtime_dir,
        cfg.state_dir,
    ):
        notes.append("[factory] settings change at the next start of factoryd")
    failures = apply_plan(root, plan, new.tree)
    result = {"changes": plan.summary(), "failures": failures, "notes": notes}
    root.host.report("reloaded", **result)
    return new, result


def _check_root_kind(old: SupervisorSpec, new: config_mod.DaemonConfig) -> None:
    """A nested supervisor that turns dynamic or static is replaced; the root cannot be."""
    dynamic = Strategy.SIMPLE_ONE_FOR_ONE
    if (old.flags.strategy is dynamic) != (new.tree.flags.strategy is dynamic):
        raise config_mod.ConfigError(
            new.source,
            "supervisor.strategy",
            f"the root cannot change from {old.flags.strategy} to {new.tree.flags.strategy} "
            "(to or from simple_one_for_one) by a reload: restart factoryd",
        )


def apply_plan(node: SupervisorNode, plan: ReloadPlan, new: SupervisorSpec) -> list[str]:
    """Carry out a reload plan on `node`'s subtree; returns the children that failed to
    start (they are left stopped, and reported: a reload never stops the daemon)."""
    failures: list[str] = []
    node.spec = new
    if node.template is not None:
        template = new.children[0]
        assert isinstance(template, ChildSpec)
        node.template = template
        node.state = replace(node.state, flags=new.flags)
        return failures
    for cid in plan.removed:  # one already gone (a temporary that ended) is no error
        node.remove_child(cid)
    by_id = {c.id: c for c in new.children}
    for cid in plan.replaced:
        node.replace_child(by_id[cid])
    for sub_plan in plan.nested:
        if sub_plan.supervisor not in node.subs:  # a temporary one that ended
            continue
        failures += apply_plan(
            node.subs[sub_plan.supervisor],
            sub_plan,
            by_id[sub_plan.supervisor],  # type: ignore[arg-type]
        )
    for cid in plan.added:
        node.add_child(by_id[cid])
    running = {c.id: c.running for c in node.state.children}
    node.state = replace(
        node.state,
        flags=new.flags,
        children=tuple(
            ChildState(c.id, c.restart, c.significant, running.get(c.id, False))
            for c in new.children
            if c.id in node.workers or c.id in node.subs
        ),
    )
    for child in new.children:
        if child.id in node.workers:
            node.workers[child.id].spec = child  # type: ignore[assignment]
        if node.running and (child.id in plan.added or child.id in plan.replaced):
            try:
                node.restart_child(child.id)
            except StartFailed as exc:
                failures.append(f"{child.id}: {exc.reason}")
    return failures
