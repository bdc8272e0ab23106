import pytest

from inventory.barcodes import gs1_check_digit, is_valid_gs1, upc_a


@pytest.mark.parametrize(
    ("code", "valid"),
    [
        ("036000291452", True),  # the textbook UPC-A
        ("036000291453", False),
        ("4006381333931", True),  # EAN-13
        ("00012345600012", True),  # GTIN-14
        ("12345", False),
        ("03600029145X", False),
    ],
)
def test_gs1_validation(code, valid):
    assert is_valid_gs1(code) is valid


def test_upc_a_appends_the_check_digit():
    assert upc_a("03600029145") == "036000291452"
    assert gs1_check_digit("03600029145") == 2
