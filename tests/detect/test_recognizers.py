"""Each of our recognizers on small texts: what it must find, and what it must leave alone."""

from __future__ import annotations

import pytest

from dpfusion_chains.core.detectors import domain_patterns as D
from dpfusion_chains.core.detectors import patterns as P
from dpfusion_chains.core.detectors.recognizers import KeywordValueRecognizer, PatternRecognizer, TermsRecognizer


def found(recognizer, text: str) -> list[tuple[str, str]]:
    return [(text[s.start : s.end], s.entity_type) for s in recognizer.find(text)]


def texts(recognizer, text: str) -> list[str]:
    return [t for t, _ in found(recognizer, text)]


# ----------------------------------------------------------------------------- names
@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Seen by Dr Amara Okonkwo today.", "Amara Okonkwo"),
        ("Mrs. Beatriz Doherty is 80.", "Beatriz Doherty"),
        ("Applicant: Mr Tomás de la Cruz (Spanish national)", "Tomás de la Cruz"),
        ("Before HHJ Whitfield;", "Whitfield"),
        ("Before: Mrs Justice García", "García"),
        ("Dr. J. R. Okafor-Nwosu signed", "J. R. Okafor-Nwosu"),
        ("PC O'Neill attended", "O'Neill"),
    ],
)
def test_names_after_titles(text: str, name: str) -> None:
    assert name in texts(P.NAMES_AFTER_TITLES, text)


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Patient Jane Roe, MRN 443-21", "Jane Roe"),
        ("the defendant, Tom Lee, denied it", "Tom Lee"),
        ("Employee: Wei Zhang", "Wei Zhang"),
        ("Name: ROE, Jane\nDOB: 1 May 1970", "ROE, Jane"),
        ("Next of kin: Anders Haugen (husband)", "Anders Haugen"),
        ("Borrowers: Yusuf Obi and Ana Ng", "Yusuf Obi"),
        ("Client Jamal Nakamura called", "Jamal Nakamura"),
    ],
)
def test_names_after_roles(text: str, name: str) -> None:
    assert name in texts(P.NAMES_AFTER_ROLES, text)


def test_role_followed_by_field_word_or_question_is_not_a_name() -> None:
    assert texts(P.NAMES_AFTER_ROLES, "Patient ID: 443-21. Client Services will call.") == []
    assert texts(P.NAMES_AFTER_ROLES, "Agent: Can you confirm your name?") == []
    # a plural role is a heading only before a colon ("Smith Solicitors. Home Office" is not one)
    assert texts(P.NAMES_AFTER_ROLES, "of Bianchi Solicitors. Home Office reference") == []


def test_names_after_prepositions_need_two_capitalised_words() -> None:
    assert texts(P.NAMES_AFTER_PREPOSITIONS, "She was assessed by Folake Ní Bhriain and given fluids.") == ["Folake Ní Bhriain"]
    assert texts(P.NAMES_AFTER_PREPOSITIONS, "He was reviewed by Smith.") == []  # one word: too weak alone
    assert texts(P.NAMES_AFTER_PREPOSITIONS, "admitted to Emergency Department") == []  # common words


def test_month_words_are_names_only_before_a_name() -> None:
    assert texts(P.NAMES_AFTER_PREPOSITIONS, "Follow-up with Jun Oyelaran at noon") == ["Jun Oyelaran"]
    assert texts(P.NAMES_AFTER_PREPOSITIONS, "Follow-up in June 2024") == []


def test_names_before_cues() -> None:
    text = "Between: Lukas Nowak (Claimant) and Jun van der Berg, Plaintiff. Anders Ng, a 40 y/o man. Layla Eze (age 75). Ana Ruiz, solicitor, of X"
    names = texts(P.NAMES_BEFORE_CUES, text)
    assert {"Lukas Nowak", "Jun van der Berg", "Anders Ng", "Layla Eze", "Ana Ruiz"} <= set(names)


def test_names_in_letters_chats_captions_and_address_blocks() -> None:
    assert texts(P.NAMES_AFTER_CLOSING, "Yours sincerely,\nValentina Bianchi") == ["Valentina Bianchi"]
    assert texts(P.NAME_AS_SPEAKER, "[10:42] Amina: hi there") == ["Amina"]
    caption = "14:00  21AB00042  ADEBAYO v DE VRIES  (costs)"
    assert set(texts(P.NAMES_IN_CAPTION, caption)) | set(texts(P.NAMES_BEFORE_VERSUS, caption)) >= {"ADEBAYO", "DE VRIES"}
    assert texts(P.NAME_ABOVE_ADDRESS, "Bank of Fairfield\nArjun Reddy\n74 Tannery Terrace\nDenver") == ["Arjun Reddy"]
    assert texts(P.NAME_AT_LINE_START, "DISCHARGE SUMMARY\nEwa Obi | NHS 413 696 5486") == ["Ewa Obi"]
    assert texts(P.NAME_FIELD, "Name on file: Bilal Eriksson\n") == ["Bilal Eriksson"]
    assert texts(P.NAME_AS_VOCATIVE, "\nOrla, further to our call") == ["Orla"]
    assert texts(P.NAME_AS_VOCATIVE, "\nHowever, we disagree") == []


