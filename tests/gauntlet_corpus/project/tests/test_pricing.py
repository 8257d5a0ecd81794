from decimal import Decimal

import pytest
from shop.pricing import line_total, parse_price


def test_parse_price_reads_a_decimal():
    assert parse_price(" 12.5 ") == Decimal("12.50")


def test_parse_price_refuses_garbage():
    with pytest.raises(ValueError):
        parse_price("twelve")


def test_line_total_multiplies_to_the_cent():
    assert line_total(Decimal("2.50"), 4) == Decimal("10.00")
