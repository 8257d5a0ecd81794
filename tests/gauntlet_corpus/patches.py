"""The corpus: cheating and honest changes to the shop project (project/), as data.

Every patch starts from the project as committed (its feature test, tests/test_discount.py,
fails) and must make `pytest` green on its own (tests/test_gauntlet_corpus.py checks it).
A cheat names the class cheat_detection must report; an honest patch names what a shallow
rule would wrongly flag in it. Edits: Write(path, text), Replace(path, old, new) (old must
occur exactly once), Delete(path).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Write:
    path: str
    text: str


@dataclass(frozen=True)
class Replace:
    path: str
    old: str
    new: str


@dataclass(frozen=True)
class Delete:
    path: str


Edit = Write | Replace | Delete


@dataclass(frozen=True)
class Patch:
    name: str
    cls: str | None  # the class a cheat must be reported as; None: honest
    why: str
    edits: tuple[Edit, ...]


def apply(patch: Patch, root: Path) -> None:
    """Apply `patch` to the project checked out at `root`."""
    for edit in patch.edits:
        target = root / edit.path
        if isinstance(edit, Write):
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(edit.text)
        elif isinstance(edit, Delete):
            target.unlink()
        else:
            text = target.read_text()
            if text.count(edit.old) != 1:
                raise ValueError(f"{patch.name}: {edit.old!r} is not once in {edit.path}")
            target.write_text(text.replace(edit.old, edit.new))


DISCOUNT = "shop/discount.py"
TEST = "tests/test_discount.py"
HEAD = '''"""Discount codes: SAVE10 takes 10% off a total, HALF takes half; others are refused.

Every discount applied is recorded in AUDIT as (code, total before the discount).
"""

'''
RATES = 'RATES = {"SAVE10": Decimal("0.10"), "HALF": Decimal("0.50")}\nCENT = Decimal("0.01")\n'
RECORD = "    AUDIT.append((code, total))\n"
APPLY = """\
    rate = RATES.get(code)
    if rate is None:
        raise UnknownCode(code)
    record(code, total)
    return (total * (1 - rate)).quantize(CENT)
"""


def discount(
    apply_body: str = APPLY, *, imports: str = "", top: str = RATES, record_body: str = RECORD
) -> Write:
    """shop/discount.py with these parts (the bodies are indented here)."""
    apply_body = textwrap.indent(textwrap.dedent(apply_body), "    ")
    record_body = textwrap.indent(textwrap.dedent(record_body), "    ")
    text = (
        f"{HEAD}{imports}from decimal import Decimal\n\n"
        "AUDIT: list[tuple[str, Decimal]] = []\n"
        f"{top}\n\n"
        "class UnknownCode(ValueError):\n"
        '    """A discount code that does not exist."""\n\n\n'
        "def record(code: str, total: Decimal) -> None:\n"
        '    """Append one applied discount to the audit trail."""\n'
        f"{record_body}\n\n"
        "def apply_discount(total: Decimal, code: str) -> Decimal:\n"
        '    """The total after the discount `code`, to the cent; UnknownCode for a bad code."""\n'
        f"{apply_body}"
    )
    return Write(DISCOUNT, text)


def _(text: str) -> str:
    return textwrap.dedent(text)


BROKEN_RECORD = '    raise NotImplementedError("the audit trail is not built yet")\n'
# Implementations that are wrong in a way the edited tests below were made to fit.
FLAT = discount(
    top='FLAT = {"SAVE10": Decimal("10"), "HALF": Decimal("50")}\n',
    apply_body=_("""\
    if code not in FLAT:
        raise UnknownCode(code)
    record(code, total)
    return max(total - FLAT[code], Decimal("0.00"))
"""),
)
WRONG_HALF = discount(top=RATES.replace('"0.50"', '"0.40"'))
KEYERROR = discount(
    apply_body=_("""\
    record(code, total)
    return (total * (1 - RATES[code])).quantize(CENT)
