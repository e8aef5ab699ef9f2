"""Recognizers that only some profiles switch on: health (MRN, NHS-style numbers, care facilities),
legal (case/application numbers, neutral citations, courts, firms) and finance (SWIFT/BIC, sort
codes, account numbers, banks and employers)."""

from __future__ import annotations

from dpfusion_chains.core.detectors.recognizers import PatternRecognizer, Recognizer

_CAP = r"[A-Z][\w'’\-]*"
# Up to five capitalised words (with "St", "of", "the", "&" inside) before a head noun.
_LEAD = rf"(?:(?:{_CAP}|St\.?|&|and|of|the|on|upon|de|la|du)\s+){{0,5}}"
_TAIL = rf"(?:\s+(?:of|for|at|in|on)\s+(?:the\s+)?{_CAP}(?:\s+(?:{_CAP}|and|&|of|the)){{0,4}})?"


def _org_pattern(heads: str) -> str:
    return rf"(?<![\w])(?:{_LEAD}(?:{_CAP}\s+|St\.?\s+)(?:{heads})\b{_TAIL}|(?:The\s+)?(?:{heads})\s+(?:of|for|at)\s+(?:the\s+)?{_CAP}(?:\s+(?:{_CAP}|and|&)){{0,4}})"


def _strip_article(match: str) -> bool:
    # "The" alone before a head noun ("The Hospital") is not a name.
    words = match.split()
    return not (len(words) <= 2 and words[0] in {"The", "A", "An", "This", "That", "Our", "Their", "His", "Her"})


def _nhs_number(match: str) -> tuple[str, float]:
    digits = [int(c) for c in match if c.isdigit()]
    if len(digits) != 10:
        return ("ID", 0.6)
    total = sum(d * w for d, w in zip(digits[:9], range(10, 1, -1), strict=True))
    check = 11 - total % 11
    check = 0 if check == 11 else check
    return ("ID", 0.95) if check == digits[9] else ("ID", 0.6)


# ----------------------------------------------------------------------------- health
HEALTH_FACILITY = PatternRecognizer(
    "health_facility",
    "ORGANIZATION",
    _org_pattern(
        r"Hospitals?|Infirmary|Clinic|Medical Cent(?:re|er)|Health Cent(?:re|er)|Surgery|Medical Practice|Practice"
        r"|Hospice|Care Home|Nursing Home|Health Board|NHS Trust|NHS Foundation Trust|Foundation Trust|Trust"
        r"|Pharmacy|Dental Practice|Laboratories|Laboratory|Imaging Cent(?:re|er)|Rehabilitation Cent(?:re|er)"
        r"|Children's Hospital|Maternity Unit|Walk-in Cent(?:re|er)|Polyclinic|Sanatorium|Medical Group|Health System"
    ),
    0.9,
    validate=_strip_article,
)
MRN = PatternRecognizer(
    "mrn",
    "ID",
    r"(?i:\b(?:MRN|medical record(?:\s+(?:number|no))?|hospital (?:number|no)|unit (?:number|no)|patient (?:id|number|no)|chart(?:\s+(?:number|no))?|CHI)\b\.?\s*(?:[:#=]|is)?\s*)"
    r"([A-Z]{0,4}[-/ ]?\d[\d\-/ ]{1,14}\d|\d)\b",
    0.95,
    group=1,
)
NHS_NUMBER = PatternRecognizer(
    "nhs_number",
    "ID",
    r"(?<![\d-])\d{3}[ -]?\d{3}[ -]?\d{4}(?![\d-])",
    0.6,
    validate=_nhs_number,
)
INSURANCE_ID = PatternRecognizer(
    "insurance_id",
    "ID",
    r"(?i:\b(?:insurance|insurer|policy|member|medicare|medicaid|subscriber|group)\s+(?:id|number|no|#)\.?\s*[:#]?\s*)([A-Z0-9][A-Z0-9-]{3,20})\b",
    0.9,
    group=1,
)

