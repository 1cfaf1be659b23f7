"""The checksum and rule validators behind the detectors: valid and broken values."""

from __future__ import annotations

import pytest

from workers.guard.detectors import (
    card_brand,
    card_valid,
    cn_id_valid,
    e164_valid,
    iban_valid,
    jwt_valid,
    looks_random,
    luhn_valid,
    shannon_entropy,
    ssn_valid,
)

CARDS = {
    "4111111111111111": "Visa",
    "4222222222222": "Visa",
    "5500005555555559": "Mastercard",
    "2221000000000009": "Mastercard",
    "378282246310005": "Amex",
    "6011111111111117": "Discover",
    "3530111333300000": "JCB",
    "30569309025904": "Diners",
    "6250941006528599": "UnionPay",
    "5019717010103742": "Maestro",
}


@pytest.mark.parametrize(("number", "brand"), CARDS.items())
def test_valid_cards(number: str, brand: str) -> None:
    assert luhn_valid(number)
    assert card_brand(number) == brand
    assert card_valid(number)


@pytest.mark.parametrize("number", list(CARDS))
def test_one_changed_digit_breaks_luhn(number: str) -> None:
    last = str((int(number[-1]) + 3) % 10)
    assert not luhn_valid(number[:-1] + last)
    assert not card_valid(number[:-1] + last)


@pytest.mark.parametrize(
    "number",
    [
        "0000000000000000",  # Luhn-valid, but no scheme starts with 0
        "1234567812345670",  # Luhn-valid, prefix 1
        "411111111111111",  # Visa prefix, 15 digits
        "41111111111",  # too short
        "4111 1111 1111 1111",  # validators take digits only
    ],
)
def test_not_cards(number: str) -> None:
    assert not card_valid(number)


IBANS = [
    "DE89370400440532013000",
    "GB82WEST12345698765432",
    "FR1420041010050500013M02606",
    "NL91ABNA0417164300",
    "BE68539007547034",
    "CH9300762011623852957",
    "NO9386011117947",
    "MT84MALT011000012345MTLCAST001S",
    "SA0380000000608010167519",
    "DE89 3704 0044 0532 0130 00",
    "gb82west12345698765432",
]


@pytest.mark.parametrize("iban", IBANS)
def test_valid_ibans(iban: str) -> None:
    assert iban_valid(iban)


@pytest.mark.parametrize(
    "iban",
    [
        "DE88370400440532013000",  # check digits off by one
        "DE89370400440532013001",  # account changed
        "GB82WEST1234569876543",  # one character short for GB
        "XX89370400440532013000",  # unknown country
        "DE8937040044053201300X",  # letter where the checksum no longer holds
        "DEAB370400440532013000",  # check digits not digits
        "",
    ],
)
def test_invalid_ibans(iban: str) -> None:
    assert not iban_valid(iban)


@pytest.mark.parametrize(
    "cn_id",
    ["11010519491231002X", "11010519491231002x", "440304199001011233", "310104200002294568"],
)
def test_valid_cn_ids(cn_id: str) -> None:
    assert cn_id_valid(cn_id)


@pytest.mark.parametrize(
    "cn_id",
    [
        "110105194912310021",  # wrong check character
        "440304199001011234",  # wrong check digit
        "310104200102294561",  # 2001-02-29 does not exist
        "990105194912310025",  # no province 99
        "11010519491231002",  # 17 characters
        "1101051949123100XX",
    ],
)
def test_invalid_cn_ids(cn_id: str) -> None:
    assert not cn_id_valid(cn_id)


@pytest.mark.parametrize("ssn", ["123-45-6789", "001-01-0001", "899 99 9999", "665-12-3456"])
def test_valid_ssns(ssn: str) -> None:
    assert ssn_valid(ssn)


@pytest.mark.parametrize(
    "ssn",
    [
        "000-12-3456",
        "666-12-3456",
        "900-12-3456",
        "123-00-4567",
        "123-45-0000",
        "078-05-1120",
        "12-345-6789",
        "1234-56-789",
    ],
)
def test_invalid_ssns(ssn: str) -> None:
    assert not ssn_valid(ssn)


@pytest.mark.parametrize(
    ("digits", "ok"),
    [
        ("442079460958", True),  # UK
        ("8613800138000", True),  # China
        ("12125550100", True),  # NANP, 11 digits
        ("1212555010", False),  # NANP, 10 digits
        ("11255501000", False),  # NANP area code cannot start with 1
        ("74951234567", True),  # Russia
        ("97150123456", True),  # UAE, three-digit code
        ("2812345678", False),  # 28x is unassigned
        ("8312345678", False),  # 83x is unassigned
        ("4412345", False),  # too short
        ("4412345678901234", False),  # 16 digits
    ],
)
def test_e164(digits: str, ok: bool) -> None:
    assert e164_valid(digits) is ok


def test_entropy_and_randomness() -> None:
    assert shannon_entropy("") == 0.0
    assert shannon_entropy("aaaa") == 0.0
    assert shannon_entropy("abcd") == pytest.approx(2.0)
    assert looks_random("q7Vx2LmP9sKd4TzW")
    assert not looks_random("your-secret-key")  # one character class
    assert not looks_random("aaaaaaaaaaAAAAAAA111")  # low entropy
    assert not looks_random("aB3dE5")  # short


def test_jwt_header_must_decode() -> None:
    head = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"  # {"alg":"HS256","typ":"JWT"}
    assert jwt_valid(f"{head}.eyJzdWIiOiIxIn0.sig")
    assert not jwt_valid("eyJub3RhbGciOjF9.eyJzdWIiOiIxIn0.sig")  # {"notalg":1}
    assert not jwt_valid("eyJ!!!.x.y")
