"""Recognizers that only some profiles switch on: health (MRN, NHS-style numbers, care facilities),
legal (case/application numbers, neutral citations, courts, firms) and finance (SWIFT/BIC, sort
codes, account numbers, banks and employers)."""

from __future__ import annotations

from dpfusion_chains.core.detectors.patterns import UPPER
from dpfusion_chains.core.detectors.recognizers import KeywordValueRecognizer, PatternRecognizer, Recognizer

_CAP = rf"[{UPPER}][\w'’\-]*"
_S = r"[ \t]+"  # names do not run across lines
# Up to five words before a head noun: a capitalised word or particle first, then also "St", "of",
# "the", "&" ("Royal Infirmary of Edinburgh", "St Mary's", "van der Berg & Co.").
_PARTICLE = r"van|von|de|der|den|di|da|le|la|du|del|della|al|el|des|dos|do|Ó|Ní|Mac|Mc"
_LEAD = rf"(?:(?:{_CAP}|St\.?|{_PARTICLE}){_S}(?:(?:{_CAP}|St\.?|&|and|of|the|on|upon|{_PARTICLE}){_S}){{0,4}})?"
_TAIL = rf"(?:{_S}(?:of|for|at|in|on){_S}(?:the{_S})?{_CAP}(?:{_S}(?:{_CAP}|and|&|of|the)){{0,4}})?"
# "(Civil Division)", "(Immigration and Asylum Chamber)" after a court's name.
_PAREN = r"(?:[ \t]*\((?:[A-Z][\w'’\-]*[ \t]+(?:and[ \t]+)?){0,4}(?:Division|Chamber|Bench|List|Court|Registry)\))?"
# The town after a named place: "Westbury Surgery, Leeds." (LOCATION, same line, then punctuation).
_PLACE = r"(?:,[ \t]+(?P<place>[A-Z][\w'’\-]+(?:[ \-][A-Z][\w'’\-]+){0,2})(?=[ \t]*(?:[.,;:)|\n]|$)))?"
_PLACE_GROUPS = {"org": "ORGANIZATION", "place": "LOCATION"}
_CONNECTORS = ("and", "And", "of", "the", "The", "on", "upon", "&", "at", "in")


def _org_pattern(heads: str, *, head_first: str = "", paren: bool = False) -> str:
    """`<Capitalised words> <head> [of|for|at <Place>]`, or `<head> of|for|at <Name>`, then an optional
    town. ``head_first`` adds forms like "University Hospital Southampton"."""
    extra = _PAREN if paren else ""
    alternatives = [
        rf"{_LEAD}(?:{_CAP}{_S}|St\.?{_S})(?:{heads})\b{_TAIL}{extra}",
        rf"(?:The{_S})?(?:{heads}){_S}(?:of|for|at){_S}(?:the{_S})?{_CAP}(?:{_S}(?:{_CAP}|and|&)){{0,4}}{extra}",
    ]
    if head_first:
        # First, so "University Hospital Leeds" is not cut to "University Hospital".
        alternatives.insert(0, rf"(?:{head_first}){_S}(?:of{_S})?{_CAP}(?:{_S}{_CAP})?")
    return rf"(?<![\w])(?P<org>{'|'.join(alternatives)}){_PLACE}"


def _strip_article(match: str) -> bool:
    # A bare head noun ("Hospital", after "The" was stripped) or "The/Our Hospital" is not a name.
    words = match.split()
    return len(words) >= 2 and not (len(words) == 2 and words[0] in {"The", "A", "An", "This", "That", "Our", "Their", "His", "Her"})


def _nhs_number(match: str) -> tuple[str, float]:
    digits = [int(c) for c in match if c.isdigit()]
    if len(digits) != 10:
        return ("ID", 0.6)
    total = sum(d * w for d, w in zip(digits[:9], range(10, 1, -1), strict=True))
    check = 11 - total % 11
    check = 0 if check == 11 else check
    return ("ID", 0.95) if check == digits[9] else ("ID", 0.6)