# ----------------------------------------------------------------------------- legal
COURT = PatternRecognizer(
    "court",
    "ORGANIZATION",
    r"(?<![\w])(?:"
    + _LEAD
    + r"(?:Crown|County|High|Supreme|District|Magistrates['’]?|Family|Circuit|Federal|Superior|Municipal|Probate|Juvenile|Youth"
    r"|Bankruptcy|Coroner['’]?s|Employment|Administrative|Tax|Immigration|Land|Sheriff|Small Claims|Civil|Criminal|Commercial"
    r"|Appeals?|Appellate|Constitutional|Regional|Labour|Labor|Housing|Property|Mental Health|First-tier|Upper|Central Criminal)"
    r"\s+(?:Court|Tribunal)s?(?:\s+(?:Division|Chamber))?" + _TAIL
    + r"|Court of (?:Appeal|Session|Justice|Protection|Chancery|Claims|Cassation|First Instance|Appeals)" + _TAIL
    + r"|(?:Old Bailey|Chancery Division|King['’]s Bench Division|Queen['’]s Bench Division|Family Division|Business and Property Courts)"
    + r"|(?:Immigration and Asylum|Employment Appeal|Social Entitlement|Property) (?:Chamber|Tribunal)"
    + r")",
    0.92,
)
LAW_FIRM = PatternRecognizer(
    "law_firm",
    "ORGANIZATION",
    rf"(?<![\w])(?:{_CAP}(?:\s+(?:&|and)\s+|,\s+|\s+)){{1,4}}(?:LLP|Solicitors|Chambers|Attorneys(?: at Law)?|Law Firm|Law Group|Legal Services|& Partners|& Co\.?|Advocates|Notaries)\b",
    0.9,
    validate=_strip_article,
)
CASE_NUMBER = PatternRecognizer(
    "case_number",
    "ID",
    r"(?i:\b(?:case|claim|appeal|application|complaint|matter|docket|file|indictment|petition|action|proceedings|charge|warrant|cause|index)"
    r"\s*(?:number|no|nos|ref|reference|#)?\.?\s*[:#]?\s*)"
    r"((?:[A-Z]{1,6}[-/ ]?)?\d[\w]*(?:[-/:. ][A-Z0-9]*\d[A-Z0-9]*)*(?:[-/][A-Z]{1,4})?)",
    0.92,
    group=1,
)
NEUTRAL_CITATION = PatternRecognizer(
    "neutral_citation",
    "ID",
    # "[2021] EWHC 1234 (QB)", "[2019] UKSC 12", "(2020) 3 SCC 45"
    r"[\[(](?:19|20)\d{2}[\])]\s+(?:\d+\s+)?[A-Z][A-Za-z]{1,7}(?:\s+(?:Civ|Crim|Admin|Fam|Ch|Comm|Pat|IPEC|TCC|KB|QB))?\s+\d{1,6}(?:\s+\([A-Za-z]{1,8}\))?",
    0.92,
)
BAR_NUMBER = PatternRecognizer(
    "bar_number",
    "ID",
    r"(?i:\b(?:bar|SRA|barrister|solicitor|attorney|registration|roll)\s+(?:no|number|id|#)\.?\s*[:#]?\s*)([A-Z0-9][A-Z0-9-]{2,14})\b",
    0.9,
    group=1,
    validate=lambda m: any(c.isdigit() for c in m),
)