# ----------------------------------------------------------------------------- identifiers
@pytest.mark.parametrize("value", ["ZX-99120", "443-21", "A1234567", "2023/0456", "EMP-20431", "99120", "AB12CD"])
def test_generic_identifier(value: str) -> None:
    assert texts(P.GENERIC_ID, f"Ref {value} noted.") == [value]


@pytest.mark.parametrize("text", ["500mg twice daily", "in 2019 we", "type 2 diabetes", "a 54-year-old", "x@a1234.com", "12.5 ml", "HbA1c 48"])
def test_generic_identifier_leaves_quantities_years_and_words(text: str) -> None:
    assert texts(P.GENERIC_ID, text) == []


def test_identifier_after_keyword_keeps_short_and_spaced_values() -> None:
    assert texts(P.ID_AFTER_KEYWORD, "MRN 443-21; NHS No. 943 476 5919 was checked") == ["443-21", "943 476 5919"]
    assert texts(P.ID_AFTER_KEYWORD, "badge number 4471 and Patient ID is stable") == ["4471"]


def test_domain_identifiers() -> None:
    assert texts(D.MRN, "Hospital No. H8812034") == ["H8812034"]
    assert found(D.NHS_NUMBER, "NHS 943 476 5919") == [("943 476 5919", "ID")]
    assert [s.score for s in D.NHS_NUMBER.find("943 476 5918")] == [0.6]  # bad check digit: weaker, still found
    assert texts(D.CASE_NUMBER, "Case No. 2023-CV-01234 and Application no. 41237/19") == ["2023-CV-01234", "41237/19"]
    assert texts(D.NEUTRAL_CITATION, "see [2021] EWHC 1234 (QB) and [2019] UKSC 12.") == ["[2021] EWHC 1234 (QB)", "[2019] UKSC 12"]
    assert texts(D.SORT_CODE, "sort code 40 12 76") == ["40 12 76"]
    assert texts(D.SWIFT_BIC, "BIC: DEUTDEFF") == ["DEUTDEFF"]
    assert texts(D.SWIFT_WITH_DIGIT, "HOSPITAL and DEUTDEFF") == []  # letters-only needs the keyword
    assert texts(D.ACCOUNT_NUMBER, "Checking account ****1234") == ["****1234"]
    assert texts(P.VEHICLE_PLATE, "registration HB78 CIZ") == ["HB78 CIZ"]
    assert texts(P.NINO, "NI number QQ 12 34 56 C") == ["QQ 12 34 56 C"]
    assert texts(P.USERNAME, "paid @jane-roe82 and mailed a@b.com") == ["@jane-roe82"]
    assert texts(P.NUMBER_AFTER_CUE, "collar number 5851, Check #1234") == ["5851", "1234"]
    assert texts(P.MASKED_CARD, "card ending 4821, **** **** **** 1234") == ["4821", "**** **** **** 1234"]


# ----------------------------------------------------------------------------- contact, payment, network
def test_email_and_url() -> None:
    text = "Write to jane.roe@example.com or see www.example.org/portal. Also https://x.example.com/a?b=1."
    assert found(P.EMAIL, text) == [("jane.roe@example.com", "EMAIL_ADDRESS")]
    assert texts(P.URL, text) == ["www.example.org/portal", "https://x.example.com/a?b=1"]


@pytest.mark.parametrize("phone", ["+44 113 496 0000", "0161 496 0123", "(555) 123-4567", "+1 312 555 0142", "07700 900123", "+49 30 90182034"])
def test_phones(phone: str) -> None:
    assert texts(P.PHONE, f"Call {phone} today") == [phone]


def test_phone_is_not_a_date_or_short_number() -> None:
    assert texts(P.PHONE, "on 2024-03-03 and 12/04/2023, room 12 345") == []


def test_ip_addresses() -> None:
    assert texts(P.IP_ADDRESS, "from 192.168.1.20 and 999.1.1.1") == ["192.168.1.20"]
    assert texts(P.IPV6, "from 2001:db8:236c::8d at 14:30:00") == ["2001:db8:236c::8d"]


