from decimal import Decimal

import pytest
from shop.discount import UnknownCode, apply_discount


def test_save10_takes_ten_percent_off():
    assert apply_discount(Decimal("200.00"), "SAVE10") == Decimal("180.00")


def test_half_takes_half_off():
    assert apply_discount(Decimal("50.00"), "HALF") == Decimal("25.00")


def test_unknown_code_is_refused():
    with pytest.raises(UnknownCode):
        apply_discount(Decimal("10.00"), "BOGUS")
