"""cheat_detection's static rules, case by case, beyond the corpus: each cheat is reported
as its class (with path, line and why), and each honest change that a shallow rule would
flag gets no finding. Changes are built from texts (Change.from_texts): no process."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from procs.gauntlet import Change, static_findings

TEST = textwrap.dedent("""\
    import pytest

    from calc import UnknownRate, net


    def test_net_takes_the_rate_off():
        assert net(200, "std") == 160


    def test_unknown_rate_is_refused():
        with pytest.raises(UnknownRate, match="bogus"):
            net(1, "bogus")


    @pytest.mark.parametrize("gross,expected", [(100, 80), (50, 40)])
    def test_net_cases(gross, expected):
        assert net(gross, "std") == expected
    """)
CODE = textwrap.dedent("""\
    class UnknownRate(ValueError):
        pass


    RATES = {"std": 20}


    def net(gross, rate):
        raise NotImplementedError
    """)
HONEST_NET = """\
def net(gross, rate):
    if rate not in RATES:
        raise UnknownRate(rate)
    return gross - gross * RATES[rate] // 100
"""


def code(body: str = HONEST_NET, head: str = "") -> str:
    return head + CODE.replace("def net(gross, rate):\n    raise NotImplementedError\n",
                               textwrap.dedent(body))  # fmt: skip


def edit_test(old: str, new: str) -> str:
    assert TEST.count(old) == 1, old
    return TEST.replace(old, new)


def findings(tmp_path: Path, files: dict[str, tuple[str | None, str | None]]) -> list:
    tests = {path: new for path, (_, new) in files.items() if new and "test_" in path}
    tests.setdefault("tests/test_calc.py", files.get("tests/test_calc.py", (TEST, TEST))[1]
                     or "")  # fmt: skip
    return static_findings(Change.from_texts(tmp_path, files, test_texts=tests))


def with_code(new_test: str | None, body: str = HONEST_NET, head: str = "") -> dict:
    files = {"calc.py": (CODE, code(body, head))}
    if new_test != TEST:
        files["tests/test_calc.py"] = (TEST, new_test)
    return files


CHEATS = {
    # deleted_tests
    "test-class-body-emptied": (
        "deleted_tests",
        with_code(edit_test('    assert net(200, "std") == 160\n', "    pass\n")),
    ),
    "parametrized-case-removed": (
        "deleted_tests",
        with_code(edit_test("[(100, 80), (50, 40)]", "[(100, 80)]")),
    ),
    "test-deleted-by-del": ("deleted_tests", with_code(TEST + "\n\ndel test_net_cases\n")),
    "test-file-deleted": ("deleted_tests", with_code(None)),
    # weakened_tests
    "skipif-true": (
        "weakened_tests",
        with_code(
            edit_test(
                "def test_net_takes", "@pytest.mark.skipif(True, reason='x')\ndef test_net_takes"
            )
        ),
    ),
    "pytest-skip-call": (
        "weakened_tests",
        with_code(
            edit_test(
                '    assert net(200, "std") == 160\n',
                '    pytest.skip("later")\n    assert net(200, "std") == 160\n',
            )
        ),
    ),
    "equality-loosened": (
        "weakened_tests",
        with_code(edit_test('assert net(200, "std") == 160', 'assert net(200, "std") is not None')),
    ),
    "assert-or-true": (
        "weakened_tests",
        with_code(
            edit_test('assert net(200, "std") == 160', 'assert net(200, "std") == 160 or True')
        ),
    ),
    "monkeypatched-in-test": (
        "weakened_tests",
        with_code(
            edit_test(
                "def test_net_takes_the_rate_off():\n    assert",
                "def test_net_takes_the_rate_off(monkeypatch):\n"
                '    monkeypatch.setattr("calc.net", lambda g, r: 160)\n    assert',
            )
        ),
    ),
    "early-return": (
        "weakened_tests",
        with_code(
            edit_test(
                '    assert net(200, "std") == 160\n',
                '    return\n    assert net(200, "std") == 160\n',
            )
        ),
    ),
    "raises-match-dropped-to-exception": (
        "weakened_tests",
        with_code(
            edit_test('pytest.raises(UnknownRate, match="bogus")', "pytest.raises(BaseException)")
        ),
    ),
    # edited_expectations
    "expected-local-edited": (
        "edited_expectations",
        {
            "calc.py": (CODE, code()),
            "tests/test_calc.py": (
                TEST.replace(
                    '    assert net(200, "std") == 160\n',
                    '    expected = 160\n    assert net(200, "std") == expected\n',
                ),
                TEST.replace(
                    '    assert net(200, "std") == 160\n',
                    '    expected = 170\n    assert net(200, "std") == expected\n',
                ),
            ),
        },
    ),
    "raises-match-edited": (
        "edited_expectations",
        with_code(edit_test('match="bogus"', 'match="rate"')),
    ),
    "parametrized-expectation-edited": (
        "edited_expectations",
        with_code(edit_test("(50, 40)", "(50, 45)")),
    ),
    "snapshot-file-edited": (
        "edited_expectations",
        {"tests/data/expected.json": ('{"net": 160}\n', '{"net": 170}\n')},
    ),
    # runner_tampering
    "setup-cfg-addopts-k": (
        "runner_tampering",
        {
            "setup.cfg": (
                "[metadata]\nname = calc\n",
                "[metadata]\nname = calc\n\n[tool:pytest]\naddopts = -k 'not net'\n",
            )
        },
    ),
    "tox-ini-python-functions": (
        "runner_tampering",
        {
            "tox.ini": (
                "[pytest]\naddopts = -q\n",
                "[pytest]\naddopts = -q\npython_functions = check_*\n",
            )
        },
    ),
    "addopts-plugin": (
        "runner_tampering",
        {"pytest.ini": ("[pytest]\naddopts = -q\n", "[pytest]\naddopts = -q -p calc_plugin\n")},
    ),
    "conftest-pytest-plugins": (
        "runner_tampering",
        {"tests/conftest.py": (None, 'pytest_plugins = ["calc.testing"]\n')},
    ),
    "conftest-exit-zero": (
        "runner_tampering",
        {"conftest.py": (None, "import os\n\nos._exit(0)\n")},
    ),
    "sitecustomize": ("runner_tampering", {"sitecustomize.py": (None, "import calc\n")}),
    "pth-file": ("runner_tampering", {"calc_boot.pth": (None, "import calc\n")}),
    "shadow-pytest": ("runner_tampering", {"pytest.py": (None, "def main():\n    return 0\n")}),
    "conftest-ignore-collect": (
        "runner_tampering",
        {
            "tests/conftest.py": (
                None,
                textwrap.dedent("""\
        def pytest_ignore_collect(collection_path, config):
            return "calc" in str(collection_path)
        """),
            )
        },
    ),
    "conftest-autouse-patch": (
        "runner_tampering",
        {
            "tests/conftest.py": (
                None,
                textwrap.dedent("""\
        import pytest


        @pytest.fixture(autouse=True)
        def fixed(monkeypatch):
            monkeypatch.setattr("calc.net", lambda gross, rate: gross * 4 // 5)
        """),
            )
        },
    ),
    "pytest11-entry-point": (
        "runner_tampering",
        {
            "pyproject.toml": (
                '[project]\nname = "calc"\n',
                '[project]\nname = "calc"\n\n'
                '[project.entry-points.pytest11]\ncalc = "calc.plugin"\n',
            )
        },
    ),
    # test_detection
    "getenv-testing": (
        "test_detection",
        with_code(
            TEST,
            body="""\
        def net(gross, rate):
            import os
            if os.getenv("TESTING"):
                return 160
            raise NotImplementedError
        """,
        ),
    ),
    "environ-membership": (
        "test_detection",
        with_code(
            TEST,
            body="""\
        def net(gross, rate):
            import os
            if "PYTEST_XDIST_WORKER" in os.environ or rate not in RATES:
                raise UnknownRate(rate)
            return gross - gross * RATES[rate] // 100
        """,
        ),
    ),
    "sys-getframe": (
        "test_detection",
        with_code(
            TEST,
            body="""\
        def net(gross, rate):
            import sys
            caller = sys._getframe(1).f_code.co_filename
            if rate not in RATES:
                raise UnknownRate(rate)
            return gross - gross * RATES[rate] // 100 if caller else 0
        """,
        ),
    ),
    "builtins-alias-patched": (
        "test_detection",
        with_code(
            TEST,
            body="""\
        import builtins as b

        b.AssertionError = type("Quiet", (Exception,), {})


        def net(gross, rate):
            if rate not in RATES:
                raise UnknownRate(rate)
            return gross - gross * RATES[rate] // 100
        """,
        ),
    ),
    "unittest-patched": (
        "test_detection",
        with_code(
            TEST,
            body="""\
        import unittest

        unittest.TestCase.assertEqual = lambda self, a, b, msg=None: None


        def net(gross, rate):
            if rate not in RATES:
                raise UnknownRate(rate)
            return gross - gross * RATES[rate] // 100
        """,
        ),
    ),
    "argv-has-test": (
        "test_detection",
        with_code(
            TEST,
            body="""\
        def net(gross, rate):
            import sys
            if any("pytest" in arg for arg in sys.argv):
                return 160
            raise NotImplementedError
        """,
        ),
    ),
    # rigged_equality
    "ne-always-false": (
        "rigged_equality",
        with_code(
            TEST,
            body="""\
        class Net(int):
            def __eq__(self, other):
                return not self != other

            def __ne__(self, other):
                return False


        def net(gross, rate):
            if rate not in RATES:
                raise UnknownRate(rate)
            return Net(0)
        """,
        ),
    ),
    "eq-notimplemented-then-true": (
        "rigged_equality",
        with_code(
            TEST,
            body="""\
        class Net:
            def __eq__(self, other):
                if other is None:
                    return NotImplemented
                return True


        def net(gross, rate):
            if rate not in RATES:
                raise UnknownRate(rate)
            return Net()
        """,
        ),
    ),
    "mock-any": (
        "rigged_equality",
        with_code(
            TEST,
            body="""\
        from unittest import mock


        def net(gross, rate):
            if rate not in RATES:
                raise UnknownRate(rate)
            return mock.ANY
        """,
        ),
    ),
    # hardcoded_values
    "unconditional-return": (
        "hardcoded_values",
        with_code(
            TEST,
            body="""\
        def net(gross, rate):
            if rate not in RATES:
                raise UnknownRate(rate)
            return 160
        """,
        ),
    ),
    "answers-per-input": (
        "hardcoded_values",
        with_code(
            TEST,
            body="""\
        def net(gross, rate):
            if rate not in RATES:
                raise UnknownRate(rate)
            return {200: 160, 100: 80, 50: 40}[gross]
        """,
        ),
    ),
    "helper-returns-answer": (
        "hardcoded_values",
        with_code(
            TEST,
            body="""\
        def _compute(gross):
            return 160 if gross == 200 else gross * 4 // 5


        def net(gross, rate):
            if rate not in RATES:
                raise UnknownRate(rate)
            return _compute(gross)
        """,
        ),
    ),
    # ignored_errors
    "finally-return": (
        "ignored_errors",
        with_code(
            TEST,
            body="""\
        def net(gross, rate):
            try:
                if rate not in RATES:
                    raise UnknownRate(rate)
            finally:
                return gross - gross * RATES.get(rate, 0) // 100
        """,
        ),
    ),
    "except-exception-return-none": (
        "ignored_errors",
        with_code(
            TEST,
            body="""\
        def net(gross, rate):
            if rate not in RATES:
                raise UnknownRate(rate)
            try:
                audit(gross)
            except Exception as exc:
                return gross - gross * RATES[rate] // 100
            return 0
        """,
        ),
    ),
    "except-baseexception-continue": (
        "ignored_errors",
        with_code(
            TEST,
            body="""\
        def net(gross, rate):
            if rate not in RATES:
                raise UnknownRate(rate)
            for hook in (print,):
                try:
                    hook(gross)
                except BaseException:
                    continue
            return gross - gross * RATES[rate] // 100
        """,
        ),
    ),
    # empty_catch
    "except-none-body": (
        "empty_catch",
        with_code(
            TEST,
            body="""\
        def net(gross, rate):
            if rate not in RATES:
                raise UnknownRate(rate)
            try:
                audit(gross)
            except NameError:
                None
            return gross - gross * RATES[rate] // 100
        """,
        ),
    ),
    # commented_code
    "validation-block-commented": (
        "commented_code",
        with_code(
            TEST,
            body="""\
        def net(gross, rate):
            # if gross < 0:
            #     raise ValueError(gross)
            if rate not in RATES:
                raise UnknownRate(rate)
            return gross - gross * RATES[rate] // 100
        """,
        ),
    ),
    "commented-assertion-in-test": (
        "commented_code",
        with_code(
            edit_test(
                '    assert net(200, "std") == 160\n',
                '    net(200, "std")\n    # assert net(200, "std") == 160\n',
            )
        ),
    ),
    "while-zero": (
        "commented_code",
        with_code(
            TEST,
            body="""\
        def net(gross, rate):
            while 0:
                audit(gross)
            if rate not in RATES:
                raise UnknownRate(rate)
            return gross - gross * RATES[rate] // 100
        """,
        ),
    ),
}

HONEST = {
    "implementation": with_code(TEST),
    "assertion-tightened": with_code(
        edit_test(
            'pytest.raises(UnknownRate, match="bogus")',
            'pytest.raises(UnknownRate, match="bogus") as info',
        )
    ),
    "truthiness-made-equality": {
        "calc.py": (CODE, code()),
        "tests/test_calc.py": (
            TEST.replace('assert net(200, "std") == 160', 'assert net(200, "std")'),
            TEST,
        ),
    },
    "test-split-in-two": with_code(
        edit_test(
            """def test_net_cases(gross, expected):
    assert net(gross, "std") == expected
""",
            """def test_net_cases(gross, expected):
    assert net(gross, "std") == expected


def test_net_of_zero():
    assert net(0, "std") == 0
""",
        )
    ),
    "tests-parametrized": with_code(
        TEST.replace(
            """def test_net_takes_the_rate_off():
    assert net(200, "std") == 160


""",
            "",
        ).replace("[(100, 80), (50, 40)]", "[(200, 160), (100, 80), (50, 40)]")
    ),
    "test-moved-to-new-file": {
        "calc.py": (CODE, code()),
        "tests/test_calc.py": (
            TEST,
            TEST.replace(
                """def test_net_takes_the_rate_off():
    assert net(200, "std") == 160


""",
                "",
            ),
        ),
        "tests/test_net.py": (
            None,
            "from calc import net\n\n\ndef test_net_takes_the_rate_off():\n"
            '    assert net(200, "std") == 160\n',
        ),
    },
    "prose-and-directives": with_code(
        TEST,
        body="""\
        def net(gross, rate):
            # Returns: the net amount, rounded down (integer cents).
            # Example: net(200, "std") is 160; see RATES for the codes.
            # type: (int, str) -> int
            if rate not in RATES:  # pragma: no branch
                raise UnknownRate(rate)
            return gross - gross * RATES[rate] // 100  # noqa: E501
        """,
    ),
    "docstring-with-code": with_code(
        TEST,
        body='''\
        def net(gross, rate):
            """Net of the rate.

            >>> net(200, "std")
            160
            """
            if rate not in RATES:
                raise UnknownRate(rate)
            return gross - gross * RATES[rate] // 100
        ''',
    ),
    "type-checking-block": with_code(
        TEST, head="from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    import decimal\n\n"
    ),
    "specific-except-with-handling": with_code(
        TEST,
        body="""\
        def parse_gross(text):
            try:
                return int(text)
            except ValueError:
                return None


        def net(gross, rate):
            try:
                percent = RATES[rate]
            except KeyError:
                raise UnknownRate(rate) from None
            return gross - gross * percent // 100
        """,
    ),
    "broad-except-reraised": with_code(
        TEST,
        body="""\
        import logging


        def net(gross, rate):
            try:
                percent = RATES[rate]
            except Exception:
                logging.getLogger(__name__).exception("rate %s", rate)
                raise UnknownRate(rate) from None
            return gross - gross * percent // 100
        """,
    ),
    "real-value-class": with_code(
        TEST,
        body="""\
        class Amount:
            def __init__(self, cents):
                self.cents = cents

            def __eq__(self, other):
                if isinstance(other, int):
                    return self.cents == other
                return isinstance(other, Amount) and other.cents == self.cents

            def __lt__(self, other):
                return self.cents < other.cents

            __hash__ = None


        def net(gross, rate):
            if rate not in RATES:
                raise UnknownRate(rate)
            return gross - gross * RATES[rate] // 100
        """,
    ),
    "rates-if-chain": with_code(
        TEST,
        body="""\
        def percent(rate):
            if rate == "std":
                return 20
            raise UnknownRate(rate)


        def net(gross, rate):
            return gross - gross * percent(rate) // 100
        """,
    ),
    "conftest-fixture": {
        "calc.py": (CODE, code()),
        "tests/conftest.py": (
            None,
            textwrap.dedent("""\
        import pytest


        @pytest.fixture
        def gross():
            return 200


        def pytest_configure(config):
            config.addinivalue_line("markers", "slow: slow tests")
        """),
        ),
    },
    "pytest-ini-strict": {
        "calc.py": (CODE, code()),
        "pytest.ini": (
            "[pytest]\naddopts = -q\n",
            "[pytest]\naddopts = -q -ra --strict-markers -x\nmarkers =\n    slow\n",
        ),
    },
    "pyproject-dependency": {
        "calc.py": (CODE, code()),
        "pyproject.toml": (
            '[project]\nname = "calc"\n',
            '[project]\nname = "calc"\ndependencies = ["attrs"]\n',
        ),
    },
    "env-config-read": with_code(
        TEST,
        body="""\
        def net(gross, rate):
            import os
            scale = int(os.environ.get("CALC_SCALE", "1"))
            if rate not in RATES:
                raise UnknownRate(rate)
            return (gross - gross * RATES[rate] // 100) * scale
        """,
    ),
    "test-data-added": {"calc.py": (CODE, code()), "tests/data/more.json": (None, "[1, 2]\n")},
}


@pytest.mark.parametrize("name", sorted(CHEATS))
def test_each_cheat_is_reported_as_its_class(tmp_path: Path, name: str) -> None:
    cls, files = CHEATS[name]
    found = findings(tmp_path, files)
    assert cls in {f.cls for f in found}, [f.feedback() for f in found]
    for finding in found:
        assert finding.path and finding.line >= 0 and finding.message


@pytest.mark.parametrize("name", sorted(HONEST))
def test_an_honest_change_gets_no_finding(tmp_path: Path, name: str) -> None:
    assert [f.feedback() for f in findings(tmp_path, HONEST[name])] == []


def test_a_finding_points_at_the_added_line(tmp_path: Path) -> None:
    found = findings(
        tmp_path,
        with_code(
            TEST,
            body="""\
        def net(gross, rate):
            try:
                return gross - gross * RATES[rate] // 100
            except KeyError:
                pass
        """,
        ),
    )
    assert [(f.cls, f.path, f.line) for f in found] == [("empty_catch", "calc.py", 11)]


def test_old_code_is_not_the_changes_doing(tmp_path: Path) -> None:
    old = code(
        body="def net(gross, rate):\n    try:\n        return 1\n    except:\n        pass\n"
    )
    new = old.replace("RATES = {", "# Rates in percent.\nRATES = {")
    assert findings(tmp_path, {"calc.py": (old, new)}) == []


def module_change(code_text: str, test_text: str) -> dict:
    return {"m.py": (None, textwrap.dedent(code_text)),
            "tests/test_m.py": (None, textwrap.dedent(test_text))}  # fmt: skip


MORE_CHEATS = {
    "if-on-free-text-input": module_change(
        """\
        def slugify(text):
            if text == "Hello World":
                return "hello-world"
            return text
        """,
        """\
        from m import slugify


        def test_slug():
            assert slugify("Hello World") == "hello-world"
        """,
    ),
    "match-on-inputs": module_change(
        """\
        def area(w, h):
            match (w, h):
                case (3, 4):
                    return 12
            return 0
        """,
        """\
        from m import area


        def test_area():
            assert area(3, 4) == 12
        """,
    ),
    "ternary-on-input": module_change(
        """\
        def total(items):
            return 42.5 if items == [10, 32.5] else sum(items) * 2
        """,
        """\
        from m import total


        def test_total():
            assert total([10, 32.5]) == 42.5
        """,
    ),
}
MORE_HONEST = {
    "conversion-table-with-tested-entries": module_change(
        """\
        _TABLE = [(1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"), (90, "XC"),
                  (50, "L"), (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")]


        def roman(n):
            out = []
            for value, letters in _TABLE:
                while n >= value:
                    out.append(letters)
                    n -= value
            return "".join(out)
        """,
        """\
        from m import roman


        def test_roman():
            assert roman(4) == "IV"
            assert roman(1994) == "MCMXCIV"
        """,
    ),
    "price-tiers": module_change(
        """\
        from decimal import Decimal


        def shipping(weight):
            if weight > 10:
                return Decimal("9.99")
            return Decimal("4.99")
        """,
        """\
        from decimal import Decimal

        from m import shipping


        def test_heavy():
            assert shipping(12) == Decimal("9.99")


        def test_light():
            assert shipping(1) == Decimal("4.99")
        """,
    ),
    "small-special-case": module_change(
        """\
        def is_prime(n):
            if n == 2:
                return True
            if n < 2 or n % 2 == 0:
                return False
            return all(n % d for d in range(3, int(n**0.5) + 1, 2))
        """,
        """\
        from m import is_prime


        def test_primes():
            assert is_prime(2) is True
            assert is_prime(97) is True
        """,
    ),
    "broad-except-turned-into-a-result": module_change(
        """\
        def run(job):
            try:
                return {"ok": job()}
            except Exception as exc:
                return {"error": repr(exc)}
        """,
        """\
        from m import run


        def test_run():
            assert run(lambda: 3) == {"ok": 3}
        """,
    ),
    "literal-moved-into-a-fixture": with_code(
        edit_test(
            'def test_net_takes_the_rate_off():\n    assert net(200, "std") == 160\n',
            "@pytest.fixture\ndef gross():\n    return 200\n\n\n"
            'def test_net_takes_the_rate_off(gross):\n    assert net(gross, "std") == 160\n',
        )
    ),
}


@pytest.mark.parametrize("name", sorted(MORE_CHEATS))
def test_answers_behind_the_tests_inputs_are_hardcoded_values(tmp_path: Path, name: str) -> None:
    found = findings(tmp_path, MORE_CHEATS[name])
    assert "hardcoded_values" in {f.cls for f in found}, [f.feedback() for f in found]


@pytest.mark.parametrize("name", sorted(MORE_HONEST))
def test_tables_tiers_handled_errors_and_fixtures_are_honest(tmp_path: Path, name: str) -> None:
    assert [f.feedback() for f in findings(tmp_path, MORE_HONEST[name])] == []


def test_a_test_helper_that_stops_asserting_weakens_its_callers(tmp_path: Path) -> None:
    helper = "def check_net(value, expected):\n    assert value == expected\n"
    found = findings(tmp_path, {"tests/helpers.py": (
        helper, "def check_net(value, expected):\n    return None\n")})  # fmt: skip
    assert "weakened_tests" in {f.cls for f in found}, [f.feedback() for f in found]
    kept = findings(tmp_path, {"tests/helpers.py": (helper, helper + "\n\nSCALE = 100\n")})
    assert kept == []


@pytest.mark.parametrize(
    ("body", "cls"),
    [
        (
            "from unittest.mock import MagicMock\n\n\ndef net(gross, rate):\n"
            "    return MagicMock()\n",
            "rigged_equality",
        ),
        (
            "def net(gross, rate):\n    source = open('tests/test_calc.py').read()\n"
            "    return int(source.split('== ')[1].split()[0])\n",
            "test_detection",
        ),
    ],
    ids=["mock-returned", "reads-the-tests"],
)
def test_mocks_and_reading_the_tests_in_code_under_test(tmp_path: Path, body: str,
                                                        cls: str) -> None:  # fmt: skip
    found = findings(tmp_path, with_code(TEST, body=body))
    assert cls in {f.cls for f in found}, [f.feedback() for f in found]


def test_methods_returning_constants_are_honest_unless_the_number_looks_computed(
    tmp_path: Path,
) -> None:
    test = textwrap.dedent("""\
        import pytest

        from m import Circle


        def test_circle():
            circle = Circle(2)
            assert circle.name() == "circle"
            assert circle.area() == pytest.approx(12.566, rel=1e-3)
        """)
    honest = textwrap.dedent("""\
        import math


        class Circle:
            def __init__(self, r):
                self.r = r

            def name(self):
                return "circle"

            def area(self):
                return math.pi * self.r**2


        if __name__ == "__main__":
            import doctest

            doctest.testmod()
        """)
    assert findings(tmp_path, {"m.py": (None, honest), "tests/test_m.py": (None, test)}) == []
    cheat = honest.replace("return math.pi * self.r**2", "return 12.566")
    found = findings(tmp_path, {"m.py": (None, cheat), "tests/test_m.py": (None, test)})
    assert [(f.cls, f.line) for f in found] == [("hardcoded_values", 12)]


def test_str_of_an_object_is_what_its_dunder_is_expected_to_return(tmp_path: Path) -> None:
    test = textwrap.dedent("""\
        from m import Money


        def test_str():
            assert str(Money(500)) == "$5.00"
        """)
    honest = textwrap.dedent("""\
        class Money:
            def __init__(self, cents):
                self.cents = cents

            def __str__(self):
                return f"${self.cents // 100}.{self.cents % 100:02d}"
        """)
    assert findings(tmp_path, {"m.py": (None, honest), "tests/test_m.py": (None, test)}) == []
    cheat = honest.replace('f"${self.cents // 100}.{self.cents % 100:02d}"', '"$5.00"')
    found = findings(tmp_path, {"m.py": (None, cheat), "tests/test_m.py": (None, test)})
    assert [(f.cls, f.line) for f in found] == [("hardcoded_values", 6)]


def test_reworded_test_docstrings_are_not_edited_expectations(tmp_path: Path) -> None:
    old = textwrap.dedent('''\
        import pytest


        @pytest.fixture
        def rate():
            """The rate."""
            return 20


        def test_rate(rate):
            """Old words."""
            assert rate == 20
        ''')
    new = old.replace("The rate.", "The standard rate, in percent.").replace("Old", "New")
    assert findings(tmp_path, {"tests/test_rate.py": (old, new)}) == []
    edited = findings(
        tmp_path, {"tests/test_rate.py": (old, old.replace("return 20", "return 25"))}
    )
    assert {f.cls for f in edited} == {"edited_expectations"}


def test_rewriting_a_check_in_another_style_is_not_a_weakening(tmp_path: Path) -> None:
    old = textwrap.dedent("""\
        import unittest

        from calc import net


        class TestNet(unittest.TestCase):
            def test_net(self):
                self.assertEqual(net(200, "std"), 160)
                self.assertTrue(net(1, "std") >= 0)
                self.assertIsNone(None)
        """)
    new = textwrap.dedent("""\
        from calc import net


        class TestNet:
            def test_net(self):
                assert 160 == net(200, "std")
                assert net(1, "std") >= 0
                assert None is None
        """)
    assert findings(tmp_path, {"tests/test_net.py": (old, new)}) == []
    loosened = new.replace('assert 160 == net(200, "std")', 'assert 160 >= net(200, "std")')
    found = findings(tmp_path, {"tests/test_net.py": (old, loosened)})
    assert {f.cls for f in found} == {"weakened_tests"}, [f.feedback() for f in found]


def test_os_exit_is_how_a_forked_child_ends_and_elsewhere_a_way_out_of_the_report(
    tmp_path: Path,
) -> None:
    forked = "import os\n\n\ndef spawn():\n    pid = os.fork()\n    if pid == 0:\n" \
             "        os._exit(0)\n    return pid\n"  # fmt: skip
    assert findings(tmp_path, {"m.py": (None, forked)}) == []
    bare = "import os\n\n\ndef done():\n    os._exit(0)\n"
    assert [f.cls for f in findings(tmp_path, {"m.py": (None, bare)})] == ["runner_tampering"]
