"""The checksum and rule validators behind the detectors: valid and broken values."""

from __future__ import annotations

import pytest

from workers.guard.detectors import (
    card_brand,
    card_valid,
    cn_id_valid,
    e164_valid,
    iban_length,
    iban_valid,
    jwt_valid,
    looks_random,
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
    "4111111111111111110": "Visa",  # 19 digits
    "6212345678901265": "UnionPay",
    "6212345678900000003": "UnionPay",  # 19 digits
}


@pytest.mark.parametrize(("number", "brand"), CARDS.items())
def test_valid_cards(number: str, brand: str) -> None:
    assert card_brand(number) == brand
    assert card_valid(number)


@pytest.mark.parametrize("number", list(CARDS))
def test_one_changed_digit_breaks_luhn(number: str) -> None:
    last = str((int(number[-1]) + 3) % 10)
    assert card_brand(number[:-1] + last) is not None  # the prefix and length still fit
    assert not card_valid(number[:-1] + last)


@pytest.mark.parametrize(
    "number",
    [
        "5500005555555595",  # 5500005555555559 with the last two digits swapped
        "378282246301005",  # 378282246310005, "10" -> "01"
        "6011111111111171",  # 6011111111111117
        "3530113133300000",  # 3530111333300000
        "6250941006525899",  # 6250941006528599
    ],
)
def test_swapped_neighbours_break_luhn(number: str) -> None:
    assert card_brand(number) is not None
    assert not card_valid(number)


@pytest.mark.parametrize(
    "number",
    [
        "0000000000000000",  # Luhn-valid, but no scheme starts with 0
        "1234567812345670",  # Luhn-valid, prefix 1
        "411111111111111",  # Visa prefix, 15 digits
        "41111111111",  # too short
        "4111 1111 1111 1111",  # validators take digits only
        "",
        "4111111111111111111111",  # Luhn-valid Visa prefix, 22 digits
        "９４１１１１１１１１１１１１１１１",  # fullwidth: detect_pii converts these first
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
    "AT611904300234573201",
    "ES9121000418450200051332",
    "IT60X0542811101000000123456",
    "PL61109010140000071219812874",
    "SE4550000000058398257466",
    "IE29AIBK93115212345678",
    "FI2112345600000785",
    "DK5000400440116243",
    "PT50000201231234567890154",
    "BR1800360305000010009795493C1",
    "AE070331234567890123456",
    "RU0304452522540817810538091310419",
    "UA213223130000026007233566001",
    "QA58DOHB00001234567890ABCDEFG",
    "KW81CBKU0000000000001234560101",
    "LC55HEMM000100010012001200023015",
    "TR330006100519786457841326",
    "BE41539007547035",  # mod-97 holds; Belgium's own check digits (35) do not: still PII
]


@pytest.mark.parametrize("iban", IBANS)
def test_valid_ibans(iban: str) -> None:
    assert iban_valid(iban)


@pytest.mark.parametrize(
    ("country", "length"),
    [("DE", 22), ("GB", 22), ("NO", 15), ("FR", 27), ("MT", 31), ("RU", 33), ("LC", 32)],
)
def test_iban_lengths_come_from_the_registry(country: str, length: int) -> None:
    assert iban_length(country) == length


@pytest.mark.parametrize("country", ["XX", "US", "CN", "ZZ"])
def test_countries_without_iban(country: str) -> None:
    assert iban_length(country) is None


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
        # mod-97 holds, the BBAN does not have the country's structure:
        "GB25123412345698765432",  # GB bank code must be 4 letters
        "DE0537040044053201300A",  # DE account number is digits only
        "NL5312340417164300",  # NL bank code must be 4 letters
        "ES9121000418450200051333",  # last digit changed
        "AT61190430023457320",  # one character short for AT
        "IT60X05428111010000001234567",  # one character long for IT
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
        ("4930123456789", True),  # Germany
        ("819012345678", True),  # Japan, mobile
        ("6591234567", True),  # Singapore, 8 national digits
        ("85291234567", True),  # Hong Kong
        ("33123456789", True),  # France, 9 national digits
        ("3312345678", False),  # France never has 8 national digits
        ("21212345678", False),  # Morocco has 9 national digits, not 8
        ("2151234567", False),  # +215 is not assigned, though +212/+216 are
        ("12345678", False),  # +1 with a 7-digit local-only length
        ("10123456789", False),
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