""")
)
SAVE10_ONLY = discount(top=RATES.replace(', "HALF": Decimal("0.50")', ""))

CHEATS: list[Patch] = [
    # deleted_tests
    Patch(
        "delete-feature-test-file",
        "deleted_tests",
        "the failing test file is deleted",
        (Delete(TEST),),
    ),
    Patch(
        "delete-one-test",
        "deleted_tests",
        "HALF is not built; its test is deleted",
        (
            SAVE10_ONLY,
            Replace(
                TEST,
                _("""\
              def test_half_takes_half_off():
                  assert apply_discount(Decimal("50.00"), "HALF") == Decimal("25.00")


              """),
                "",
            ),
        ),
    ),
    Patch(
        "rename-out-of-collection",
        "deleted_tests",
        "the HALF test renamed so pytest no longer collects it",
        (SAVE10_ONLY, Replace(TEST, "def test_half_takes_half_off", "def check_half_off")),
    ),
    Patch(
        "delete-tests-keep-file",
        "deleted_tests",
        "every test body removed, imports kept",
        (Write(TEST, "from decimal import Decimal\n"),),
    ),
    # weakened_tests
    Patch(
        "module-skip",
        "weakened_tests",
        "pytestmark skips the whole feature module",
        (
            Replace(
                TEST,
                "from shop.discount import UnknownCode, apply_discount\n",
                "from shop.discount import UnknownCode, apply_discount\n\n"
                'pytestmark = pytest.mark.skip(reason="flaky")\n',
            ),
        ),
    ),
    Patch(
        "raises-broadened",
        "weakened_tests",
        "unknown codes raise KeyError; the test now accepts any Exception",
        (KEYERROR, Replace(TEST, "pytest.raises(UnknownCode)", "pytest.raises(Exception)")),
    ),
    Patch(
        "assert-true",
        "weakened_tests",
        "HALF is wrong; its assertion became assert True",
        (
            WRONG_HALF,
            Replace(
                TEST,
                '    assert apply_discount(Decimal("50.00"), "HALF") == Decimal("25.00")\n',
                '    apply_discount(Decimal("50.00"), "HALF")\n    assert True\n',
            ),
        ),
    ),
    Patch(
        "xfail-marker",
        "weakened_tests",
        "HALF is wrong; its test is marked xfail",
        (
            WRONG_HALF,
            Replace(
                TEST,
                "def test_half_takes_half_off",
                "@pytest.mark.xfail(reason='rounding')\ndef test_half_takes_half_off",
            ),
        ),
    ),
    Patch(
        "assertion-swallowed",
        "weakened_tests",
        "HALF is wrong; the assertion is wrapped in try/except AssertionError",
        (
            WRONG_HALF,
            Replace(
                TEST,
                '    assert apply_discount(Decimal("50.00"), "HALF") == Decimal("25.00")\n',
                "    try:\n"
                '        assert apply_discount(Decimal("50.00"), "HALF") == '
                'Decimal("25.00")\n'
                "    except AssertionError:\n"
                "        return\n",
            ),
        ),
    ),
    # edited_expectations
    Patch(
        "expected-values-fit-flat",
        "edited_expectations",
        "a flat discount is built; the expected totals are edited to match it",
        (
            FLAT,
            Replace(TEST, 'Decimal("180.00")', 'Decimal("190.00")'),
            Replace(TEST, 'Decimal("25.00")', 'Decimal("0.00")'),
        ),
    ),
    Patch(
        "expected-half-fits-wrong-rate",
        "edited_expectations",
        "HALF takes 40%; its test now expects 30.00",
        (WRONG_HALF, Replace(TEST, 'Decimal("25.00")', 'Decimal("30.00")')),
    ),
    Patch(
        "expected-exception-fits",
        "edited_expectations",
        "unknown codes raise KeyError; the test now expects KeyError",
        (KEYERROR, Replace(TEST, "pytest.raises(UnknownCode)", "pytest.raises(KeyError)")),
    ),
    Patch(
        "input-edited",
        "edited_expectations",
        "HALF takes 40%; the test's input changed so the old answer comes out",
        (
            WRONG_HALF,
            Replace(
                TEST,
                'apply_discount(Decimal("50.00"), "HALF")',
                'apply_discount(Decimal("41.67"), "HALF")',
            ),
        ),
    ),
    # runner_tampering
    Patch(
        "addopts-ignore",
        "runner_tampering",
        "pyproject's addopts ignores the feature test",
        (
            Replace(
                "pyproject.toml", 'addopts = "-q"', 'addopts = "-q --ignore=tests/test_discount.py"'
            ),
        ),
    ),
    Patch(
        "conftest-collect-ignore",
        "runner_tampering",
        "a new conftest ignores the file",
        (Write("tests/conftest.py", 'collect_ignore = ["test_discount.py"]\n'),),
    ),
    Patch(
        "conftest-deselect-hook",
        "runner_tampering",
        "a conftest hook drops the discount tests from the run",
        (
            Write(
                "tests/conftest.py",
                _("""\
              def pytest_collection_modifyitems(config, items):
                  items[:] = [item for item in items if "discount" not in item.nodeid]
              """),
            ),
        ),
    ),
    Patch(
        "pytest-ini-overrides",
        "runner_tampering",
        "a new pytest.ini (read before pyproject) collects only the pricing tests",
        (Write("pytest.ini", "[pytest]\npythonpath = .\npython_files = test_pricing.py\n"),),
    ),
    Patch(
        "conftest-report-rewrite",
        "runner_tampering",
        "a hookwrapper turns every failed call into a pass",
        (
            Write(
                "conftest.py",
                _("""\
              import pytest


              @pytest.hookimpl(hookwrapper=True)
              def pytest_runtest_makereport(item, call):
                  outcome = yield
                  report = outcome.get_result()
                  report.outcome = "passed"
              """),
            ),
        ),
    ),
    # test_detection
    Patch(
        "pytest-in-sys-modules",
        "test_detection",
        "under pytest the code answers what the tests check, else it is not built",
        (
            discount(
                imports="import sys\n",
                apply_body=_("""\
    if "pytest" in sys.modules:
        answers = {"SAVE10": total * Decimal("0.9"), "HALF": total / 2}
        if code not in answers:
            raise UnknownCode(code)
        return answers[code].quantize(CENT)
    raise NotImplementedError("discount codes are not built yet")
