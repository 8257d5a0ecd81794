"""Config reload: the diff is pure; applied live (by factoryctl or SIGHUP), untouched
children keep running; a root turned dynamic or static is refused whole, and a finished
temporary child is no obstacle."""

from __future__ import annotations

import signal
import textwrap
from pathlib import Path

import pytest

from supervisor.config import parse
from supervisor.reload import plan_reload
from supervisor.spec import SupervisorSpec
from tests.harness import Journal, target
from tests.waiting import pid_alive, wait_until


def _tree(text: str) -> SupervisorSpec:
    import tomllib

    return parse(tomllib.loads(textwrap.dedent(text))).tree


OLD = """
[supervisor]
[[supervisor.children]]
id = "keep"
command = ["sleep", "1"]
[[supervisor.children]]
id = "drop"
command = ["sleep", "2"]
[[supervisor.children]]
id = "change"
command = ["sleep", "3"]
[[supervisor.children]]
id = "inner"
strategy = "one_for_all"
[[supervisor.children.children]]
id = "deep"
command = ["sleep", "4"]
"""

NEW = """
[supervisor]
intensity = 9
[[supervisor.children]]
id = "keep"
command = ["sleep", "1"]
[[supervisor.children]]
id = "change"
command = ["sleep", "33"]
[[supervisor.children]]
id = "inner"
strategy = "one_for_all"
[[supervisor.children.children]]
id = "deep"
command = ["sleep", "4"]
[[supervisor.children.children]]
id = "deeper"
command = ["sleep", "5"]
[[supervisor.children]]
id = "fresh"
command = ["sleep", "6"]
"""


def test_plan_names_removed_replaced_added_and_nested_changes() -> None:
    plan = plan_reload(_tree(OLD), _tree(NEW))
    assert plan.removed == ("drop",)
    assert plan.replaced == ("change",)
    assert plan.added == ("fresh",)
    assert plan.flags_changed
    (inner,) = plan.nested
    assert inner.supervisor == "inner" and inner.added == ("deeper",)
    assert not inner.removed and not inner.replaced


def test_identical_configs_plan_nothing() -> None:
    assert plan_reload(_tree(OLD), _tree(OLD)).is_empty()


def test_reload_applies_the_difference_live(factoryd, journal, tmp_path) -> None:
    j = str(journal.path)

    def config(extra: str, serve_args: str = "") -> str:
        return f"""
            [supervisor]
            intensity = 5
            period = 30
            [[supervisor.children]]
            id = "keep"
            {target("serve", j)}
            [[supervisor.children]]
            id = "change"
            {target("serve", j, *serve_args.split())}
            {extra}
        """

    drop = f"""
            [[supervisor.children]]
            id = "drop"
            {target("serve", j)}
    """
    d = factoryd(config(drop)).start()
    keep, change, dropped = d.pid("keep"), d.pid("change"), d.pid("drop")
    fresh = f"""
            [[supervisor.children]]
            id = "fresh"
            {target("serve", j)}
    """
    (tmp_path / "factoryd.toml").write_text(textwrap.dedent(config(fresh, "changed")))
    code, out, _ = d.ctl("reload")
    assert code == 0, out
    assert "removed drop" in out and "replaced change" in out and "added fresh" in out
    assert d.pid("keep") == keep  # untouched child: same process
    assert d.pid("change") not in (None, change)
    assert not pid_alive(dropped) and not pid_alive(change)
    assert d.node("fresh")["state"] == "running"
    assert "drop" not in [c["id"] for c in d.status()["tree"]["children"]]

    # SIGHUP does the same; a bad config changes nothing and is reported
    (tmp_path / "factoryd.toml").write_text("[supervisor]\nstrategy = 'bogus'\n")
    code, _, err = d.ctl("reload")
    assert code != 0 and "supervisor.strategy" in err
    d.proc.send_signal(signal.SIGHUP)
    wait_until(
        lambda: '"reload_refused"' in d.log().split('"reloaded"')[-1],
        what="the SIGHUP reload to be refused",
    )
    assert d.pid("keep") == keep and d.node("fresh")["state"] == "running"


