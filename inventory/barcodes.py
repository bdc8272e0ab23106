"""GS1 check digits (UPC-A, EAN-13, GTIN-14 share one algorithm)."""

from __future__ import annotations

GS1_LENGTHS = {8, 12, 13, 14}


def gs1_check_digit(payload: str) -> int:
    """The check digit for the digits before it: weights 3,1,3,… from the right."""
    if not payload.isdigit():
        raise ValueError(f"{payload!r} is not numeric")
    total = sum(int(digit) * (3 if position % 2 == 0 else 1) for position, digit in enumerate(reversed(payload)))
    return (10 - total % 10) % 10


def is_valid_gs1(code: str) -> bool:
    return code.isdigit() and len(code) in GS1_LENGTHS and gs1_check_digit(code[:-1]) == int(code[-1])


def upc_a(payload11: str) -> str:
    if len(payload11) != 11:
        raise ValueError("a UPC-A payload has 11 digits")
    return f"{payload11}{gs1_check_digit(payload11)}"