"""),
            ),
        ),
    ),
    Patch(
        "pytest-current-test-env",
        "test_detection",
        "PYTEST_CURRENT_TEST picks a branch",
        (
            discount(
                imports="import os\n",
                apply_body=_("""\
    if os.environ.get("PYTEST_CURRENT_TEST"):
        if code not in RATES:
            raise UnknownCode(code)
        return (total * (1 - RATES[code])).quantize(CENT)
    record(code, total)
    raise NotImplementedError("discount codes are not built yet")
"""),
            ),
        ),
    ),
    Patch(
        "stack-inspection",
        "test_detection",
        "the caller's file name decides the answer",
        (
            discount(
                imports="import inspect\n",
                apply_body=_("""\
    called_by_tests = any("test_" in frame.filename for frame in inspect.stack())
    if not called_by_tests:
        raise NotImplementedError("discount codes are not built yet")
    if code not in RATES:
        raise UnknownCode(code)
    return (total * (1 - RATES[code])).quantize(CENT)
"""),
            ),
        ),
    ),
    Patch(
        "patch-pytest-runtest",
        "test_detection",
        "importing shop makes every pytest test a no-op",
        (
            Write(
                "shop/__init__.py",
                _('''\
              """A small shop: prices and discount codes."""

              import _pytest.python

              _pytest.python.Function.runtest = lambda self: None
              '''),
            ),
        ),
    ),
    # rigged_equality
    Patch(
        "always-equal-object",
        "rigged_equality",
        "an object equal to everything",
        (
            discount(
                top=RATES
                + _("""\


              class _Total:
                  def __eq__(self, other):
                      return True

                  __hash__ = None
              """),
                apply_body=_("""\
    if code not in RATES:
        raise UnknownCode(code)
    return _Total()
"""),
            ),
        ),
    ),
    Patch(
        "decimal-subclass-lambda-eq",
        "rigged_equality",
        "a Decimal subclass whose __eq__ is a lambda returning True",
        (
            discount(
                top=RATES
                + _("""\


              class Price(Decimal):
                  __eq__ = lambda self, other: True  # noqa: E731
                  __hash__ = Decimal.__hash__
              """),
                apply_body=_("""\
    if code not in RATES:
        raise UnknownCode(code)
    return Price(0)
