"""Our own recognizers for what NER models miss in records: identifiers, addresses, names after
honorifics and roles, ages, money, plus the usual pattern PII (dates, phones, e-mail, IBAN, cards,
IPs, URLs). Written from the formats' general shapes (UK/US/EU conventions), not from any data set.

Scores encode specificity: checksum-validated or keyword-anchored matches score 0.9-0.95 (above
spaCy's 0.85, so their types win when spans merge); generic shapes score 0.5-0.7.
"""

from __future__ import annotations

import re

from dpfusion_chains.core.detectors.gazetteers import COUNTRIES, NRP_TERMS, REGIONS
from dpfusion_chains.core.detectors.name_patterns import (  # noqa: F401  (re-exported for users and tests)
    NAME_ABOVE_ADDRESS,
    NAME_AS_SPEAKER,
    NAME_AS_VOCATIVE,
    NAME_AT_LINE_START,
    NAME_FIELD,
    NAME_RECOGNIZERS,
    NAMES_AFTER_CLOSING,
    NAMES_AFTER_PREPOSITIONS,
    NAMES_AFTER_ROLES,
    NAMES_AFTER_TITLES,
    NAMES_BEFORE_CUES,
    NAMES_BEFORE_VERB,
    NAMES_BEFORE_VERSUS,
    NAMES_IN_CAPTION,
)
from dpfusion_chains.core.detectors.recognizers import (
    DigitTokenRecognizer,
    KeywordValueRecognizer,
    PatternRecognizer,
    PrecedingPlaceRecognizer,
    Recognizer,
    TermsRecognizer,
)
from dpfusion_chains.core.detectors.validators import UNIT_SUFFIX, card, count_digits, iban, identifier, ipv4, ipv6, phone

# ----------------------------------------------------------------------------- shared pieces
MONTH = (
    r"(?:January|February|March|April|May|June|July|August|September|October|November|December"
    r"|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept|Sep|Oct|Nov|Dec)\.?"
)
_MONTH_ANYCASE = r"(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)"
DAY = r"(?:3[01]|[12]\d|0?[1-9])(?:st|nd|rd|th)?"
WEEKDAY = r"(?:(?:Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day|Mon|Tue|Tues|Wed|Thu|Thur|Thurs|Fri|Sat|Sun)\.?,?\s+"
YEAR = r"(?:19|20)\d{2}"
# Upper-case letters of the Latin script (`re` has no \p{Lu}): "Ó Briain", "Łódź", "Île".
UPPER = "A-Z" + "".join(c for c in map(chr, range(0xC0, 0x250)) if c.isupper())
NAME_WORD = rf"[{UPPER}][\w'’\-]*"  # a capitalised word

STREET_SUFFIXES = (
    "Street|St|Road|Rd|Lane|Ln|Avenue|Ave|Drive|Dr|Close|Court|Ct|Crescent|Cres|Way|Place|Pl|Terrace|Tce"
    "|Gardens|Gdns|Grove|Row|Square|Sq|Boulevard|Blvd|Parade|Mews|Hill|Walk|Rise|View|Vale|Green|Park"
    "|Highway|Hwy|Parkway|Pkwy|Circle|Cir|Trail|Path|Wharf|Quay|Embankment|Broadway|Alley|Passage"
    "|Causeway|Chase|Croft|Fold|Gate|Yard|End|Heights|Meadows?|Ridge|Loop|Bypass|Esplanade|Promenade"
)
_STREET = rf"(?:{NAME_WORD}\s+){{1,4}}(?:{STREET_SUFFIXES})\b(?:\s+(?:North|South|East|West|NW|NE|SW|SE|N|S|E|W)\b)?"
_UNIT = r"(?:(?:Flat|Apt\.?|Apartment|Unit|Suite|Ste\.?|Room|Floor)\s+[\w-]{1,5},?\s+)"
_HOUSE_NUMBER = r"\d{1,5}[A-Za-z]?(?:[-/]\d{1,5}[A-Za-z]?)?,?\s+"
UK_POSTCODE = r"(?:GIR ?0AA|[A-PR-UWYZ][A-HK-Y]?\d[A-Z\d]? ?\d[ABD-HJLNP-UW-Z]{2})"
US_STATES = (
    "AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ|NM|NY"
    "|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY"
)
_CITY = rf"(?:[{UPPER}][\w'’\-]+(?:[ \-](?:upon|on|under|le|en|sur|am|im|de|del)?[ \-]?[{UPPER}][\w'’\-]+){{0,2}})"


