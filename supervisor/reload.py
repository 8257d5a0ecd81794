"""Config reload as a pure diff of two trees (declaring a tree has no side effects).

`plan_reload(old, new)` says, per supervisor, which children go, which are replaced
(their spec changed: stopped and started again with the new one), which are new,
and which nested supervisors to diff in turn. Unchanged children keep running
untouched; a simple_one_for_one's running dynamic children keep their old spec (only
new ones get the new template), as in OTP.
"""

from __future__ import annotations

from dataclasses import dataclass

from supervisor.spec import ChildSpec, SupervisorSpec


@dataclass(frozen=True)
class ReloadPlan:
    supervisor: str
    flags_changed: bool = False
    removed: tuple[str, ...] = ()  # in reverse start order, the order to stop them
    replaced: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    nested: tuple[ReloadPlan, ...] = ()
    template_changed: bool = False

    def is_empty(self) -> bool:
        return not (
            self.flags_changed or self.removed or self.replaced or self.added
            or self.template_changed or any(not p.is_empty() for p in self.nested)
        )  # fmt: skip

    def summary(self) -> dict[str, object]:
        """What changed, as data (for the reload reply and the log)."""
        out: dict[str, object] = {}
        for key in ("removed", "replaced", "added"):
            if ids := getattr(self, key):
                out[key] = list(ids)
        if self.flags_changed:
            out["flags_changed"] = True
        if self.template_changed:
            out["template_changed"] = True
        nested = {p.supervisor: p.summary() for p in self.nested if not p.is_empty()}
        if nested:
            out["nested"] = nested
        return out


def _same_kind(a: ChildSpec | SupervisorSpec, b: ChildSpec | SupervisorSpec) -> bool:
    return isinstance(a, SupervisorSpec) == isinstance(b, SupervisorSpec)


def plan_reload(old: SupervisorSpec, new: SupervisorSpec) -> ReloadPlan:
    """Diff two versions of one supervisor (same id); recursive over nested ones."""
    if new.children and old.children and old.flags.strategy.value == "simple_one_for_one":
        return ReloadPlan(
            supervisor=new.id,
            flags_changed=old.flags != new.flags,
            template_changed=old.children[0] != new.children[0],
        )
    old_by_id = {c.id: c for c in old.children}
    new_ids = {c.id for c in new.children}
    removed = tuple(c.id for c in reversed(old.children) if c.id not in new_ids)
    replaced: list[str] = []
    added: list[str] = []
    nested: list[ReloadPlan] = []
    for child in new.children:
        before = old_by_id.get(child.id)
        if before is None:
            added.append(child.id)
        elif not _same_kind(before, child):
            replaced.append(child.id)
        elif isinstance(child, SupervisorSpec) and isinstance(before, SupervisorSpec):
            if before.flags.strategy != child.flags.strategy and (
                "simple_one_for_one" in (before.flags.strategy.value, child.flags.strategy.value)
            ):
                replaced.append(child.id)  # static <-> dynamic children: start afresh
            else:
                nested.append(plan_reload(before, child))
        elif before != child:
            replaced.append(child.id)
    return ReloadPlan(
        supervisor=new.id,
        flags_changed=old.flags != new.flags,
        removed=removed,
        replaced=tuple(replaced),
        added=tuple(added),
        nested=tuple(nested),
    )