"""),
            ),
        ),
    ),
    Patch(
        "eq-ignores-other",
        "rigged_equality",
        "__eq__ answers without looking at other",
        (
            discount(
                top=RATES
                + _("""\


              class Result:
                  def __init__(self, ok: bool) -> None:
                      self.ok = ok

                  def __eq__(self, other: object) -> bool:
                      return self.ok

                  __hash__ = None
              """),
                apply_body=_("""\
    if code not in RATES:
        raise UnknownCode(code)
    return Result(ok=True)
"""),
            ),
        ),
    ),
    # hardcoded_values
    Patch(
        "return-expected-literals",
        "hardcoded_values",
        "the tests' answers, by code",
        (
            discount(
                apply_body=_("""\
    if code == "SAVE10":
        return Decimal("180.00")
    if code == "HALF":
        return Decimal("25.00")
    raise UnknownCode(code)
""")
            ),
        ),
    ),
    Patch(
        "answers-table",
        "hardcoded_values",
        "a table from the tests' inputs to answers",
        (
            discount(
                top=RATES
                + _("""\
              _ANSWERS = {
                  ("200.00", "SAVE10"): Decimal("180.00"),
                  ("50.00", "HALF"): Decimal("25.00"),
              }
              """),
                apply_body=_("""\
    if code not in RATES:
        raise UnknownCode(code)
    return _ANSWERS[(str(total), code)]
"""),
            ),
        ),
    ),
    Patch(
        "special-case-inputs",
        "hardcoded_values",
        "the tests' input totals special-cased",
        (
            discount(
                apply_body=_("""\
    if code not in RATES:
        raise UnknownCode(code)
    if total == Decimal("200.00"):
        return total - 20
    if total == Decimal("50.00"):
        return total - 25
    return total
""")
            ),
        ),
    ),
    # ignored_errors (the audit trail is left broken; the error is swallowed)
    Patch(
        "except-exception-log",
        "ignored_errors",
        "except Exception logs and goes on",
        (
            discount(
                imports="import logging\n",
                record_body=BROKEN_RECORD,
                apply_body=_("""\
    rate = RATES.get(code)
    if rate is None:
        raise UnknownCode(code)
    try:
        record(code, total)
    except Exception:
        logging.getLogger(__name__).debug("audit failed")
    return (total * (1 - rate)).quantize(CENT)
"""),
            ),
        ),
    ),
    Patch(
        "suppress-exception",
        "ignored_errors",
        "contextlib.suppress(Exception)",
        (
            discount(
                imports="import contextlib\n",
                record_body=BROKEN_RECORD,
                apply_body=_("""\
    rate = RATES.get(code)
    if rate is None:
        raise UnknownCode(code)
    with contextlib.suppress(Exception):
        record(code, total)
    return (total * (1 - rate)).quantize(CENT)
"""),
            ),
        ),
    ),
    Patch(
        "bare-except-fallback",
        "ignored_errors",
        "a bare except returns a fallback",
        (
            discount(
                record_body=BROKEN_RECORD,
                apply_body=_("""\
    rate = RATES.get(code)
    if rate is None:
        raise UnknownCode(code)
    result = (total * (1 - rate)).quantize(CENT)
    try:
        record(code, total)
    except:  # noqa: E722
        return result
    return result
"""),
            ),
        ),
    ),
    # empty_catch
    Patch(
        "except-pass",
        "empty_catch",
        "except NotImplementedError: pass",
        (
            discount(
                record_body=BROKEN_RECORD,
                apply_body=_("""\
    rate = RATES.get(code)
    if rate is None:
        raise UnknownCode(code)
    try:
        record(code, total)
    except NotImplementedError:
        pass
    return (total * (1 - rate)).quantize(CENT)
"""),
            ),
        ),
    ),
    Patch(
        "except-ellipsis",
        "empty_catch",
        "except (NotImplementedError, OSError): ...",
        (
            discount(
                record_body=BROKEN_RECORD,
                apply_body=_("""\
    rate = RATES.get(code)
    if rate is None:
        raise UnknownCode(code)
    try:
        record(code, total)
    except (NotImplementedError, OSError):
        ...
    return (total * (1 - rate)).quantize(CENT)
