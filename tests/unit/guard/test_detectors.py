"""detect_pii: what each detector finds (exact spans), what it must not find, overlaps."""

from __future__ import annotations

import pytest

from workers.guard.detectors import Finding, detect_pii, resolve_overlaps


def found(text: str) -> list[tuple[str, str]]:
    return [(f.type, text[f.start : f.end]) for f in detect_pii(text)]


# Secret-shaped test values are assembled at run time so the source holds no token literal.
AWS = "AKIA" + "IOSFODNN7EXAMPLE"
GITHUB = "ghp" + "_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
SLACK = "xoxb" + "-1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUv"
STRIPE = "sk" + "_live_" + "4eC39HqLyjWDarjtT1zdp7dc"
GOOGLE = "AIza" + "SyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY"
OPENAI = "sk" + "-proj-" + "T3BlbkFJq9x2LmVb7RtY8uN4pZk1WcQe"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ."
    "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n"
    "KUpRKfFLfRYC9AIKjbJTWit+CqvjWYzvQwECAwEAAQ==\n-----END RSA PRIVATE KEY-----"
)

POSITIVE = [
    ("write to jane.doe+news@mail.example.co.uk.", "EMAIL", "jane.doe+news@mail.example.co.uk"),
    ("邮箱li_wei88@qq.com谢谢", "EMAIL", "li_wei88@qq.com"),
    ("call +44 20 7946 0958 today", "PHONE", "+44 20 7946 0958"),
    ("call +44 (0)20 7946 0958", "PHONE", "+44 (0)20 7946 0958"),
    ("call +7 (0)495 123 45 67", "PHONE", "+7 (0)495 123 45 67"),
    ("+1 (212) 555-0100", "PHONE", "+1 (212) 555-0100"),
    ("+33.1.23.45.67.89", "PHONE", "+33.1.23.45.67.89"),
    ("+4930123456789", "PHONE", "+4930123456789"),
    ("手机13800138000请回电", "PHONE", "13800138000"),
    ("tel +86 139 1234 5678", "PHONE", "+86 139 1234 5678"),
    ("tel 0086-13912345678", "PHONE", "0086-13912345678"),
    ("tel 139-1234-5678", "PHONE", "139-1234-5678"),
    ("电话：+8613800138000。", "PHONE", "+8613800138000"),
    ("微信 +86-138-0013-8000 联系", "PHONE", "+86-138-0013-8000"),
    ("请拨打138 0013 8000谢谢", "PHONE", "138 0013 8000"),
    ("手机号 0086 159 1234 5678", "PHONE", "0086 159 1234 5678"),
    ("call +81 90-1234-5678", "PHONE", "+81 90-1234-5678"),
    ("Tel. +49 (30) 1234 5678", "PHONE", "+49 (30) 1234 5678"),
    ("mobile +91 98765 43210.", "PHONE", "+91 98765 43210"),
    ("+852 9123 4567 (office)", "PHONE", "+852 9123 4567"),
    ("text +971 50 123 4567", "PHONE", "+971 50 123 4567"),
    ("+7 916 123-45-67", "PHONE", "+7 916 123-45-67"),
    ("office (212) 555-0100 ext", "PHONE", "(212) 555-0100"),
    ("office 212-555-0100.", "PHONE", "212-555-0100"),
    ("office 212.555.0100", "PHONE", "212.555.0100"),
    ("toll free 1-800-555-0199", "PHONE", "1-800-555-0199"),
    ("card 4111 1111 1111 1111 exp", "CARD", "4111 1111 1111 1111"),
    ("card 4111-1111-1111-1111", "CARD", "4111-1111-1111-1111"),
    ("card 5500005555555559", "CARD", "5500005555555559"),
    ("amex 3782 822463 10005", "CARD", "3782 822463 10005"),
    ("银联卡6212345678900000003。", "CARD", "6212345678900000003"),
    ("IBAN DE89 3704 0044 0532 0130 00 please", "IBAN", "DE89 3704 0044 0532 0130 00"),
    ("IBAN: GB82WEST12345698765432.", "IBAN", "GB82WEST12345698765432"),
    ("BE68 5390 0754 7034 THEN", "IBAN", "BE68 5390 0754 7034"),
    ("NO93 8601 1117 947 is it", "IBAN", "NO93 8601 1117 947"),
    ("Konto AT61 1904 3002 3457 3201", "IBAN", "AT61 1904 3002 3457 3201"),
    ("IBAN IT60X0542811101000000123456 ok", "IBAN", "IT60X0542811101000000123456"),
    ("MT84 MALT 0110 0001 2345 MTLC AST0 01S", "IBAN", "MT84 MALT 0110 0001 2345 MTLC AST0 01S"),
    ("身份证号11010519491231002X。", "CN_ID", "11010519491231002X"),
    ("id 440304199001011233", "CN_ID", "440304199001011233"),
    ("SSN 123-45-6789.", "US_SSN", "123-45-6789"),
    ("SSN 123 45 6789", "US_SSN", "123 45 6789"),
    ("host 203.0.113.7:8080", "IP_ADDRESS", "203.0.113.7"),
    ("server at 10.0.0.12.", "IP_ADDRESS", "10.0.0.12"),
    ("v6 2001:db8:85a3::8a2e:370:7334 up", "IP_ADDRESS", "2001:db8:85a3::8a2e:370:7334"),
    ("link fe80::1ff:fe23:4567:890a", "IP_ADDRESS", "fe80::1ff:fe23:4567:890a"),
    ("IPv6:2001:db8::1", "IP_ADDRESS", "2001:db8::1"),
    ("mapped ::ffff:192.0.2.128", "IP_ADDRESS", "::ffff:192.0.2.128"),
    (
        "full 2001:0db8:0000:0000:0000:ff00:0042:8329",
        "IP_ADDRESS",
        "2001:0db8:0000:0000:0000:ff00:0042:8329",
    ),
    (f"key {AWS} here", "SECRET", AWS),
    (f"token {GITHUB}", "SECRET", GITHUB),
    (f"slack: {SLACK}", "SECRET", SLACK),
    (f"stripe {STRIPE}.", "SECRET", STRIPE),
    (f"maps key={GOOGLE}", "SECRET", GOOGLE),
    (f"export OPENAI_KEY={OPENAI}", "SECRET", OPENAI),
    (f"Authorization: Bearer {JWT}", "SECRET", JWT),
    (f"here:\n{PEM}\nbye", "SECRET", PEM),
    ('api_key = "q7Vx2LmP9sKd4TzW"', "SECRET", "q7Vx2LmP9sKd4TzW"),
    ("password: Summer2024!x.", "SECRET", "Summer2024!x"),
    ('{"client_secret": "Zk9-pQ2rT8vX4yB6nM1c"}', "SECRET", "Zk9-pQ2rT8vX4yB6nM1c"),
]