# ----------------------------------------------------------------------------- recognizers
# FAST_SCAN_NOTE: Python's `re` scans fast to the characters that can start a match only when the
# pattern opens with a plain character or class; a pattern opening with a look-behind is tried at
# every character of the page. So where a match must start with a digit (or "@", a space), that
# character comes first and the look-behind after it: "\d(?<![\d-]\d)..." means the same as
# "(?<![\d-])\d..." (the character before the first digit is no digit or hyphen), 2-7x faster.
# Where the first character varies, a look-ahead for the characters a match can start with
# ("(?=[A-Z\d])" for dates) is the next best thing: the rest is tried only there (~30% faster).
EMAIL = PatternRecognizer(
    "email",
    "EMAIL_ADDRESS",
    r"(?<![\w.+-])[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}(?![\w-])",
    # Unmistakable; Presidio's e-mail recognizer, which this one replaces, scores a valid one 1.0.
    1.0,
    word_anchor="@",  # tried only on the words holding an "@"
)
URL = PatternRecognizer(
    "url",
    "URL",
    r"(?<![\w@.])(?:(?:https?|ftp)://|www\.)[^\s<>\"')\]]+[^\s<>\"')\].,;:!?]"
    r"|(?<![\w@.\-/])(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+(?:com|org|net|edu|gov|io|info|biz|co\.uk|org\.uk|ac\.uk|nhs\.uk|gov\.uk|uk|de|fr|es|it|nl|eu|ca|au|in|ng|za|us|me|app|dev|health|law|bank)"
    r"(?:/[^\s<>\"')\]]*[^\s<>\"')\].,;:!?])?(?![\w@])",
    0.85,
    flags=re.IGNORECASE,
    word_anchor=r"(?i)://|www\.|\.[a-z]",  # every URL holds one: only the words holding one are tried
)
IP_ADDRESS = PatternRecognizer(
    "ip",
    "IP_ADDRESS",
    # First digit, then the look-behind (see FAST_SCAN_NOTE): "(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}".
    r"\d(?<![\d.]\d)\d{0,2}\.(?:\d{1,3}\.){2}\d{1,3}(?![\d.]|\.\d)",
    0.9,
    validate=ipv4,
)
IPV6 = PatternRecognizer(
    "ipv6",
    "IP_ADDRESS",
    r"(?<![\w:.])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w:])",
    0.85,
    validate=ipv6,
    # Two colons at least, one of them before a hex digit or another colon: only such words are tried.
    word_anchor=r":[0-9A-Fa-f:]",
)
IBAN = PatternRecognizer(
    "iban",
    "IBAN_CODE",
    r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?(?![A-Za-z0-9])",
    0.95,
    validate=iban,
)
CARD = PatternRecognizer(
    "card",
    "CREDIT_CARD",
    # "(?<![\d-])(?:\d{4}[ -]?){3}\d{1,7}|(?<![\d-])\d{4}[ -]?\d{6}[ -]?\d{5}", first digit taken out (FAST_SCAN_NOTE).
    r"\d(?<![\d-]\d)(?:\d{3}[ -]?(?:\d{4}[ -]?){2}\d{1,7}(?![\d-])|\d{3}[ -]?\d{6}[ -]?\d{5}(?![\d-]))",
    0.95,
    validate=card,
)
MASKED_CARD = PatternRecognizer(
    "masked_card",
    "ID",
    r"(?=[*xX•eElL])"  # FAST_SCAN_NOTE: what a match can start with
    r"(?P<masked>(?:[*xX•]{4}[ -]?){1,3}\d{4})\b|(?<![\w*])(?i:ending|ending in|ends in|last (?:four|4|three|3)(?: digits)?)[:\s]+(?P<last>\d{2,6})\b",
    0.85,
    groups={"masked": "ID", "last": "ID"},
)
PHONE = PatternRecognizer(
    "phone",
    "PHONE_NUMBER",
    # international (+44 / 0044), national trunk-0 (0113 496 0000, 07700 900123), and NANP formats
    r"(?=[+(\d])(?<![\w+/.-])(?:(?:\+|00)\d{1,3}[\s.-]?(?:\(0\)[\s.-]?)?(?:\(?\d{1,5}\)?[\s.-]?){1,4}\d{2,6}"
    r"|\(0?\d{2,5}\)[\s.-]?\d{3,4}[\s.-]?\d{3,4}"
    r"|0\d{2,5}[\s.-]?\d{3,4}[\s.-]?\d{2,4}"
    r"|\(?[2-9]\d{2}\)?[\s.-]\d{3}[\s.-]\d{4})"
    r"(?:\s?(?:ext\.?|x)\s?\d{1,5})?(?![\w/-])",
    0.85,
    validate=phone,
)
PHONE_AFTER_LABEL = KeywordValueRecognizer(
    "phone_after_label",
    "PHONE_NUMBER",
    ("tel", "telephone", "phone", "mobile", "mob", "cell", "fax", "contact number", "landline", "ph"),
    r"(\+?[\d(][\d\s().-]{5,20}\d)",
    0.9,
    connector=r"\.?(?:[ \t]*(?:no\.?|number|#))?[ \t]*[:\-]?[ \t]*",
    validate=phone,
)
DATE = PatternRecognizer(
    "date",
    "DATE_TIME",
    rf"(?=[A-Z\d])(?<![\w/.-])(?:{WEEKDAY})?(?:"
    rf"{DAY}(?:\s+of)?[\s-]+{MONTH}(?:,?[\s-]+(?:{YEAR}|'\d{{2}}))?"  # 3 March 2024, 3rd of March
    rf"|{MONTH}\s+{DAY}(?:,?\s+{YEAR})?"  # March 3, 2024
    rf"|{MONTH},?\s+{YEAR}"  # March 2024
    rf"|\d{{1,2}}-{_MONTH_ANYCASE}[a-z]*-(?:\d{{4}}|\d{{2}})"  # 03-MAR-2024
    rf"|{YEAR}[-/.](?:0?[1-9]|1[0-2])[-/.](?:3[01]|[12]\d|0?[1-9])(?:T\d{{2}}:\d{{2}}(?::\d{{2}})?(?:Z|[+-]\d{{2}}:?\d{{2}})?)?"
    rf"|(?:3[01]|[12]\d|0?[1-9])[/.-](?:3[01]|[12]\d|0?[1-9])[/.-](?:{YEAR}|\d{{2}})"  # 03/03/2024, 3.3.24
    rf")(?![\w/-])",
    0.9,
)
TIME = PatternRecognizer(
    "time",
    "DATE_TIME",
    r"(?=\d)(?<![\w:.])(?:(?:[01]?\d|2[0-3]):[0-5]\d(?::[0-5]\d)?(?:\s?(?i:am|pm|a\.m\.|p\.m\.|hrs|h)\b)?"
    r"|(?:[01]?\d|2[0-3])\.[0-5]\d\s?(?i:am|pm|a\.m\.|p\.m\.|hrs)"
    r"|(?:1[0-2]|0?[1-9])\s?(?i:am|pm|a\.m\.|p\.m\.)"
    r"|(?:[01]\d|2[0-3])[0-5]\d\s?(?i:hrs|hours|h)\b)",
    0.85,
)
AGE = PatternRecognizer(
    "age",
    "AGE",
    r"\b(\d{1,3})(?:[\s-]?(?i:years?|yrs?|yr)[\s-]?(?i:old|of age)\b|[\s-]?(?i:year|yr)-old\b)"
    r"|\b(\d{1,3})\s?(?i:y/o|y\.o\.|yo|yrs?\b)",
    0.9,
    groups={1: "AGE", 2: "AGE"},
    validate=lambda m: int(m) <= 125,
)
AGE_AFTER_KEYWORD = KeywordValueRecognizer(
    "age_after_keyword",
    "AGE",
    ("aged", "age", "ages", "at the age of", "age of", "aged about"),
    r"(\d{1,3})(?![\d/.:-])",
    0.9,
    connector=r"[ \t]*[:\-]?[ \t]*",
    validate=lambda m: int(m) <= 125,
)
MONEY = PatternRecognizer(
    "money",
    "MONEY",
    r"(?=[-£$€¥₹₦A-Z\d])(?:-\s?)?(?:[£$€¥₹₦]|\b(?:USD|GBP|EUR|CHF|JPY|CAD|AUD|NZD|INR|NGN|ZAR|SEK|NOK|DKK|PLN|CZK|HUF|BRL|MXN|CNY|HKD|SGD|AED|US\$|A\$|C\$)\s?)"
    # grouped (1,250 / 1.250 / 1 250) or plain (3269) digits, then cents
    r"\s?(?:\d{1,3}(?:[,.\u202f ]\d{3})+|\d+)(?:[.,]\d{1,2})?(?:\s?(?:k|m|bn|million|billion|thousand)\b)?"
    r"|\b(?:\d{1,3}(?:[,.\u202f]\d{3})+|\d+)(?:[.,]\d{1,2})?\s?(?:USD|GBP|EUR|CHF|JPY|CAD|AUD|INR|NGN|ZAR|PLN"
    r"|(?i:pounds?|dollars?|euros?|pence|cents?|rupees?|naira|yen|francs?|zlot(?:y|ys|ych)|rand|kronor|kroner))\b",
    0.9,
)
STREET_ADDRESS = PatternRecognizer(
    "street_address",
    "ADDRESS",
    # "Flat 2, 12 Elm Lane, Leeds": the street is ADDRESS, the town after it LOCATION.
    # The town must be followed by punctuation, a line end, a postcode/state or a lower-case word.
    rf"(?=[A-Z\d])(?P<street>\b{_UNIT}?{_HOUSE_NUMBER}{_STREET})(?:,[ \t]*(?P<city>{_CITY})(?=[ \t]*(?:[^\w \t]|$|{UK_POSTCODE}\b|\b(?:{US_STATES})\b|[a-z])))?",
    0.9,
    groups={"street": "ADDRESS", "city": "LOCATION"},
)
STREET_NAME = PatternRecognizer(
    "street_name",
    "ADDRESS",
    # A street without a house number ("lives on Elm Lane"); the unambiguous suffixes only.
    rf"(?=[{UPPER}])(?<![\w])(?:{NAME_WORD}\s+){{1,3}}(?:Street|Road|Lane|Avenue|Drive|Crescent|Terrace|Boulevard|Gardens|Grove|Mews|Close|Parade|Row|Square)\b",
    0.7,
    validate=lambda m: m.split()[0] not in {"The", "A", "An", "This", "That", "On", "In", "At", "Of", "Our", "His", "Her", "Their"},
)
FOREIGN_STREET = PatternRecognizer(
    "foreign_street",
    "ADDRESS",
    r"\b(?:Calle|Carrer|Rue|Via|Viale|Avenida|Rua|Piazza|Plaza|Praça|Strada|Ulica|ul\.|Boulevard|Chaussée|Allée|Impasse)\s+"
    r"(?:(?:de|del|della|di|da|do|dos|des|du|la|le|des)\s+)*[A-Z][\w'’\-]*(?:\s+[A-Z][\w'’\-]*){0,3}(?:,?\s+\d{1,5}[A-Za-z]?)?"
    r"|\b\d{1,5}[a-z]?,?\s+(?:rue|avenue|boulevard|chemin|place|allée)\s+(?:(?:de|du|des|la|le|l')\s*)*[A-Z][\w'’\-]*(?:\s+[A-Z][\w'’\-]*){0,3}"
    r"|\b[A-ZÄÖÜ][\wäöüß\-]*(?:straße|strasse|str\.|weg|gasse|platz|allee|ring|damm|laan|straat|gracht|plein|vej|gatan|gata|veien)\s+\d{1,5}[a-z]?\b",
    0.9,
)
PO_BOX = PatternRecognizer("po_box", "ADDRESS", r"\b(?:P\.?\s?O\.?\s?Box|Post Office Box|PO Box)\s+\d{1,7}\b", 0.9, flags=re.IGNORECASE)
_POSTCODES = (
    rf"\b(?P<code>{UK_POSTCODE})\b"
    r"|\b(?P<state>" + US_STATES + r")\s+(?P<zip>\d{5}(?:-\d{4})?)\b"
    r"|\b(?P<ca>[ABCEGHJ-NPRSTVXY]\d[ABCEGHJ-NPRSTV-Z] ?\d[ABCEGHJ-NPRSTV-Z]\d)\b"
    r"|\b(?P<zip4>\d{5}-\d{4})\b"
)
POSTCODE = PatternRecognizer(
    "postcode",
    "ADDRESS",
    _POSTCODES,
    0.9,
    groups={"code": "ADDRESS", "zip": "ADDRESS", "state": "LOCATION", "ca": "ADDRESS", "zip4": "ADDRESS"},
)
# "Springfield, IL": a town and a US state code (upper case, so "Smith, or" is not one).
US_CITY_STATE = PatternRecognizer(
    "us_city_state",
    "LOCATION",
    rf"(?P<city>{_CITY}),[ \t]+(?P<state>(?:{US_STATES}))(?![\w])",
    0.85,
    groups={"city": "LOCATION", "state": "LOCATION"},
    validate=lambda m: m.split()[0] not in {"The", "A", "An", "In", "At", "On", "Of", "From", "To", "And"},
    line_anchor=rf",[ \t]+(?:{US_STATES})(?![\w])",  # only lines with ", <state>" are searched
)
# UK vehicle registrations ("AB12 CDE") and the digits after "number"/"no."/"#" ("collar number 5851").
# UK National Insurance numbers, spaced or not ("QQ 12 34 56 C").
# ("\b[A-Z]{2}...": the first letter comes before the word-start check, see FAST_SCAN_NOTE)
NINO = PatternRecognizer("nino", "ID", r"[A-Z](?<![\w][A-Z])[A-Z][ ]?\d{2}[ ]?\d{2}[ ]?\d{2}[ ]?[A-D]\b", 0.9)
# Social and payment-app handles ("@jane-roe82").
USERNAME = PatternRecognizer("username", "ID", r"@(?<![\w@.]@)\w(?:[\w.\-]{0,30}\w)?(?![\w@])", 0.85)  # FAST_SCAN_NOTE
VEHICLE_PLATE = PatternRecognizer("vehicle_plate", "ID", r"[A-Z](?<![\w][A-Z])[A-Z]\d{2}[ ]?[A-Z]{3}\b", 0.8)  # FAST_SCAN_NOTE
NUMBER_AFTER_CUE = PatternRecognizer(
    "number_after_cue",
    "ID",
    r"(?=[nN#])(?:\b(?i:number|no|nr|num)\b\.?|#)[ \t]*[:#]?[ \t]*(\d[\dA-Za-z/-]*\d)(?![\w-])",
    0.7,
    group=1,
    validate=lambda m: not UNIT_SUFFIX.match(m),
)
# "Jane Roe (54)": a bracketed number right after a word is, in records, nearly always an age.
AGE_IN_BRACKETS = PatternRecognizer("age_in_brackets", "AGE", r"[ \t](?<=[^\W\d_][ \t])\((\d{1,3})\)", 0.75, group=1)  # FAST_SCAN_NOTE
# Continental codes come before the town ("10115 Berlin"); a bare 4-5 digit number is too weak alone.
EU_POSTCODE = PatternRecognizer(
    "eu_postcode",
    "ADDRESS",
    r"(?<![\w,.-])(?P<code>\d{4,5}|[A-Z]{1,2}-\d{4,5})\s+(?P<town>[A-Z][a-zäöüéèàçñ]+(?:[\s-][A-Z][a-zäöüéèàçñ]+)?)(?=\s*(?:,|\.|\n|$))",
    0.85,
    groups={"code": "ADDRESS", "town": "LOCATION"},
)
_SENTENCE_WORDS = ("The", "A", "An", "In", "At", "On", "Of", "From", "To", "And", "Or", "Address", "Postcode", "Zip")
PLACE_BEFORE_POSTCODE = PrecedingPlaceRecognizer("place_before_postcode", _POSTCODES, score=0.85, skip=_SENTENCE_WORDS)
# A token of letters/digits, optionally joined by - / . _, that carries digits: record, badge,
# employee, case and account numbers ("ZX-99120", "443-21", "A1234567", "2023/0456").
GENERIC_ID = DigitTokenRecognizer("alphanumeric_id", "ID", identifier, 0.65)
ID_KEYWORDS = (
    r"mrn", r"medical record", r"hospital", r"nhs", r"chi", r"patient", r"record", r"case", r"claim", r"policy", r"member(?:ship)?",
    r"insurance", r"badge", r"employee", r"staff", r"payroll", r"account", r"acct", r"a/c", r"customer", r"client", r"reference",
    r"ref", r"invoice", r"order", r"ticket", r"application", r"appl", r"docket", r"file", r"folio", r"licen[cs]e", r"passport",
    r"national insurance", r"ni", r"nino", r"ssn", r"social security", r"tax", r"tin", r"utr", r"vat", r"registration", r"reg",
    r"vehicle", r"booking", r"transaction", r"student", r"pupil", r"prescription", r"rx", r"specimen", r"lab", r"sample", r"bed",
    r"ward", r"room", r"cell", r"prisoner", r"inmate", r"warrant", r"charge", r"complaint", r"incident", r"crime", r"exhibit",
    r"matter", r"serial", r"id", r"identifier", r"badge", r"employee id", r"staff id", r"roll",
)
# The value after an identifier keyword, even short or space-grouped ("MRN 443-21", "NHS No. 943 476 5919").
ID_AFTER_KEYWORD = KeywordValueRecognizer(
    "id_after_keyword",
    "ID",
    ID_KEYWORDS,
    r"([A-Za-z0-9](?:[A-Za-z0-9/._-]|[ ](?=[A-Z0-9]*\d[A-Z0-9]*(?![\w])))*[A-Za-z0-9])(?![\w-])",
    0.9,
    validate=lambda m: count_digits(m) >= 2 or (len(m) >= 6 and m.isupper() and m.isalpha()),
)
# Places after verbs of living and moving: "born on 2/9/40 in Leicester", "a resident of Leeds".
PLACE_AFTER_CUE = PatternRecognizer(
    "place_after_cue",
    "LOCATION",
    r"\b(?i:born|raised|grew up|lives|living|lived|resides|residing|resident|based|located|moved|relocated|travell?ed|arrived|came"
    r"|returned|deported|removed|fled|native|citizen|originally)\b[^.\n]{0,40}?\b(?:in|to|from|at|of)[ \t]+"
    rf"(?P<place>{_CITY})",
    0.7,
    groups={"place": "LOCATION"},
    validate=lambda m: m.split()[0] not in {"The", "A", "An", "This", "That", "His", "Her", "Their", "Our", "My", "January", "February",
                                            "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"},
)
COUNTRY = TermsRecognizer("country", "LOCATION", COUNTRIES, 0.85)
REGION = TermsRecognizer("region", "LOCATION", REGIONS, 0.8)
NRP = TermsRecognizer("nrp", "NRP", NRP_TERMS, 0.85)
PLACE_AFTER_PREPOSITION = PatternRecognizer(
    "named_place",
    "LOCATION",
    # "City of Leeds", "County Durham", "Borough of Camden": administrative places.
    r"\b(?:City|County|Borough|District|Province|State|Municipality|Town|Village|Parish|Region|Prefecture|Canton)\s+of\s+(?:the\s+)?[A-Z][\w'’\-]*(?:\s+[A-Z][\w'’\-]*){0,2}"
    r"|\b(?:County|Lake|Mount|Port|Fort)\s+[A-Z][\w'’\-]+",
    0.8,
)

CORE_RECOGNIZERS: tuple[Recognizer, ...] = (
    EMAIL, URL, IP_ADDRESS, IPV6, IBAN, CARD, MASKED_CARD, PHONE, PHONE_AFTER_LABEL, DATE, TIME, AGE, AGE_AFTER_KEYWORD, MONEY,
    STREET_ADDRESS, STREET_NAME, FOREIGN_STREET, PO_BOX, POSTCODE, EU_POSTCODE, PLACE_BEFORE_POSTCODE, US_CITY_STATE,
    VEHICLE_PLATE, NUMBER_AFTER_CUE, AGE_IN_BRACKETS, NINO, USERNAME, GENERIC_ID, ID_AFTER_KEYWORD,
    PLACE_AFTER_CUE, COUNTRY, REGION, NRP, PLACE_AFTER_PREPOSITION, *NAME_RECOGNIZERS,
)