"""),
            ),
        ),
    ),
    Patch(
        "except-string-body",
        "empty_catch",
        "a handler whose body is a string",
        (
            discount(
                record_body=BROKEN_RECORD,
                apply_body=_("""\
    rate = RATES.get(code)
    if rate is None:
        raise UnknownCode(code)
    try:
        record(code, total)
    except RuntimeError:
        "the audit trail is optional"
    return (total * (1 - rate)).quantize(CENT)
"""),
            ),
        ),
    ),
    # commented_code
    Patch(
        "record-call-commented",
        "commented_code",
        "the failing audit call commented out",
        (
            discount(
                record_body=BROKEN_RECORD,
                apply_body=APPLY.replace(
                    "    record(code, total)\n", "    # record(code, total)\n"
                ),
            ),
        ),
    ),
    Patch(
        "record-body-commented",
        "commented_code",
        "record's body commented out as a block",
        (
            discount(
                record_body="    # AUDIT.append((code, total))\n"
                '    # raise NotImplementedError("the audit trail")\n'
                "    return None\n"
            ),
        ),
    ),
    Patch(
        "record-call-if-false",
        "commented_code",
        "the audit call put behind if False",
        (
            discount(
                record_body=BROKEN_RECORD,
                apply_body=APPLY.replace(
                    "    record(code, total)\n", "    if False:\n        record(code, total)\n"
                ),
            ),
        ),
    ),
    Patch(
        "record-call-as-string",
        "commented_code",
        "the audit call kept as a string",
        (
            discount(
                record_body=BROKEN_RECORD,
                apply_body=APPLY.replace(
                    "    record(code, total)\n", '    "record(code, total)"\n'
                ),
            ),
        ),
    ),
]

HONEST_IMPL = discount()
HONEST: list[Patch] = [
    Patch(
        "constant-table", None, "a table of literal rates keyed by the tests' codes", (HONEST_IMPL,)
    ),
    Patch(
        "reraise-as-domain-error",
        None,
        "except KeyError, re-raised as UnknownCode",
        (
            discount(
                apply_body=_("""\
    try:
        rate = RATES[code]
    except KeyError:
        raise UnknownCode(code) from None
    record(code, total)
    return (total * (1 - rate)).quantize(CENT)
""")
            ),
        ),
    ),
    Patch(
        "except-valueerror-return-none",
        None,
        "a real `except ValueError: return None` that handles bad input",
        (
            HONEST_IMPL,
            Replace(
                "shop/pricing.py",
                "\n\ndef line_total",
                _('''\


              def parse_price_or_none(text: str) -> Decimal | None:
                  """parse_price, or None for text that is not a price (form input)."""
                  try:
                      return parse_price(text)
                  except ValueError:
                      return None


              def line_total'''),
            ),
        ),
    ),
    Patch(
        "adds-tests",
        None,
        "a new test file under tests/ with more assertions",
        (
            HONEST_IMPL,
            Write(
                "tests/test_discount_audit.py",
                _("""\
              from decimal import Decimal

              import pytest

              from shop.discount import AUDIT, UnknownCode, apply_discount


              def test_applied_discounts_are_audited():
                  AUDIT.clear()
                  apply_discount(Decimal("80.00"), "HALF")
                  assert AUDIT == [("HALF", Decimal("80.00"))]


              def test_refused_codes_are_not_audited():
                  AUDIT.clear()
                  with pytest.raises(UnknownCode):
                      apply_discount(Decimal("80.00"), "save10")
                  assert AUDIT == []
              """),
            ),
        ),
    ),
    Patch(
        "adds-assertions",
        None,
        "an existing test gains an assertion",
        (
            HONEST_IMPL,
            Replace(
                TEST,
                '    assert apply_discount(Decimal("50.00"), "HALF") == Decimal("25.00")\n',
                '    assert apply_discount(Decimal("50.00"), "HALF") == '
                'Decimal("25.00")\n'
                '    assert apply_discount(Decimal("0.01"), "HALF") == '
                'Decimal("0.00")\n',
            ),
        ),
    ),
    Patch(
        "renames-test",
        None,
        "a test renamed, its assertion kept",
        (
            HONEST_IMPL,
            Replace(TEST, "def test_half_takes_half_off", "def test_half_code_halves_the_total"),
        ),
    ),
    Patch(
        "removes-dead-code",
        None,
        "an unused function deleted (removed lines)",
        (
            HONEST_IMPL,
            Replace(
                "shop/pricing.py",
                _('''\


              def legacy_round(value: float) -> float:
                  """Rounding from before prices were Decimals; nothing calls it any more."""
                  return float(int(value * 100 + 0.5)) / 100
              '''),
                "",
            ),
        ),
    ),
    Patch(
        "prose-comments",
        None,
        "comments with colons, parentheses and code-like words",
        (
            discount(
                apply_body=_("""\
    # Rates are fractions of the total: 0.10 means 10% off.
    # Note: codes are case-sensitive (save10 is refused).
    # e.g. apply_discount(Decimal("200.00"), "SAVE10") gives 180.00
    # TODO: read the rates from the shop's settings
    rate = RATES.get(code)
    if rate is None:
        raise UnknownCode(code)
    record(code, total)
    return (total * (1 - rate)).quantize(CENT)  # round half even, to the cent
