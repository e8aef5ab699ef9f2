"""The fixed vocabulary of entity types every built-in detector emits.

Typed placeholders (`[PERSON]`, `[DATE_TIME]`, ...) and the `entity_type` grouping read these
names, so detectors map whatever their backend calls a thing (Presidio's `US_SSN`, spaCy's `GPE`,
a token classifier's `B-PER`) onto this list. User recognizers and deny-list terms may add
their own type names; those pass through unchanged.
"""

from __future__ import annotations

from dpfusion_chains.core.detect import WHOLE_SEGMENT_TYPE

ENTITY_TYPES: dict[str, str] = {
    "PERSON": "a person's name (given names, surnames, initials)",
    "NRP": "nationality, religious or political group",
    "LOCATION": "a city, region, country or named place",
    "ADDRESS": "a street address, PO box or postcode",
    "ORGANIZATION": "a named hospital, court, firm, employer or bank (only in profiles that ask for it)",
    "DATE_TIME": "a date, month-and-year, or clock time",
    "AGE": "a person's age",
    "PHONE_NUMBER": "a telephone or fax number",
    "EMAIL_ADDRESS": "an e-mail address",
    "URL": "a web address",
    "IP_ADDRESS": "an IPv4 or IPv6 address",
    "ID": "an identifier: record/MRN/NHS/badge/employee/case/account/policy/passport numbers, sort codes, SWIFT codes",
    "MONEY": "an exact amount of money",
    "IBAN_CODE": "an International Bank Account Number",
    "CREDIT_CARD": "a payment card number",
    WHOLE_SEGMENT_TYPE: "a whole private segment, or a deny-list term without a type",
}

# Presidio (and its NER mapping) entity names -> ours. Anything country-specific that is a
# number becomes ID: for the public view, what matters is that it is an identifier.
PRESIDIO_TO_VOCAB: dict[str, str] = {
    "PERSON": "PERSON",
    "NRP": "NRP",
    "LOCATION": "LOCATION",
    "ORGANIZATION": "ORGANIZATION",
    "DATE_TIME": "DATE_TIME",
    "AGE": "AGE",
    "PHONE_NUMBER": "PHONE_NUMBER",
    "EMAIL_ADDRESS": "EMAIL_ADDRESS",
    "URL": "URL",
    "IP_ADDRESS": "IP_ADDRESS",
    "IBAN_CODE": "IBAN_CODE",
    "CREDIT_CARD": "CREDIT_CARD",
    "MONEY": "MONEY",
    "ID": "ID",
    "CRYPTO": "ID",
    "MAC_ADDRESS": "ID",
    "UUID": "ID",
    "MEDICAL_LICENSE": "ID",
    "US_SSN": "ID",
    "US_ITIN": "ID",
    "US_PASSPORT": "ID",
    "US_BANK_NUMBER": "ID",
    "US_DRIVER_LICENSE": "ID",
    "UK_NHS": "ID",
    "UK_NINO": "ID",
}

# Labels a token-classification model commonly uses (CoNLL, OntoNotes, i2b2-style) -> ours.
TAGGER_TO_VOCAB: dict[str, str] = {
    "PER": "PERSON",
    "PERSON": "PERSON",
    "PATIENT": "PERSON",
    "DOCTOR": "PERSON",
    "STAFF": "PERSON",
    "HCW": "PERSON",
    "NAME": "PERSON",
    "LOC": "LOCATION",
    "GPE": "LOCATION",
    "FAC": "LOCATION",
    "LOCATION": "LOCATION",
    "CITY": "LOCATION",
    "COUNTRY": "LOCATION",
    "STREET": "ADDRESS",
    "ADDRESS": "ADDRESS",
    "ZIP": "ADDRESS",
    "ORG": "ORGANIZATION",
    "ORGANIZATION": "ORGANIZATION",
    "HOSPITAL": "ORGANIZATION",
    "NORP": "NRP",
    "NRP": "NRP",
    "DATE": "DATE_TIME",
    "TIME": "DATE_TIME",
    "AGE": "AGE",
    "PHONE": "PHONE_NUMBER",
    "FAX": "PHONE_NUMBER",
    "EMAIL": "EMAIL_ADDRESS",
    "URL": "URL",
    "IP": "IP_ADDRESS",
    "ID": "ID",
    "IDNUM": "ID",
    "MEDICALRECORD": "ID",
    "MONEY": "MONEY",
}


def to_vocab(label: str, mapping: dict[str, str] = PRESIDIO_TO_VOCAB) -> str:
    """Our type for a backend label; unknown labels are kept (a user's own type)."""
    return mapping.get(label.upper(), label.upper())