# ----------------------------------------------------------------------------- health
_HEALTH_HEADS = (
    r"Hospitals?|Infirmary|Clinic|Medical Cent(?:re|er)|Health Cent(?:re|er)|Surgery|Medical Practice|Practice"
    r"|Hospice|Care Home|Nursing Home|Health Board|NHS Trust|NHS Foundation Trust|Foundation Trust|Trust"
    r"|Pharmacy|Dental Practice|Laboratories|Laboratory|Imaging Cent(?:re|er)|Rehabilitation Cent(?:re|er)"
    r"|Children's Hospital|Maternity Unit|Walk-in Cent(?:re|er)|Polyclinic|Sanatorium|Medical Group|Health System"
)
_HEALTH_HEADS_FIRST = r"University Hospitals?|University Medical Cent(?:re|er)|Clinique|Klinikum|Hôpital|Hospital Universitario"
HEALTH_FACILITY = PatternRecognizer(
    "health_facility",
    "ORGANIZATION",
    _org_pattern(_HEALTH_HEADS, head_first=_HEALTH_HEADS_FIRST),
    0.9,
    groups=_PLACE_GROUPS,
    validate=_strip_article,
    strip_leading=_CONNECTORS,
    # Every match names one of its heads and stays on its line: only those lines are searched.
    line_anchor=f"{_HEALTH_HEADS}|{_HEALTH_HEADS_FIRST}",
)
MRN = KeywordValueRecognizer(
    "mrn",
    "ID",
    (r"mrn", r"medical record", r"hospital", r"unit", r"patient", r"chart", r"chi", r"case note", r"casenote"),
    r"([A-Z]{0,4}[-/ ]?\d(?:[\d/-]|[ ](?=\d))*\d|\d)(?![\w-])",
    0.95,
)
NHS_NUMBER = PatternRecognizer(
    "nhs_number",
    "ID",
    # "(?<![\d-])\d{3}[ -]?\d{3}[ -]?\d{4}", the first digit before the look-behind (patterns.FAST_SCAN_NOTE)
    r"\d(?<![\d-]\d)\d{2}[ -]?\d{3}[ -]?\d{4}(?![\d-])",
    0.6,
    validate=_nhs_number,
)
INSURANCE_ID = KeywordValueRecognizer(
    "insurance_id",
    "ID",
    (r"insurance", r"insurer", r"policy", r"member", r"medicare", r"medicaid", r"subscriber", r"group", r"plan"),
    r"([A-Z0-9][A-Za-z0-9-]{3,20})(?![\w-])",
    0.9,
    validate=lambda m: any(c.isdigit() for c in m),
)

# ----------------------------------------------------------------------------- legal
_COURT_KINDS = (
    r"Crown|County|High|Supreme|District|Magistrates['’]?|Family|Circuit|Federal|Superior|Municipal|Probate|Juvenile|Youth"
    r"|Bankruptcy|Coroner['’]?s|Employment|Administrative|Tax|Immigration|Land|Sheriff|Small Claims|Civil|Criminal|Commercial"
    r"|Appeals?|Appellate|Constitutional|Regional|Labour|Labor|Housing|Property|Mental Health|First-tier|Upper|Central Criminal"
)
COURT = PatternRecognizer(
    "court",
    "ORGANIZATION",
    rf"(?<![\w])(?P<org>{_LEAD}(?:{_COURT_KINDS}){_S}(?:Court|Tribunal)s?(?:{_S}(?:Division|Chamber))?{_TAIL}{_PAREN}"
    rf"|Court of (?:Appeal|Session|Justice|Protection|Chancery|Claims|Cassation|First Instance|Appeals){_TAIL}{_PAREN}"
    r"|(?:Old Bailey|Chancery Division|King['’]s Bench Division|Queen['’]s Bench Division|Family Division|Business and Property Courts)"
    rf"|(?:Immigration and Asylum|Employment Appeal|Social Entitlement|Property) (?:Chamber|Tribunal)){_PLACE}",
    0.92,
    groups=_PLACE_GROUPS,
    strip_leading=_CONNECTORS,
    line_anchor=r"Court|Tribunal|Bailey|Division|Chamber",  # one of these is in every match
)
_FIRM_SUFFIXES = r"LLP|Solicitors|Chambers|Attorneys(?: at Law)?|Law Firm|Law Group|Legal Services|Legal|Law|& Partners|& Co\.?|Advocates|Notaries"
LAW_FIRM = PatternRecognizer(
    "law_firm",
    "ORGANIZATION",
    rf"(?<![\w])(?P<org>(?:(?:{_PARTICLE})[ \t]+)*(?:{_CAP}(?:[ \t]+(?:&|and)[ \t]+|,[ \t]+|[ \t]+)(?:(?:{_PARTICLE})[ \t]+)*){{1,4}}"
    rf"(?:{_FIRM_SUFFIXES})(?![\w]))" + _PLACE,
    0.9,
    groups=_PLACE_GROUPS,
    validate=_strip_article,
    strip_leading=_CONNECTORS,
    line_anchor=_FIRM_SUFFIXES,
)
# Any company by its legal-form suffix: parties in case files, employers in records and statements.
_COMPANY_SUFFIXES = (
    r"Ltd\.?|Limited|LLC|L\.L\.C\.|Inc\.?|Incorporated|PLC|plc|GmbH|S\.A\.|S\.p\.A\.|SARL|AG|BV|B\.V\.|N\.V\.|Pty(?: Ltd)?|Corp\.?"
    r"|Corporation|Group|Holdings|& Co\.?|Company|& Sons|& Daughters|Partners|Associates|Enterprises|Industries"
)
COMPANY = PatternRecognizer(
    "company",
    "ORGANIZATION",
    rf"(?<![\w])(?P<org>{_LEAD}(?:{_CAP}|St\.?)(?:[ \t]+|[ \t]*&[ \t]*)(?:{_COMPANY_SUFFIXES})(?![\w]))" + _PLACE,
    0.88,
    groups=_PLACE_GROUPS,
    validate=_strip_article,
    strip_leading=_CONNECTORS,
    line_anchor=_COMPANY_SUFFIXES,
)