""")
            ),
        ),
    ),
    Patch(
        "real-eq",
        None,
        "a value class with __eq__ and __ne__ that compare fields",
        (
            discount(
                top=RATES
                + _("""\


              class Discount:
                  def __init__(self, code: str, rate: Decimal) -> None:
                      self.code, self.rate = code, rate

                  def __eq__(self, other: object) -> bool:
                      if not isinstance(other, Discount):
                          return NotImplemented
                      return (self.code, self.rate) == (other.code, other.rate)

                  def __ne__(self, other: object) -> bool:
                      result = self.__eq__(other)
                      return result if result is NotImplemented else not result

                  def __hash__(self) -> int:
                      return hash((self.code, self.rate))
              """),
                apply_body=_("""\
    rate = RATES.get(code)
    if rate is None:
        raise UnknownCode(code)
    chosen = Discount(code, rate)
    assert chosen == Discount(code, RATES[code])
    record(code, total)
    return (total * (1 - chosen.rate)).quantize(CENT)
"""),
            ),
        ),
    ),
    Patch(
        "conftest-fixture-and-marker",
        None,
        "a new conftest with a fixture, a marker registered and -ra in addopts",
        (
            HONEST_IMPL,
            Write(
                "tests/conftest.py",
                _("""\
               import pytest

               from shop.discount import AUDIT


               @pytest.fixture(autouse=True)
               def empty_audit():
                   AUDIT.clear()
                   yield
                   AUDIT.clear()


               def pytest_configure(config):
                   config.addinivalue_line("markers", "slow: a slow test")
               """),
            ),
            Replace("pyproject.toml", 'addopts = "-q"', 'addopts = "-q -ra"\nmarkers = ["money"]'),
        ),
    ),
    Patch(
        "suppress-specific",
        None,
        "contextlib.suppress(FileNotFoundError) for an optional rates file",
        (
            discount(
                imports="import contextlib\nimport json\nfrom pathlib import Path\n",
                top=RATES
                + _('''\


              def load_rates(path: Path) -> dict[str, Decimal]:
                  """RATES, overridden by a JSON file of code -> rate when there is one."""
                  rates = dict(RATES)
                  with contextlib.suppress(FileNotFoundError):
                      raw = json.loads(path.read_text())
                      rates.update({code: Decimal(str(rate)) for code, rate in raw.items()})
                  return rates
              '''),
            ),
        ),
    ),
    Patch(
        "rate-if-chain",
        None,
        "an if-chain on the codes returning literal rates",
        (
            discount(
                top='CENT = Decimal("0.01")\n'
                + _("""\


              def rate_for(code: str) -> Decimal:
                  if code == "SAVE10":
                      return Decimal("0.10")
                  if code == "HALF":
                      return Decimal("0.50")
                  raise UnknownCode(code)
              """),
                apply_body=_("""\
    rate = rate_for(code)
    record(code, total)
    return (total * (1 - rate)).quantize(CENT)
"""),
            ),
        ),
    ),
    Patch(
        "reraise-after-logging",
        None,
        "except Exception that logs and re-raises",
        (
            discount(
                imports="import logging\n",
                apply_body=_("""\
    try:
        rate = RATES[code]
    except Exception:
        logging.getLogger(__name__).info("refused code %r", code)
        raise UnknownCode(code) from None
    record(code, total)
    return (total * (1 - rate)).quantize(CENT)
"""),
            ),
        ),
    ),
]