# ----------------------------------------------------------------------------- finance
_ISO_COUNTRY = (
    "AD|AE|AL|AR|AT|AU|BA|BE|BG|BH|BR|CA|CH|CL|CN|CO|CY|CZ|DE|DK|EE|EG|ES|FI|FR|GB|GE|GR|HK|HR|HU|ID|IE|IL|IN|IS|IT"
    "|JO|JP|KE|KR|KW|KZ|LB|LI|LT|LU|LV|MA|MC|MT|MU|MX|MY|NG|NL|NO|NZ|PE|PH|PK|PL|PT|QA|RO|RS|RU|SA|SE|SG|SI|SK|TH|TN"
    "|TR|TW|UA|US|VN|ZA"
)
SWIFT_BIC = PatternRecognizer(
    "swift_bic",
    "ID",
    # 4-letter bank, ISO country, 2-char location, optional 3-char branch. Without a digit the shape
    # is also an ordinary upper-case word, so then the "SWIFT"/"BIC" keyword is required.
    rf"(?i:\b(?:SWIFT|BIC|SWIFT/BIC|BIC/SWIFT)(?:\s+code)?\s*[:#]?\s*)(?-i:([A-Z]{{4}}(?:{_ISO_COUNTRY})[A-Z0-9]{{2}}(?:[A-Z0-9]{{3}})?))\b"
    rf"|\b([A-Z]{{4}}(?:{_ISO_COUNTRY})(?=[A-Z0-9]{{0,4}}\d)[A-Z0-9]{{2}}(?:[A-Z0-9]{{3}})?)\b",
    0.9,
    groups={1: "ID", 2: "ID"},
)
SORT_CODE = PatternRecognizer(
    "sort_code",
    "ID",
    r"(?i:\bsort(?:ing)?\s*code\s*[:#]?\s*)(\d{2}[- ]?\d{2}[- ]?\d{2})\b|(?<![\d-])(\d{2}-\d{2}-\d{2})(?![\d-])",
    0.92,
    groups={1: "ID", 2: "ID"},
)
ACCOUNT_NUMBER = PatternRecognizer(
    "account_number",
    "ID",
    r"(?i:\b(?:account|acct|a/c|routing|ABA|customer|member|loan|mortgage|card|reference|ref|transaction|txn|cheque|check|payment|BSB)"
    r"\s*(?:number|no|num|#|id)?\.?\s*(?:ending(?:\s+in)?)?\s*[:#]?\s*)([*xX•]*\d[\d -]{2,22}\d|\d{2,})\b",
    0.92,
    group=1,
)
FINANCE_ORG = PatternRecognizer(
    "finance_org",
    "ORGANIZATION",
    _org_pattern(
        r"Bank|Banking Group|Building Society|Credit Union|Bancorp|Savings and Loan|Trust Company|Insurance|Assurance"
        r"|Capital|Investments|Securities|Asset Management|Wealth Management|Financial|Finance|Lending|Mortgages|Payments"
        r"|Ltd\.?|Limited|LLC|L\.L\.C\.|Inc\.?|PLC|plc|GmbH|S\.A\.|SA|AG|BV|B\.V\.|Pty|Corp\.?|Corporation|Group|Holdings|Co\.|Company"
        r"|Partners|Associates|Enterprises|Industries|Logistics|Consulting|Solutions|Systems|Technologies"
    ),
    0.88,
    validate=_strip_article,
)
EMPLOYER_AFTER_CUE = PatternRecognizer(
    "employer_after_cue",
    "ORGANIZATION",
    # Salary and employment lines name the employer: "Salary from Northwind Traders", "employed by X".
    rf"(?i:\b(?:salary|wages|payroll|pay)\s+(?:from|-|:)\s*|\bemployed (?:by|at)\s+|\bemployer\s*[:\-]?\s*|\bworks (?:for|at)\s+)((?-i:{_CAP}(?:\s+(?:{_CAP}|&|and|of)){{0,4}}))",
    0.85,
    group=1,
)

HEALTH_RECOGNIZERS: tuple[Recognizer, ...] = (HEALTH_FACILITY, MRN, NHS_NUMBER, INSURANCE_ID)
LEGAL_RECOGNIZERS: tuple[Recognizer, ...] = (COURT, LAW_FIRM, CASE_NUMBER, NEUTRAL_CITATION, BAR_NUMBER)
FINANCE_RECOGNIZERS: tuple[Recognizer, ...] = (SWIFT_BIC, SORT_CODE, ACCOUNT_NUMBER, FINANCE_ORG, EMPLOYER_AFTER_CUE)

RECOGNIZER_SETS: dict[str, tuple[Recognizer, ...]] = {
    "health": HEALTH_RECOGNIZERS,
    "legal": LEGAL_RECOGNIZERS,
    "finance": FINANCE_RECOGNIZERS,
}