CASE_NUMBER = KeywordValueRecognizer(
    "case_number",
    "ID",
    (r"case", r"claim", r"appeal", r"application", r"complaint", r"matter", r"docket", r"file", r"indictment", r"petition",
     r"action", r"proceedings", r"charge", r"warrant", r"cause", r"index", r"court ref", r"our ref", r"your ref", r"nos?"),
    r"((?:[A-Z]{1,6}[-/ ]?)?\d[A-Za-z0-9]*(?:[-/:.][A-Za-z0-9]*\d?[A-Za-z0-9]*|[ ](?=[A-Z0-9]*\d))*(?:[-/][A-Z]{1,4})?)(?![\w-])",
    0.92,
    connector=r"\.?(?:[ \t]*(?:numbers?|nos?|ref|reference|#)(?![\w])\.?)?[ \t]*[:#]?[ \t]*",
)
NEUTRAL_CITATION = PatternRecognizer(
    "neutral_citation",
    "ID",
    # "[2021] EWHC 1234 (QB)", "[2019] UKSC 12", "(2020) 3 SCC 45"
    r"[\[(](?:19|20)\d{2}[\])]\s+(?:\d+\s+)?[A-Z][A-Za-z]{1,7}(?:\s+(?:Civ|Crim|Admin|Fam|Ch|Comm|Pat|IPEC|TCC|KB|QB))?\s+\d{1,6}(?:\s+\([A-Za-z]{1,8}\))?",
    0.92,
)
BAR_NUMBER = KeywordValueRecognizer(
    "bar_number",
    "ID",
    (r"bar", r"sra", r"barrister", r"solicitor", r"attorney", r"registration", r"roll", r"practising certificate"),
    r"([A-Z0-9][A-Z0-9-]{2,14})(?![\w-])",
    0.9,
    validate=lambda m: any(c.isdigit() for c in m),
)

