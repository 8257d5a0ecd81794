"""Config reload: the diff is pure; applied live, untouched children keep running."""

from __future__ import annotations

import signal
import textwrap

from supervisor.config import parse
from supervisor.reload import plan_reload
from supervisor.spec import SupervisorSpec
from tests.harness import target
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
