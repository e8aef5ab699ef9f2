"""Our recognizers for person names in records: after titles, roles and form labels; after weak
cues (prepositions, letter closings, speaker stamps, case captions); before cues (roles, ages,
reporting verbs); in address blocks and form rows. The scanning logic lives in `names.py`."""

from __future__ import annotations

import re

from dpfusion_chains.core.detectors.names import NameAfterTriggerRecognizer, NameBeforeCueRecognizer

NAMES_AFTER_TITLES = NameAfterTriggerRecognizer(
    "name_after_title",
    triggers=(),
    case_sensitive_triggers=(
        "Mr", "Mrs", "Ms", "Miss", "Mx", "Dr", "Prof", "Professor", "Sir", "Dame", "Lord", "Lady", "Rev", "Revd", "Reverend",
        "Fr", "Father", "Sister", "Brother", "Judge", "Justice", "HHJ", "DJ", "Sheriff", "Nurse", "Matron", "Officer", "PC",
        "DC", "DS", "DI", "DCI", "Sgt", "Sergeant", "Inspector", "Detective", "Constable", "Capt", "Captain", "Col", "Lt",
        "Major", "Cllr", "Councillor", "Senator", "Rabbi", "Imam", "Pastor", "Herr", "Frau", "Mme", "Mlle", "Señor", "Señora",
        "Sr", "Sra", "Dott", "Dra", "Hon", "Atty", "Esq", "Midwife",
    ),
    stop_words=("Justice", "Registrar"),
)
_ROLE_TRIGGERS = (
    "patient", "applicant", "appellant", "respondent", "claimant", "defendant", "plaintiff", "petitioner", "accused",
    "employee", "client", "customer", "account holder", "account name", "cardholder", "witness", "tenant", "landlord",
    "victim", "complainant", "beneficiary", "guarantor", "borrower", "lender", "payee", "payer", "counsel", "solicitor",
    "barrister", "attorney", "advocate", "consultant", "surgeon", "physician", "registrar", "clinician", "therapist",
    "pharmacist", "paramedic", "carer", "caregiver", "guardian", "next of kin", "NOK", "mother", "father", "son",
    "daughter", "wife", "husband", "partner", "spouse", "brother", "sister", "relative", "referee", "signatory",
    "manager", "supervisor", "colleague", "adviser", "advisor", "agent", "notary", "mediator", "arbitrator", "clerk",
    "magistrate", "interpreter", "student", "resident", "member", "name", "full name", "patient name", "surname",
    "forename", "forenames", "first name", "last name", "given name", "family name", "signed", "signature",
    "prepared by", "reviewed by", "authorised by", "authorized by", "approved by", "referred by", "attending",
    "dear", "contact", "emergency contact", "GP", "author", "owner", "holder", "debtor", "creditor", "executor",
    "trustee", "deceased", "minor", "child", "children", "kids", "grandchildren", "infant", "baby", "employer", "director", "officer in charge", "pt",
    "representative", "employment judge", "judge", "nok", "emergency contact name", "neighbour", "neighbor", "friend",
    "flatmate", "housemate", "roommate", "boyfriend", "girlfriend", "fiancé", "fiancée", "cousin", "uncle", "aunt", "niece",
    "nephew", "grandson", "granddaughter", "grandmother", "grandfather", "stepson", "stepdaughter", "stepmother", "stepfather",
    "landlady", "agent", "caller", "speaker", "interviewee", "suspect", "offender", "victim's", "social worker", "key worker",
    "health visitor", "care coordinator", "doctor", "nurse", "midwife", "dentist", "optician", "psychologist", "psychiatrist",
)
# Words that follow a role at the start of a sentence or question ("Agent: Can you ...").
_SENTENCE_STARTERS = (
    "Can", "Could", "Would", "Should", "Might", "Must", "Shall", "Do", "Does", "Did", "Have", "What", "When", "Where", "Why",
    "How", "Who", "Which", "Please", "Thanks", "Thank", "Okay", "OK", "Sorry", "Hello", "Hi", "Good", "Just", "Also", "So",
    "Well", "Right", "Sure", "Great", "Fine", "Let", "If", "Yes", "No", "There", "Here", "Your", "You", "Me", "Us", "Bill",
)
# Capitalised words that follow a role without being a name ("Patient ID", "Client Services").
_ROLE_STOP_WORDS = (
    "ID", "No", "Number", "Record", "Records", "Name", "Names", "Services", "Service", "Safety", "Account", "Accounts",
    "Details", "Reference", "Ref", "Information", "Info", "Portal", "Support", "Care", "Team", "Unit", "Ward", "Office",
    "Department", "Dept", "Code", "Status", "Type", "Date", "DOB", "Address", "Phone", "Email", "The", "A", "An",
    "And", "Or", "Of", "In", "On", "At", "To", "For", "With", "By", "From", "Is", "Was", "Has", "Had", "Will", "Were",
    "Are", "Be", "Been", "He", "She", "They", "We", "I", "It", "His", "Her", "Their", "This", "That", "These", "Not",
    "No.", "Summary", "Notes", "Note", "Statement", "Report", "History", "Consent", "Signature", "Signed", "Form",
    "Agreement", "Bundle", "Court", "Tribunal", "Hospital", "Clinic", "Bank", "Ltd", "LLP", "Limited", "Plc", "Inc",
    "Mr", "Mrs", "Ms", "Miss", "Mx", "Dr", "Prof", "Sir", "Dame", "Hon", "Judge", "Justice", "Yes", "None", "N/A",
    "Unknown", "Redacted", "Present", "Absent", "Admitted", "Discharged", "Attended", "Declined", "Confirmed",
    "Pending", "Approved", "Denied", "Granted", "Refused", "Dismissed", "Allowed", "Upheld", "Adjourned", "Statements",
    "Visa", "Mastercard", "Debit", "Credit", "Current", "Savings", "Monthly", "Annual", "Total", "Balance", *_SENTENCE_STARTERS,
)
NAMES_AFTER_ROLES = NameAfterTriggerRecognizer(
    "name_after_role",
    triggers=_ROLE_TRIGGERS,
    stop_words=_ROLE_STOP_WORDS,
    allow_surname_first=True,
)
# Weak cues: a preposition or verb that often introduces a person; two capitalised words needed.
# Form fields whose label mentions a name: "Name on file:", "Name of deceased:", "Full legal name -".
NAME_FIELD = NameAfterTriggerRecognizer(
    "name_field", trigger_pattern=r"(?i:\bnames?\b[^:\n]{0,24}?[:\-–])[ \t]*", score=0.85, allow_surname_first=True, stop_words=_ROLE_STOP_WORDS
)
NAMES_AFTER_PREPOSITIONS = NameAfterTriggerRecognizer(
    "name_after_preposition",
    triggers=(
        "by", "with", "for", "about", "from", "to", "and", "v", "v.", "vs", "vs.", "versus", "call", "contact", "ask", "between",
        "including", "named", "called", "thank", "met", "saw", "visited", "accompanied by", "seen by", "reviewed by", "paid",
        "pay", "sent", "owes", "owe", "lent", "refunded", "messaged", "emailed", "phoned", "texted", "told", "asked",
    ),
    score=0.6,
    min_words=2,
    common_words=True,
)
NAMES_AFTER_CLOSING = NameAfterTriggerRecognizer(
    "name_after_closing",
    trigger_pattern=r"(?<![\w])(?:many thanks|thanks|thank you|with thanks|kind regards|best regards|warm regards|regards|best wishes|best"
    r"|all the best|warmly|yours sincerely|yours faithfully|yours truly|yours|sincerely|cheers|talk soon|speak soon|signed),?[ \t]*\n[ \t]*",
    lowered_pattern=True,
    score=0.75,
    common_words=True,
)
_APPOSITION_ROLES = "|".join(sorted((re.escape(r) for r in _ROLE_TRIGGERS if len(r) > 3 and " name" not in r), key=len, reverse=True))
NAMES_BEFORE_CUES = NameBeforeCueRecognizer(
    "name_before_cue",
    r"[ \t]*(?:\((?:the[ \t]+)?(?:claimant|defendant|applicant|respondent|appellant|plaintiff|petitioner|complainant|witness"
    r"|deceased|patient|client|tenant|landlord|age[ \t]*\d|aged?[ \t]+\d|\d{1,3}\)|instructed by|née|nee|born|dob|d\.o\.b|date of birth)"
    r"|,[ \t]+(?:an?[ \t]+)?(?:\d{1,3}[ \t-]*(?:y/?o\b|yo\b|years?[ \t-]old|year-old)|aged[ \t]+\d)"
    # a role in apposition: "Ana Ruiz, solicitor, of ...", "Tom Lee, the claimant's brother"
    rf"|,[ \t]+(?:the[ \t]+|a[ \t]+|an[ \t]+|her[ \t]+|his[ \t]+|their[ \t]+)?(?:{_APPOSITION_ROLES})s?\b)",
    score=0.8,
    flags=re.IGNORECASE,
)
# Case captions and cause lists: "Smith v Jones", "ADEBAYO v KOWALSKI" (surnames alone, any case).
NAMES_IN_CAPTION = NameAfterTriggerRecognizer(
    "name_after_versus", trigger_pattern=r"(?<=[\w.)])[ \t]+(?:v|vs|versus)\.?[ \t]+", score=0.75, common_words=True, caps_ok=True
)
NAMES_BEFORE_VERSUS = NameBeforeCueRecognizer("name_before_versus", r"[ \t]+(?:v|vs|versus)\.?[ \t]+(?=[^\W\d_])", score=0.75, caps_ok=True)
# Chat logs and transcripts: "[10:42] Amina: ..." (a timestamped speaker).
NAME_AS_SPEAKER = NameAfterTriggerRecognizer(
    "name_as_speaker", trigger_pattern=r"(?m)^[ \t]*\[[^\]\n]{3,30}\][ \t]*", score=0.8, common_words=True
)
# A person as the subject of a reporting or paying verb: "Precious Moyo paid you", "Tom Lee said".
NAMES_BEFORE_VERB = NameBeforeCueRecognizer(
    "name_before_verb",
    r"[ \t]+(?:paid|sent|transferred|requested|received|said|says|wrote|writes|told|called|phoned|asked|reported|stated"
    r"|explained|confirmed|denied|admitted|attended|visited|agreed|signed|accepted|declined)\b",
    score=0.6,
    min_words=2,
)
# A paragraph opening with a name ("Orla, further to our call ..."): a vocative in letters and e-mails.
_DISCOURSE = (
    "However", "Unfortunately", "Fortunately", "Additionally", "Furthermore", "Moreover", "Meanwhile", "Therefore", "Thus",
    "Finally", "Firstly", "Secondly", "Thirdly", "Overall", "Sadly", "Separately", "Otherwise", "Instead", "Again", "Sure",
    "Well", "Ok", "Okay", "Yes", "No", "Please", "Thanks", "Also", "Later", "Previously", "Currently", "Recently", "Initially",
    "Subsequently", "Accordingly", "Importantly", "Notably", "Alternatively", "Similarly", "Equally", "Regrettably", "Hopefully",
)
NAME_AS_VOCATIVE = NameBeforeCueRecognizer(
    "name_as_vocative", r",[ \t]+(?=[a-z])", score=0.6, line_start=True, stop_words=_DISCOURSE
)
NAME_AT_LINE_START = NameBeforeCueRecognizer("name_at_line_start", r"[ \t]*\|", score=0.6, min_words=2, line_start=True)
# An address block: a line holding only a name, then a street line ("Jane Roe\n12 Elm Lane").
NAME_ABOVE_ADDRESS = NameBeforeCueRecognizer(
    "name_above_address",
    r"[ \t]*\n[ \t]*(?:(?:Flat|Apt\.?|Apartment|Unit|Suite)[ \t]+[\w-]+,?[ \t]+)?\d{1,5}[A-Za-z]?,?[ \t]+[A-Z]",
    score=0.75,
    min_words=2,
    line_start=True,
)

NAME_RECOGNIZERS = (
    NAMES_AFTER_TITLES, NAMES_AFTER_ROLES, NAME_FIELD, NAMES_AFTER_PREPOSITIONS, NAMES_AFTER_CLOSING, NAMES_BEFORE_CUES,
    NAMES_BEFORE_VERB, NAME_AS_VOCATIVE, NAME_AT_LINE_START, NAME_ABOVE_ADDRESS, NAMES_IN_CAPTION, NAMES_BEFORE_VERSUS,
    NAME_AS_SPEAKER,
)