# ----------------------------------------------------------------------------- finance
_ISO_COUNTRY = (
    "AD|AE|AL|AR|AT|AU|BA|BE|BG|BH|BR|CA|CH|CL|CN|CO|CY|CZ|DE|DK|EE|EG|ES|FI|FR|GB|GE|GR|HK|HR|HU|ID|IE|IL|IN|IS|IT"
    "|JO|JP|KE|KR|KW|KZ|LB|LI|LT|LU|LV|MA|MC|MT|MU|MX|MY|NG|NL|NO|NZ|PE|PH|PK|PL|PT|QA|RO|RS|RU|SA|SE|SG|SI|SK|TH|TN"
    "|TR|TW|UA|US|VN|ZA"
)
SWIFT_BIC = KeywordValueRecognizer(
    "swift_bic",
    "ID",
    (r"swift", r"bic", r"swift/bic", r"bic/swift", r"swift code", r"bic code"),
    rf"([A-Z]{{4}}(?:{_ISO_COUNTRY})[A-Z0-9]{{2}}(?:[A-Z0-9]{{3}})?)\b",
    0.92,
    connector=r"[ \t]*(?:code)?[ \t]*[:#]?[ \t]*",
)
# Without a keyword the shape is also an ordinary upper-case word, so a digit is required.
SWIFT_WITH_DIGIT = PatternRecognizer(
    "swift_with_digit",
    "ID",
    # "\b[A-Z]{4}...", the first letter before the word-start check (patterns.FAST_SCAN_NOTE)
    rf"[A-Z](?<![\w][A-Z])[A-Z]{{3}}(?:{_ISO_COUNTRY})(?=[A-Z0-9]{{0,4}}\d)[A-Z0-9]{{2}}(?:[A-Z0-9]{{3}})?\b",
    0.85,
)
SORT_CODE = KeywordValueRecognizer(
    "sort_code",
    "ID",
    (r"sort code", r"sorting code", r"sort-code", r"s/c", r"bsb", r"routing number", r"aba"),
    r"(\d{2}[- ]?\d{2}[- ]?\d{2}(?:\d{3})?)(?![\w-])",
    0.92,
    connector=r"[ \t]*[:#]?[ \t]*",
)
# "(?<![\d-])\d{2}-\d{2}-\d{2}", the first digit before the look-behind (patterns.FAST_SCAN_NOTE)
SORT_CODE_SHAPE = PatternRecognizer("sort_code_shape", "ID", r"\d(?<![\d-]\d)\d-\d{2}-\d{2}(?![\d-])", 0.85)
ACCOUNT_NUMBER = KeywordValueRecognizer(
    "account_number",
    "ID",
    (r"account", r"acct", r"a/c", r"customer", r"member", r"loan", r"mortgage", r"card", r"reference", r"ref",
     r"transaction", r"txn", r"cheque", r"check", r"payment", r"iban", r"ending", r"ending in", r"last four"),
    r"([*xX•]*\d(?:[\d-]|[ ](?=\d))*\d|[*xX•]*\d{2,})(?![\w-])",
    0.92,
    connector=r"\.?(?:[ \t]*(?:number|no|num|#|id)(?![\w])\.?)?[ \t]*(?:ending(?:[ \t]+in)?)?[ \t]*[:#]?[ \t]*",
)
_FINANCE_HEADS = (
    r"Bank|Banking Group|Building Society|Credit Union|Bancorp|Savings and Loan|Trust Company|Insurance|Assurance"
    r"|Capital|Investments|Securities|Asset Management|Wealth Management|Financial|Finance|Lending|Mortgages|Payments"
    r"|Mutual|Savings Bank|Savings|Logistics|Consulting|Solutions|Systems|Technologies|Engineering|Healthcare|Retail"
)
_FINANCE_HEADS_FIRST = r"Bank of|Banco|Banque|Caisse|Sparkasse|Credit Union of"
FINANCE_ORG = PatternRecognizer(
    "finance_org",
    "ORGANIZATION",
    _org_pattern(_FINANCE_HEADS, head_first=_FINANCE_HEADS_FIRST),
    0.88,
    groups=_PLACE_GROUPS,
    validate=_strip_article,
    strip_leading=_CONNECTORS,
    line_anchor=f"{_FINANCE_HEADS}|{_FINANCE_HEADS_FIRST}",
)
EMPLOYER_AFTER_CUE = KeywordValueRecognizer(
    "employer_after_cue",
    "ORGANIZATION",
    # Salary and employment lines name the employer: "Salary from Northwind Traders", "employed by X".
    (r"salary", r"wages", r"payroll", r"pay", r"employed by", r"employed at", r"employer", r"works for", r"works at", r"bacs credit"),
    rf"({_CAP}(?:[ \t]+(?:{_CAP}|&|and|of)){{0,4}})",
    0.85,
    connector=r"[ \t]*(?:from|-|:|–)?[ \t]*",
    validate=lambda m: m.split()[0] not in {"The", "A", "An", "Ltd", "Monthly", "Weekly", "Net", "Gross", "Received"},
)

HEALTH_RECOGNIZERS: tuple[Recognizer, ...] = (HEALTH_FACILITY, COMPANY, MRN, NHS_NUMBER, INSURANCE_ID)
LEGAL_RECOGNIZERS: tuple[Recognizer, ...] = (COURT, LAW_FIRM, COMPANY, CASE_NUMBER, NEUTRAL_CITATION, BAR_NUMBER)
FINANCE_RECOGNIZERS: tuple[Recognizer, ...] = (
    SWIFT_BIC, SWIFT_WITH_DIGIT, SORT_CODE, SORT_CODE_SHAPE, ACCOUNT_NUMBER, FINANCE_ORG, COMPANY, EMPLOYER_AFTER_CUE,
)

RECOGNIZER_SETS: dict[str, tuple[Recognizer, ...]] = {
    "health": HEALTH_RECOGNIZERS,
    "legal": LEGAL_RECOGNIZERS,
    "finance": FINANCE_RECOGNIZERS,
}