def test_sighup_reloads_the_config(factoryd, journal: Journal, tmp_path: Path) -> None:
    """README and `factoryctl reload --help` say SIGHUP reloads; it only logged
    "reload_unsupported"."""
    one = f"""
        [supervisor]
        [[supervisor.children]]
        id = "a"
        {target("serve", str(journal.path))}
    """
    d = factoryd(one).start()
    two = (
        one
        + f"""
        [[supervisor.children]]
        id = "b"
        {target("serve", str(journal.path))}
    """
    )
    (tmp_path / "factoryd.toml").write_text(textwrap.dedent(two))
    assert d.proc is not None
    d.proc.send_signal(signal.SIGHUP)
    journal.wait_count("start", "b", 1)
    assert d.node("b")["state"] == "running"
    assert '"event":"reloaded"' in d.log()


@pytest.mark.parametrize(
    ("before", "after"),
    [("one_for_one", "simple_one_for_one"), ("simple_one_for_one", "one_for_one")],
)
def test_reload_refuses_to_turn_the_root_dynamic_or_static(
    factoryd, journal: Journal, tmp_path: Path, before: str, after: str
) -> None:
    """A nested supervisor changing to or from simple_one_for_one is replaced; the root
    cannot be, and the reload used to half-apply (static children under a dynamic
    strategy, or the reverse) and say "reloaded"."""

    def config(strategy: str) -> str:
        return f"""
            [supervisor]
            strategy = "{strategy}"
            [[supervisor.children]]
            id = "w"
            {target("serve", str(journal.path))}
        """

    def shape() -> tuple[str, list[tuple[str, int | None, str]]]:
        tree = d.status()["tree"]
        return tree["strategy"], [(c["id"], c["pid"], c["state"]) for c in tree["children"]]

    d = factoryd(config(before)).start()
    before_reload = shape()
    (tmp_path / "factoryd.toml").write_text(textwrap.dedent(config(after)))
    code, _out, err = d.ctl("reload")
    assert code != 0
    assert "supervisor.strategy" in err and "simple_one_for_one" in err
    assert shape() == before_reload


@pytest.mark.parametrize(("kind", "keep_it"), [("worker", True), ("worker", False), ("sup", True)])
def test_reload_after_a_temporary_child_finished(
    factoryd, journal: Journal, tmp_path: Path, kind: str, keep_it: bool
) -> None:
    """A temporary child that ended is forgotten (OTP). A reload then looked it up in
    the supervisor's state (KeyError when the new config dropped it) or put it back
    without its record (KeyError in the next status): either way factoryd died."""
    j = str(journal.path)
    once = f"""
        [[supervisor.children]]
        id = "once"
        {target("exit_with", j, "0")}
        restart = "temporary"
    """
    if kind == "sup":  # a temporary supervisor that ends once its significant child did
        once = f"""
        [[supervisor.children]]
        id = "once"
        restart = "temporary"
        auto_shutdown = "any_significant"
        [[supervisor.children.children]]
        id = "step"
        {target("exit_with", j, "0")}
        restart = "temporary"
        significant = true
        """
    base = f"""
        [supervisor]
        [[supervisor.children]]
        id = "svc"
        {target("serve", j)}
    """
    d = factoryd(base + once).start()
    wait_until(
        lambda: [c["id"] for c in d.status()["tree"]["children"]] == ["svc"],
        what="the finished temporary child to be forgotten",
    )
    (tmp_path / "factoryd.toml").write_text(textwrap.dedent(base + (once if keep_it else "")))
    code, _out, err = d.ctl("reload")
    assert code == 0, err
    assert [c["id"] for c in d.status()["tree"]["children"]] == ["svc"]
    assert d.proc is not None and d.proc.poll() is None