@pytest.mark.parametrize(("text", "kind", "span"), POSITIVE)
def test_detects(text: str, kind: str, span: str) -> None:
    assert found(text) == [(kind, span)]


def test_truncated_private_key_is_masked_to_the_end() -> None:
    text = "key:\n-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC"
    assert found(text) == [("SECRET", text[5:])]


NEGATIVE = [
    "Good morning, how are you?",
    "The ENIAC was developed in 1946; the moon is 250,000 miles away.",
    "I've lost about $200.00 so far today, and 1,234,567 people agree.",
    "Order 4829301847 shipped; tracking 1Z999AA10123456784.",  # bare 10 digits: never a phone
    "call 5551234567 or 555 123 4567",  # bare / space-only NANP: out of scope
    "0044 20 7946 0958",  # 00-prefixed: out of scope
    "+12345678 views and +28 1234 5678",  # +1 needs 11 digits; +28 unassigned
    "+33 1234 5678 and +215 123 4567",  # no French number has 8 digits; +215 unassigned
    "+1 123 456 7890",  # NANP area codes start with 2-9
    "12800138000 and 11012345678",  # no Chinese mobile starts 12 or 11
    "(055) 123-4567 and 055-123-4567",  # NANP area codes start with 2-9
    "4111 1111 1111 1112",  # Luhn fails
    "6212 3456 7890 0000 004",  # Luhn fails
    "1234 5678 9012 3456",  # Luhn fails
    "DE88 3704 0044 0532 0130 00",  # mod-97 fails
    "GB25 1234 1234 5698 7654 32",  # mod-97 holds, but a GB bank code is 4 letters
    "NO93 8601 1117 9471",  # NO IBANs have 15 characters
    "110105194912310021",  # CN ID check character wrong
    "000-12-3456 and 666-12-3456 and 123-00-4567",  # SSN rules
    "dates 2024-03-05 and 12/31/1999, time 10:30:45",
    "version 1.2.3.4 and release 10.0.0.1 and 1.2.3.4.5 and 256.1.1.1 and 01.02.03.04",
    "localhost 127.0.0.1, any 0.0.0.0, broadcast 255.255.255.255, loopback ::1",
    "slicing s[::-1], a[1::2], b[::2] and std::vector, Foo::Bar",
    "MAC 00:1A:2B:3C:4D:5E and 12:34:56:78:90:ab:cd:ef:01",
    "user @ example . com and me@localhost and a..b@x.com",
    'SECRET_KEY = "your-secret-key"; api_key = os.getenv("API_KEY")',
    "token = config.API_TOKEN; password: hunter2; token: <YOUR_TOKEN>",
    "sk-learn is not a key, and neither is task-123 or sk-aaaaaaaaaaaaaaaaaaaaaaaa",
    "the AKIA prefix alone, AKIAshort, eyJhbGciOi.no.jwt",
    "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkq\n-----END PUBLIC KEY-----",
]