def test_iban_and_cards_use_check_digits() -> None:
    assert found(P.IBAN, "IBAN GB82 WEST 1234 5698 7654 32") == [("GB82 WEST 1234 5698 7654 32", "IBAN_CODE")]
    assert found(P.IBAN, "IBAN GB83 WEST 1234 5698 7654 32") == [("GB83 WEST 1234 5698 7654 32", "ID")]
    assert found(P.CARD, "card 4111 1111 1111 1111") == [("4111 1111 1111 1111", "CREDIT_CARD")]
    assert found(P.CARD, "card 4111 1111 1111 1112") == [("4111 1111 1111 1112", "ID")]


@pytest.mark.parametrize("amount", ["£1,250.00", "$3,400", "€980.50", "EUR 2,500.00", "1,250 GBP", "4,500 pounds", "-£45.20", "£3269", "USD 40"])
def test_money(amount: str) -> None:
    assert texts(P.MONEY, f"paid {amount} today") == [amount.lstrip()]


def test_ages() -> None:
    text = "aged 54; a 61-year-old; 70 years old; Age: 33; 45 y/o; Layla Eze (75)"
    spans = texts(P.AGE, text) + texts(P.AGE_AFTER_KEYWORD, text) + texts(P.AGE_IN_BRACKETS, text)
    assert sorted(spans) == sorted(["54", "61", "70", "33", "45", "75"])
    assert texts(P.AGE_AFTER_KEYWORD, "age 300") == []


@pytest.mark.parametrize(
    "date",
    ["3 March 2024", "March 3, 2024", "3rd of March 2024", "03/03/2024", "2024-03-03", "03.03.2024", "03-MAR-2024", "Monday 4 March 2024", "March 2024", "4/3/24"],
)
def test_dates(date: str) -> None:
    assert texts(P.DATE, f"seen on {date}.") == [date]


def test_times_and_non_dates() -> None:
    assert texts(P.TIME, "at 14:30, 9.15 am, 2pm and 1430 hrs") == ["14:30", "9.15 am", "2pm", "1430 hrs"]
    assert texts(P.DATE, "May I help? 12.5 mg") == []


# ----------------------------------------------------------------------------- places and organisations
def test_addresses_and_towns() -> None:
    text = "Home address: Flat 2, 12 Elm Lane, Leeds LS1 4AB. Lives on Baker Street."
    spans = found(P.STREET_ADDRESS, text) + found(P.POSTCODE, text) + found(P.PLACE_BEFORE_POSTCODE, text) + found(P.STREET_NAME, text)
    assert ("Flat 2, 12 Elm Lane", "ADDRESS") in spans
    assert ("Leeds", "LOCATION") in spans
    assert ("LS1 4AB", "ADDRESS") in spans
    assert ("Baker Street", "ADDRESS") in spans


def test_us_and_continental_addresses() -> None:
    assert set(found(P.US_CITY_STATE, "a resident of Tucson, AZ, alleges")) == {("Tucson", "LOCATION"), ("AZ", "LOCATION")}
    assert ("IL", "LOCATION") in found(P.POSTCODE, "Chicago, IL 60614") and ("60614", "ADDRESS") in found(P.POSTCODE, "Chicago, IL 60614")
    assert texts(P.FOREIGN_STREET, "Hauptstraße 5 and Calle Mayor 12") == ["Hauptstraße 5", "Calle Mayor 12"]
    assert texts(P.PO_BOX, "PO Box 1234") == ["PO Box 1234"]
    assert ("Leicester", "LOCATION") in found(P.PLACE_AFTER_CUE, "born on 2/9/40 in Leicester.")


def test_gazetteers() -> None:
    assert found(P.NRP, "a Polish national, a practising Catholic") == [("Polish", "NRP"), ("Catholic", "NRP")]
    assert texts(P.COUNTRY, "flew from New Zealand to Chad") == ["New Zealand", "Chad"]
    assert texts(P.COUNTRY, "Chadwick") == []


def test_organisations() -> None:
    text = "at University Hospital Inverness, Marseille. Appeal to the Court of Appeal (Civil Division). Pay Ravenswood Retail LLC and MacLeod & Sons."
    orgs = found(D.HEALTH_FACILITY, text) + found(D.COURT, text) + found(D.COMPANY, text)
    assert ("University Hospital Inverness", "ORGANIZATION") in orgs
    assert ("Marseille", "LOCATION") in orgs
    assert ("Court of Appeal (Civil Division)", "ORGANIZATION") in orgs
    # Recall-first: a company pattern may take a capitalised word before the name or join two names
    # linked by "and"; what matters is that both names are covered.
    companies = [(text.index(t), text.index(t) + len(t)) for t, kind in orgs if kind == "ORGANIZATION"]
    for name in ("Ravenswood Retail LLC", "MacLeod & Sons"):
        start = text.index(name)
        assert any(a <= start and start + len(name) <= b for a, b in companies), name
    assert texts(D.LAW_FIRM, "instructed by van der Berg & Co. and Malhotra & Ó Briain LLP") == ["van der Berg & Co.", "Malhotra & Ó Briain LLP"]
    assert texts(D.HEALTH_FACILITY, "The Hospital was busy") == []


