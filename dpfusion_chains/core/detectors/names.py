"""Person names from context, for the names a small NER model misses in records.

Cues, all language-independent about the name itself (no list of given names):
- after a title or a role: "Dr Amara Okonkwo", "Patient Jane Roe", "Name: ROE, Jane";
- after a preposition or verb that introduces a person: "assessed by X Y", "follow-up with X Y",
  "we act for X Y" (two or more capitalised words required there);
- before a role or an age: "X Y (Claimant)", "X Y, Plaintiff", "X Y, a 40 y/o", "X Y (age 75)";
- after a letter's closing ("Kind regards,\nX Y") and at the start of a form line ("X Y | NHS ...").
A name word starts with an upper-case letter of any script (checked in Python; `re` has no \\p{Lu}),
may contain apostrophes and hyphens (O'Neill, Okafor-Nwosu), may be an initial ("J."), and lower-case
particles (van, de, bin, ní) are accepted inside a name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from dpfusion_chains.core.detect import DetectedSpan
from dpfusion_chains.core.detectors.recognizers import _keyword_regex, lowered

_WORD = re.compile(r"[^\W\d_][^\W\d_'’\-]*(?:['’\-][^\W\d_]+)*\.?")
_GAP = re.compile(r"[ \t]{1,3}|[ \t]*,[ \t]*")
PARTICLES = frozenset(
    "de da das do dos du des del della di van von der den ter ten la le el al bin binti bint ibn ben ap y e ní nic ó mac".split()
)
# Capitalised words that start or continue phrases that are not names (headings, places, days...).
COMMON_CAPITALISED = frozenset(
    w.lower()
    for w in (
        "The A An And Or Of In On At To For With By From As Is Was Has Had Will Were Are Be Been He She They We I It His Her "
        "Their This That These Those Not No Yes None Our Your My Mr Mrs Ms Miss Mx Dr Prof Sir Dame Hon Judge Justice "
        "Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February March April May June July August "
        "September October November December Jan Feb Mar Apr Jun Jul Aug Sep Sept Oct Nov Dec Today Tomorrow Yesterday "
        "Hospital Infirmary Clinic Surgery Centre Center Practice Trust Court Tribunal Division Chamber Bank Society Union "
        "Street Road Lane Avenue Drive Way Place Square Department Dept Ward Unit Team Service Services Office Centre "
        "Emergency Accident Intensive Care Home House Summary Discharge Admission Statement Account Accounts Details "
        "Reference Ref Number No Record Records Name Names Date Address Phone Email Tel Mobile Fax Information Info "
        "Notes Note Report History Plan Assessment Diagnosis Impression Procedure Procedures Allergies Medication "
        "Medications Follow Follow-up Consent Signature Signed Form Agreement Order Judgment Decision Appeal Claim Case "
        "Claimant Defendant Applicant Respondent Appellant Plaintiff Petitioner Counsel Solicitor Solicitors Chambers "
        "Representative Witness Officer Charge Custody Vehicle Registration Bail Amount Balance Total Payment Purpose "
        "Beneficiary Ordering Customer Checking Savings Current Credit Debit Card Visa Mastercard Statement Period "
        "Description Closing Opening Brought Carried Forward Interest Rate Mortgage Loan Salary Pay Payroll Utilities "
        "Groceries Pharmacy Fuel Parking Bakery Subscription Streaming Transfer Deposit Withdrawal Cash Cheque Check ACH "
        "Dear Hello Hi Regards Thanks Many Kind Best Yours Sincerely Faithfully Re Subject From Cc Bcc Urgent Routine "
        "Civil Criminal Family High Crown County Supreme District Federal Magistrates Upper First-tier Employment "
        "North South East West Northern Southern Eastern Western Central Royal General University Teaching Children's "
        "Neutral Citation Between Before Heard Complaint Action Filed Plaintiff Attorney United States Kingdom "
        "Triage Category Presenting Nurse Patient Client Employee Pt DOB NHS MRN SSN PCP Age Aged Born Next Kin "
        "Handover Bed Room Floor Flat Apt Unit Suite Reason Follow-Up Copy Attending Consultant Physician Registrar GP "
        "Limited Ltd LLP LLC Inc Plc PLC GmbH Group Holdings Partners Co Company Corporation Foundation Institute"
    ).split()
)


# Month and day words that are also given names ("Jun Park", "May Chen", "April Jones"): taken as
# a name only when another name word follows.
AMBIGUOUS_NAMES = frozenset("jan jun jul may june july april august march sun mon".split())


def is_acronym(token: str) -> bool:
    """"MRN", "NHS", "DOB" after a trigger are field labels; all-caps names ("ROE") have a vowel."""
    letters = [c for c in token if c.isalpha()]
    if len(letters) < 2 or not all(c.isupper() for c in letters):
        return False
    return not any(c in "AEIOUY" for c in letters) or len(letters) <= 2


class _NameScanner:
    def __init__(
        self, stop_words: Iterable[str], allow_surname_first: bool = False, common_words: bool = True, caps_ok: bool = False
    ) -> None:
        # Strong triggers (titles, roles) take any capitalised word; weak cues skip common ones.
        self.stop_words = frozenset(w.lower() for w in stop_words) | (COMMON_CAPITALISED if common_words else frozenset())
        self.allow_surname_first = allow_surname_first
        self.caps_ok = caps_ok  # upper-case surnames ("NG", "RAO") in captions and cause lists

    def is_name_word(self, token: str) -> bool:
        if not token[:1].isupper() or token.lower() in self.stop_words:
            return False
        return self.caps_ok or not is_acronym(token)

    def forward(self, text: str, pos: int, min_words: int = 1) -> tuple[int, int] | None:
        """The name starting at `pos` (1-5 words), or None."""
        words: list[tuple[int, int]] = []
        capitalised = commas = 0
        while len(words) < 5:
            word = _WORD.match(text, pos)
            if word is None:
                break
            token = word.group().rstrip(".")
            is_name = self.is_name_word(token) or (self._ambiguous(token) and self._name_follows(text, word.end()))
            if not is_name and not (token.lower() in PARTICLES and self._name_follows(text, word.end())):
                break
            # Keep the dot of an initial ("J."), not a sentence's full stop.
            end = word.end() if len(token) == 1 else word.start() + len(token)
            words.append((word.start(), end))
            capitalised += int(is_name)
            gap = _GAP.match(text, end)
            if gap is None:
                break
            if "," in gap.group():
                # "ROE, Jane" (surname first, in capitals) only in form fields; otherwise a comma ends
                # the name ("the children, Ana, Tom and Li" is a list).
                if not self.allow_surname_first or commas or len(words) > 1 or not token.isupper():
                    break
                commas += 1
            pos = gap.end()
        return self._finish(text, words, capitalised, min_words)

    def backward(self, text: str, pos: int, min_words: int = 1) -> tuple[int, int] | None:
        """The name ending right before `pos` (spaces allowed between), on the same line."""
        line_start = text.rfind("\n", 0, pos) + 1
        tokens = [m for m in _WORD.finditer(text, line_start, pos)]
        words: list[tuple[int, int]] = []
        capitalised = 0
        cursor = pos
        for word in reversed(tokens):
            between = text[word.end() : cursor]
            if between.strip(" \t") or (words and not between):
                break
            token = word.group().rstrip(".")
            is_name = self.is_name_word(token) or bool(words and self._ambiguous(token))
            if not is_name and not (token.lower() in PARTICLES and words):
                break
            end = word.end() if len(token) == 1 else word.start() + len(token)
            words.insert(0, (word.start(), end))
            capitalised += int(is_name)
            cursor = word.start()
            if len(words) == 5:
                break
        # A lower-case particle cannot start a name we reached backwards from a cue ("... of (Claimant)");
        # capitalised ones can ("De Vries", "DE VRIES").
        while words and text[words[0][0] : words[0][1]] in PARTICLES:
            words.pop(0)
        return self._finish(text, words, capitalised, min_words)

    def _finish(self, text: str, words: list[tuple[int, int]], capitalised: int, min_words: int) -> tuple[int, int] | None:
        while words and text[words[-1][0] : words[-1][1]].lower() in PARTICLES:
            words.pop()
        if not words or capitalised == 0 or len(words) < min_words:
            return None
        start, end = words[0][0], words[-1][1]
        if text[end - 2 : end] in ("'s", "’s"):  # possessive: "Smith's" -> "Smith"
            end -= 2
        return (start, end) if end > start else None

    @staticmethod
    def _ambiguous(token: str) -> bool:
        return token[:1].isupper() and token.lower() in AMBIGUOUS_NAMES

    def _name_follows(self, text: str, pos: int) -> bool:
        # A particle belongs to a name only if a capitalised word follows ("de la Cruz").
        while True:
            gap = _GAP.match(text, pos)
            if gap is None or "," in gap.group():
                return False
            word = _WORD.match(text, gap.end())
            if word is None:
                return False
            token = word.group().rstrip(".")
            if token.lower() in PARTICLES:
                pos = word.end()
                continue
            return self.is_name_word(token)


class NameAfterTriggerRecognizer:
    """PERSON names after trigger words: titles (case-sensitive), roles and labels (any case), or a
    raw ``trigger_pattern``. ``min_words`` > 1 for weak triggers such as prepositions."""

    def __init__(
        self,
        name: str,
        triggers: Iterable[str] = (),
        *,
        case_sensitive_triggers: Iterable[str] = (),
        trigger_pattern: str | None = None,
        lowered_pattern: bool = False,
        score: float = 0.9,
        stop_words: Iterable[str] = (),
        allow_surname_first: bool = False,
        min_words: int = 1,
        common_words: bool = False,
        caps_ok: bool = False,
    ) -> None:
        self.name = name
        self.entity_type = "PERSON"
        self.score = score
        self.min_words = min_words
        self.scanner = _NameScanner(stop_words, allow_surname_first, common_words, caps_ok)
        loose = sorted({re.escape(t.lower()) for t in triggers}, key=len, reverse=True)
        strict = sorted({re.escape(t) for t in case_sensitive_triggers}, key=len, reverse=True)
        if not loose and not strict and not trigger_pattern:
            raise ValueError(f"recognizer {name!r} needs trigger words or a trigger pattern")
        # Trigger, then separators (":", ",", "-", "the"), then the name starts. Role triggers are
        # matched on a lower-cased copy (same offsets), titles ("Dr", "Ms") case-sensitively.
        tail = r")(?![\w])\.?(?:[ \t]*[:,\-–][ \t]*|[ \t]+)(?:(?:the|The)[ \t]+)?"
        # Role words also in the plural, but only as a list heading ("Borrowers: X and Y"; "Smith
        # Solicitors." is not one): an "s" after a keyword ending in a letter, then a colon. One
        # regex for both forms, so the page is scanned once.
        plural_tail = r"|(?<=[^\W\d_])s(?![\w])[ \t]*:[ \t]*)"
        self.loose = _keyword_regex(loose, ")(?:" + tail[1:] + plural_tail) if loose else None
        self.strict = _keyword_regex(strict, tail) if strict else None
        self.pattern = re.compile(trigger_pattern) if trigger_pattern else None
        # A lower-case ``trigger_pattern`` runs on the lower-cased copy (case-insensitive, and faster).
        self.pattern_on_lowered = lowered_pattern

    def find(self, text: str) -> Iterator[DetectedSpan]:
        low = lowered(text)
        pattern_text = low if self.pattern_on_lowered else text
        for regex, haystack in ((self.strict, text), (self.loose, low), (self.pattern, pattern_text)):
            if regex is None:
                continue
            for match in regex.finditer(haystack):
                span = self.scanner.forward(text, match.end(), self.min_words)
                if span is not None:
                    yield DetectedSpan(span[0], span[1], "PERSON", self.score)

    def __repr__(self) -> str:
        return f"NameAfterTriggerRecognizer({self.name!r})"


class NameBeforeCueRecognizer:
    """PERSON names right before a cue: "(Claimant)", ", Plaintiff", ", a 40 y/o", " | NHS".
    With ``line_start`` the name must begin its line (form and table rows)."""

    def __init__(
        self,
        name: str,
        cue_pattern: str,
        *,
        score: float = 0.75,
        stop_words: Iterable[str] = (),
        min_words: int = 1,
        line_start: bool = False,
        flags: int = 0,
        caps_ok: bool = False,
    ) -> None:
        self.name = name
        self.entity_type = "PERSON"
        self.score = score
        self.min_words = min_words
        self.line_start = line_start
        self.cue = re.compile(cue_pattern, flags)
        self.scanner = _NameScanner(stop_words, caps_ok=caps_ok)

    def find(self, text: str) -> Iterator[DetectedSpan]:
        for match in self.cue.finditer(text):
            span = self.scanner.backward(text, match.start(), self.min_words)
            if span is None:
                continue
            if self.line_start and text[text.rfind("\n", 0, span[0]) + 1 : span[0]].strip():
                continue
            yield DetectedSpan(span[0], span[1], "PERSON", self.score)

    def __repr__(self) -> str:
        return f"NameBeforeCueRecognizer({self.name!r})"


def propagate_names(text: str, spans: list[DetectedSpan], min_score: float = 0.85) -> list[DetectedSpan]:
    """Other mentions of names already found: the full name anywhere, and its words (3+ letters,
    not common capitalised words) when the name was found with confidence >= `min_score`.
    "Jane Roe was admitted ... Roe declined" -> the second "Roe" too."""
    names = {text[s.start : s.end] for s in spans if s.entity_type == "PERSON"}
    parts = {
        w
        for s in spans
        if s.entity_type == "PERSON" and s.score >= min_score
        for w in text[s.start : s.end].split()
        if len(w) >= 3 and w[:1].isupper() and w.lower() not in COMMON_CAPITALISED and w.lower() not in PARTICLES
    }
    found: list[DetectedSpan] = []
    for term in names | parts:
        if not term.strip():
            continue
        pos = text.find(term)
        while pos >= 0:
            end = pos + len(term)
            # Whole words only: "Park" is not inside "Parkside".
            if (pos == 0 or not text[pos - 1].isalnum()) and (end == len(text) or not text[end].isalnum()):
                found.append(DetectedSpan(pos, end, "PERSON", 0.6))
            pos = text.find(term, pos + 1)
    return found


_LIST_LINK = re.compile(r"(?:[ \t]*,[ \t]*(?:and[ \t]+)?|[ \t]+and[ \t]+|[ \t]*&[ \t]*)")
_LIST_SCANNER = _NameScanner(())


def extend_name_lists(text: str, spans: list[DetectedSpan]) -> list[DetectedSpan]:
    """Names coordinated with a name already found: "the children, Ana and Farai", "X, Y and Z"."""
    found: list[DetectedSpan] = []
    frontier = [s for s in spans if s.entity_type == "PERSON"]
    seen = {(s.start, s.end) for s in frontier}
    while frontier:
        span = frontier.pop()
        link = _LIST_LINK.match(text, span.end)
        if link is None:
            continue
        nxt = _LIST_SCANNER.forward(text, link.end())
        if nxt is None or nxt in seen:
            continue
        seen.add(nxt)
        new = DetectedSpan(nxt[0], nxt[1], "PERSON", 0.6)
        found.append(new)
        frontier.append(new)
    return found