@pytest.mark.parametrize("text", NEGATIVE)
def test_does_not_detect(text: str) -> None:
    assert found(text) == []


def test_cn_id_is_not_also_a_phone_or_card() -> None:
    assert found("ID 11010519491231002X") == [("CN_ID", "11010519491231002X")]


def test_card_is_not_also_a_phone() -> None:
    assert found("+4111111111111111") == [("CARD", "4111111111111111")]


def test_phone_inside_email_is_the_email() -> None:
    assert found("13800138000@qq.com") == [("EMAIL", "13800138000@qq.com")]


def test_several_findings_sorted_by_start() -> None:
    text = f"ip 10.1.2.3, mail a@b.io, card 4111111111111111, key {AWS}"
    kinds = [f.type for f in detect_pii(text)]
    assert kinds == ["IP_ADDRESS", "EMAIL", "CARD", "SECRET"]
    starts = [f.start for f in detect_pii(text)]
    assert starts == sorted(starts)


def test_every_finding_says_which_detector_and_why() -> None:
    for f in detect_pii(f"a@b.io +44 20 7946 0958 4111111111111111 {AWS} 123-45-6789"):
        assert f.detector and f.why
        assert "4111" not in f.why and "7946" not in f.why  # reasons never quote the value


def test_fullwidth_digits() -> None:
    assert found("电话１３８００１３８０００") == [("PHONE", "１３８００１３８０００")]


def test_resolve_overlaps_longest_then_most_specific() -> None:
    a = Finding("PHONE", 0, 11, "p", "")
    b = Finding("CARD", 0, 16, "c", "")
    c = Finding("TERM", 14, 20, "t", "")
    d = Finding("CN_ID", 30, 48, "i", "")
    e = Finding("CARD", 30, 48, "c", "")
    f = Finding("EMAIL", 20, 25, "e", "")
    assert resolve_overlaps([a, b, c, d, e, f]) == [b, f, d]
    assert resolve_overlaps([]) == []