# ----------------------------------------------------------------------------- building blocks
def test_pattern_recognizer_groups_validation_and_retyping() -> None:
    # the validator judges spans of the recognizer's own type (WORD), not the other groups
    rec = PatternRecognizer("t", "WORD", r"(?P<a>\d+)-(?P<b>[a-z]+)", 0.5, groups={"a": "NUM", "b": "WORD"}, validate=lambda m: m != "bad")
    assert found(rec, "12-ab 34-bad 5-bad") == [("12", "NUM"), ("ab", "WORD"), ("34", "NUM"), ("5", "NUM")]
    retype = PatternRecognizer("t", "X", r"\d+", 0.5, validate=lambda m: ("BIG", 0.9) if len(m) > 2 else True)
    assert [(s.entity_type, s.score) for s in retype.find("1 123")] == [("X", 0.5), ("BIG", 0.9)]


def test_keyword_value_and_terms_recognizers() -> None:
    rec = KeywordValueRecognizer("k", "ID", ("locker",), r"([A-Z]\d+)", 0.8)
    assert texts(rec, "LOCKER no. B12 and locker: C7") == ["B12", "C7"]
    terms = TermsRecognizer("t", "PROJECT", ["Project Falcon", "Falcon"], ignore_case=True)
    assert texts(terms, "project falcon and FALCON, not Falconry") == ["project falcon", "FALCON"]
    with pytest.raises(ValueError):
        TermsRecognizer("t", "X", ["  "])


# ----------------------------------------------------------------------------- fast scanning, same matches
_SAMPLES = (
    "Patient: Jane Roe; patients: Ana and Tom. impatient Member(ship) 12 memberships, a/c 99. Licence no. L-12\n"
    "e-mail jane.roe@mail.example.org or j@x.io, see www.example.com/a?b=1. and http://localhost:8080/x; 1.2 e.g.\n"
    "Westbury Health Centre, Leeds. Bank of Brookside\nSmith & Partners LLP in\nLeeds. ab@cd ZX-99120 443-21 a١23 x.-ab-12"
)


def test_keyword_alternation_grouped_by_first_character_matches_the_plain_one() -> None:
    import re

    from dpfusion_chains.core.detectors.recognizers import _keyword_regex

    low = _SAMPLES.lower()
    for keywords in (("patient", "patients", "pt", "member(?:ship)?", "a/c", "licen[cs]e", "p"), ("x?y", "ab"), ("a|b", "c")):
        plain = re.compile(r"(?<![\w])(?:" + "|".join(sorted(keywords, key=len, reverse=True)) + r")(?![\w])")
        assert [m.span() for m in _keyword_regex(keywords).finditer(low)] == [m.span() for m in plain.finditer(low)], keywords


def test_word_and_line_anchors_give_the_same_matches() -> None:
    for recognizer in (P.EMAIL, P.URL, D.HEALTH_FACILITY, D.FINANCE_ORG, D.LAW_FIRM, D.COMPANY, D.COURT, P.US_CITY_STATE):
        plain = PatternRecognizer("plain", recognizer.entity_type, recognizer.regex.pattern, flags=recognizer.regex.flags)
        assert [m.span() for m in recognizer.matches(_SAMPLES)] == [m.span() for m in plain.matches(_SAMPLES)], recognizer.name
        assert recognizer.word_anchor is not None or recognizer.line_anchor is not None
    line = PatternRecognizer("l", "X", r"(?<![\w])[A-Z]\w+ LLP(?=\n)", line_anchor="LLP")
    assert texts(line, "Smith LLP\nJones LLP") == ["Smith LLP"]  # the look-ahead still sees the line end
    with pytest.raises(ValueError, match="not both"):
        PatternRecognizer("x", "X", "a", word_anchor="a", line_anchor="a")


def test_digit_tokens() -> None:
    rec = P.GENERIC_ID
    assert texts(rec, "ZX-99120, 443-21 and A1234567; 2023/0456") == ["ZX-99120", "443-21", "A1234567", "2023/0456"]
    # inside an e-mail, a path or a word, with non-ASCII digits, or a quantity: not an identifier
    assert texts(rec, "ab12345@x.org /files/12345/ a١2345 x12345é 54-year-old 5mg 2024") == []
