"""Checks the pattern recognizers (core.detectors.patterns) run on a match: checksums (Luhn for
cards, mod-97 for IBANs), address parsing for IPs, and the shapes that tell phone numbers and
identifiers from dates, quantities and words."""

from __future__ import annotations

import ipaddress
import re


def count_digits(text: str) -> int:
    return sum(map(str.isdigit, text))


def luhn_ok(number: str) -> bool:
    digits = [int(c) for c in number if c.isdigit()]
    checksum = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        checksum += d
    return checksum % 10 == 0


def card(match: str) -> tuple[str, float]:
    # A Luhn-valid 13-19 digit number is a card; other long digit runs are still identifiers.
    return ("CREDIT_CARD", 0.95) if luhn_ok(match) else ("ID", 0.6)


def iban_ok(value: str) -> bool:
    compact = re.sub(r"\s", "", value).upper()
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(c, 36)) for c in rearranged)
    return int(number) % 97 == 1


def iban(match: str) -> tuple[str, float]:
    return ("IBAN_CODE", 0.95) if iban_ok(match) else ("ID", 0.6)


DATE_LIKE = re.compile(r"^(?:\d{1,4}[/.\-]\d{1,2}[/.\-]\d{1,4})$")


def phone(match: str) -> bool:
    digits = count_digits(match)
    if not 7 <= digits <= 15:
        return False
    return not DATE_LIKE.match(match.strip())


UNIT_SUFFIX = re.compile(
    r"^\d+(?:[.,]\d+)?(?:mg|mcg|ug|g|kg|ml|l|mmol|mmhg|cm|mm|km|m|iu|bpm|hrs?|h|mins?|am|pm|st|nd|rd|th|s|x|kcal|mph|kph|gb|mb|kb)$",
    re.IGNORECASE,
)
ALL_DIGITS = re.compile(r"\d+")
DECIMAL = re.compile(r"\d+[.,]\d+")


def identifier(match: str) -> bool:
    """An alphanumeric token is an identifier if it carries enough digits to number things."""
    # (map over str methods and precompiled patterns: this runs for every digit-bearing token)
    digits = count_digits(match)
    letters = sum(map(str.isalpha, match))
    if UNIT_SUFFIX.match(match):
        return False
    if letters == 0:
        # Pure numbers: 5+ digits, or digit groups joined by separators ("443-21"); a lone
        # 4-digit number is most likely a year or a quantity.
        if ALL_DIGITS.fullmatch(match):
            return digits >= 5
        return digits >= 4 and not DECIMAL.fullmatch(match)
    # Mixed tokens: 3+ digits ("A1234567"), or 2 digits in an all-caps code ("AB12CD"); words with
    # lower-case parts and few digits ("54-year-old", "HbA1c") are not. Recall-first, an all-caps
    # term such as "COVID-19" is taken as a code.
    return digits >= 3 or (digits >= 2 and len(match) >= 4 and not any(map(str.islower, match)))


def ipv6(match: str) -> bool:
    # Times ("14:30:00") have the shape too; the address parser decides.
    if match.count(":") < 2 or ("::" not in match and match.count(":") != 7):
        return False
    try:
        ipaddress.IPv6Address(match)
    except ValueError:
        return False
    return True


def ipv4(match: str) -> bool:
    return all(0 <= int(part) <= 255 for part in match.split("."))


__all__ = ["ALL_DIGITS", "DATE_LIKE", "DECIMAL", "UNIT_SUFFIX", "card", "count_digits", "iban", "iban_ok", "identifier",
           "ipv4", "ipv6", "luhn_ok", "phone"]
