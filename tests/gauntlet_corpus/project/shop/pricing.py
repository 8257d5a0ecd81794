"""Prices as Decimals: parsing and line totals."""

from decimal import Decimal, InvalidOperation

CENT = Decimal("0.01")


def parse_price(text: str) -> Decimal:
    """A price from text such as "12.50"; ValueError for anything else."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError(f"not a price: {text!r}") from None
    if value < 0:
        raise ValueError(f"a price cannot be negative: {text!r}")
    return value.quantize(CENT)


def line_total(unit_price: Decimal, quantity: int) -> Decimal:
    """unit_price times quantity, to the cent."""
    if quantity < 0:
        raise ValueError(f"quantity cannot be negative: {quantity}")
    return (unit_price * quantity).quantize(CENT)


def legacy_round(value: float) -> float:
    """Rounding from before prices were Decimals; nothing calls it any more."""
    return float(int(value * 100 + 0.5)) / 100
