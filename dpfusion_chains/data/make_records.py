"""Generate the bundled synthetic records and the labelled detection evaluation set.

    python -m dpfusion_chains.data.make_records            # writes both files
    python -m dpfusion_chains.data.make_records --check    # fails if either file is stale

Everything is invented: names are drawn from lists of given names and surnames of many origins and
combined at random; numbers are random (IBANs, cards and NHS numbers get valid check digits so
they look real); phone numbers use reserved drama/documentation ranges; IPs and domains use
documentation ranges and example.* names. No record describes a real person.

Labels are exact by construction: texts are assembled piece by piece and each sensitive value's
offsets are recorded as it is appended (never found by searching). Labelling conventions:
PERSON is the name without its title ("Dr"); AGE the number only; ID the value without its
keyword ("MRN 443-21" -> "443-21"); ADDRESS the street line (house number, flat) and, separately,
the postcode; the town is LOCATION; MONEY includes currency and sign; ORGANIZATION is labelled in
these domain texts for care facilities, courts/tribunals, law firms, banks and employers.
Public content (diagnoses, treatments, case types, rulings, transaction categories, account types)
is never labelled, so questions about it stay answerable from the public view.

The bundled records (style "A", seed 7), the evaluation set (style "B", seed 2024, templates in
tests/data/eval_templates.py) and two held-out sets (style "C", seed 99, holdout_templates.py, and
style "D", seed 5, holdout2_templates.py; see their docstrings for how far each was kept from
tuning) use disjoint name/place pools, different templates, and different formats for dates,
phones, IDs and money.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import string
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
RECORDS_PATH = HERE / "records.json"
EVAL_PATH = HERE.parents[1] / "tests" / "data" / "detect_eval.jsonl"
HOLDOUT_PATH = EVAL_PATH.with_name("detect_holdout.jsonl")
HOLDOUT2_PATH = EVAL_PATH.with_name("detect_holdout2.jsonl")


@dataclass
class Ent:
    text: str
    type: str


@dataclass
class Doc:
    parts: list[str] = field(default_factory=list)
    spans: list[dict[str, object]] = field(default_factory=list)
    size: int = 0

    def add(self, piece: str | Ent) -> None:
        if isinstance(piece, Ent):
            self.spans.append({"start": self.size, "end": self.size + len(piece.text), "type": piece.type})
            piece = piece.text
        self.parts.append(piece)
        self.size += len(piece)

    def fill(self, template: str, **slots: str | Ent) -> None:
        """Append `template`, replacing each {slot}; Ent slots are recorded as labelled spans."""
        for i, chunk in enumerate(re.split(r"\{(\w+)\}", template)):
            if i % 2 == 0:
                if chunk:
                    self.add(chunk)
            else:
                self.add(slots[chunk])

    @property
    def text(self) -> str:
        return "".join(self.parts)


# ----------------------------------------------------------------------------- shared value helpers
def luhn_complete(prefix: str) -> str:
    """`prefix` plus the Luhn check digit."""
    total = 0
    for i, c in enumerate(reversed(prefix)):
        d = int(c)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return prefix + str((10 - total % 10) % 10)


def iban(rng: random.Random, country: str, bban: str) -> str:
    """A valid IBAN (mod-97 check digits), printed in groups of four."""
    numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
    check = 98 - int(numeric) % 97
    compact = f"{country}{check:02d}{bban}"
    return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))


def nhs_number(rng: random.Random) -> str:
    """A 10-digit number with a valid NHS modulus-11 check digit, as "943 476 5919"."""
    while True:
        body = [rng.randint(0, 9) for _ in range(9)]
        check = 11 - sum(d * w for d, w in zip(body, range(10, 1, -1), strict=True)) % 11
        if check == 11:
            check = 0
        if check != 10:
            digits = "".join(map(str, body)) + str(check)
            return f"{digits[:3]} {digits[3:6]} {digits[6:]}"


def uk_postcode(rng: random.Random) -> str:
    area = rng.choice(["LS", "M", "B", "BS", "CF", "G", "EH", "NR", "S", "NG", "L", "SW", "E", "N", "OX", "CB", "YO", "LE"])
    inward = f"{rng.randint(0, 9)}{rng.choice('ABDEFGHJLNPQRSTUWXYZ')}{rng.choice('ABDEFGHJLNPQRSTUWXYZ')}"
    return f"{area}{rng.randint(1, 20)} {inward}"


@dataclass
class Style:
    """One family of texts: name/place pools, value formats and templates."""

    name: str
    pools: dict[str, list[str]]
    date: Callable[[random.Random, int, int, int], str]
    time: Callable[[random.Random, int, int], str]
    phone: Callable[[random.Random], str]
    money: Callable[[random.Random, float, bool], str]
    email_locals: list[str]
    templates: dict[str, list[Callable[[Maker], tuple[Doc, str, list[dict[str, str]]]]]]


class Maker:
    """Random values drawn from one style's pools and formats."""

    def __init__(self, rng: random.Random, style: Style) -> None:
        self.r = rng
        self.style = style

    def pick(self, key: str) -> str:
        return self.r.choice(self.style.pools[key])

    def person(self) -> tuple[str, str, str, str]:
        """(full name, given name, surname, pronoun) with a random gender."""
        female = self.r.random() < 0.5
        given = self.pick("female" if female else "male")
        family = self.pick("surnames")
        return f"{given} {family}", given, family, "she" if female else "he"

    def name(self) -> Ent:
        return Ent(self.person()[0], "PERSON")

    def digits(self, n: int) -> str:
        return "".join(self.r.choice(string.digits) for _ in range(n))

    def letters(self, n: int) -> str:
        return "".join(self.r.choice(string.ascii_uppercase) for _ in range(n))

    def date(self, years: tuple[int, int] = (2019, 2025)) -> Ent:
        return Ent(self.style.date(self.r, self.r.randint(*years), self.r.randint(1, 12), self.r.randint(1, 28)), "DATE_TIME")

    def dob(self) -> Ent:
        return self.date((1938, 2005))

    def time(self) -> Ent:
        return Ent(self.style.time(self.r, self.r.randint(0, 23), self.r.choice([0, 5, 15, 20, 30, 40, 45, 55])), "DATE_TIME")

    def age(self) -> Ent:
        return Ent(str(self.r.randint(19, 92)), "AGE")

    def phone(self) -> Ent:
        return Ent(self.style.phone(self.r), "PHONE_NUMBER")

    def email(self, given: str, family: str) -> Ent:
        g = re.sub(r"[^a-z]", "", given.lower()) or "user"
        f = re.sub(r"[^a-z]", "", family.lower()) or "mail"
        local = self.r.choice(self.style.email_locals).format(g=g, f=f, gi=g[0], n=self.r.randint(1, 99))
        return Ent(f"{local}@{self.pick('mail_domains')}", "EMAIL_ADDRESS")

    def street(self) -> Ent:
        line = f"{self.r.randint(1, 240)} {self.pick('street_names')} {self.pick('street_types')}"
        if self.r.random() < 0.2:
            line = f"{self.r.choice(['Flat', 'Apt', 'Unit'])} {self.r.randint(1, 30)}, {line}"
        return Ent(line, "ADDRESS")

    def city(self) -> Ent:
        return Ent(self.pick("cities"), "LOCATION")

    def postcode(self) -> Ent:
        return Ent(uk_postcode(self.r), "ADDRESS")

    def money(self, low: float = 5, high: float = 5000, sign: bool = False) -> Ent:
        return Ent(self.style.money(self.r, self.r.uniform(low, high), sign), "MONEY")

    def org(self, key: str) -> Ent:
        text = self.pick(key).format(
            city=self.pick("cities"), surname=self.pick("surnames"), surname2=self.pick("surnames"), word=self.pick("org_words")
        )
        return Ent(text, "ORGANIZATION")

    def nrp(self) -> Ent:
        return Ent(self.pick("nrp"), "NRP")

    def card(self) -> Ent:
        prefix = self.r.choice(["4", "51", "52", "55"])
        digits = luhn_complete(prefix + self.digits(15 - len(prefix)))
        return Ent(" ".join(digits[i : i + 4] for i in range(0, 16, 4)), "CREDIT_CARD")


# ----------------------------------------------------------------------------- assembly
TemplateFn = Callable[[Maker], tuple[Doc, str, list[dict[str, str]]]]


def _q(question: str, answer: str | Ent, where: str) -> dict[str, str]:
    return {"question": question, "answer": answer.text if isinstance(answer, Ent) else answer, "answer_in": where}


def build(style: Style, count: int, seed: int, prefix: str) -> list[dict[str, object]]:
    """`count` records cycling over domains and, within each, over the style's templates."""
    rng = random.Random(seed)
    maker = Maker(rng, style)
    out: list[dict[str, object]] = []
    domains = list(style.templates)
    for i in range(count):
        domain = domains[i % len(domains)]
        fns = style.templates[domain]
        fn = fns[(i // len(domains)) % len(fns)]
        doc, title, questions = fn(maker)
        record: dict[str, object] = {
            "id": f"{prefix}-{i + 1:03d}",
            "domain": domain,
            "title": title,
            "template": fn.__name__,
            "text": doc.text,
            "spans": doc.spans,
            "questions": questions,
        }
        _check(record)
        out.append(record)
    return out


def _check(record: dict[str, object]) -> None:
    text = str(record["text"])
    spans = record["spans"]
    assert isinstance(spans, list)
    last = -1
    for span in spans:
        start, end = int(span["start"]), int(span["end"])
        piece = text[start:end]
        assert piece and piece == piece.strip(), (record["id"], piece)
        assert start >= last, f"{record['id']}: overlapping labels"
        last = end
    for q in record.get("questions", []):  # type: ignore[union-attr]
        assert q["answer"] in text, (record["id"], q)
        if q["answer_in"] == "public":
            public = _public_text(text, spans)
            assert q["answer"] in public, (record["id"], q["answer"])


def _public_text(text: str, spans: list[dict[str, object]]) -> str:
    out, pos = [], 0
    for span in spans:
        out.append(text[pos : int(span["start"])])
        out.append(f"[{span['type']}]")
        pos = int(span["end"])
    out.append(text[pos:])
    return "".join(out)


# ----------------------------------------------------------------------------- style A: bundled records
def _date_a(r: random.Random, y: int, m: int, d: int) -> str:
    return r.choice([f"{d} {MONTHS[m - 1]} {y}", f"{d:02d}/{m:02d}/{y}", f"{y}-{m:02d}-{d:02d}"])


def _phone_a(r: random.Random) -> str:
    # Ofcom's ranges reserved for drama: 0113 496 0xxx, 0161 496 0xxx, 07700 900xxx.
    n = r.randint(0, 999)
    return r.choice([f"+44 113 496 0{n:03d}", f"0161 496 0{n:03d}", f"+44 7700 900{n:03d}"])


def _money_a(r: random.Random, amount: float, sign: bool) -> str:
    symbol = r.choice(["£", "£", "$", "€"])
    text = f"{symbol}{amount:,.2f}" if r.random() < 0.7 else f"{symbol}{round(amount):,}"
    return ("-" + text) if sign else text


MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"]
POOLS_A: dict[str, list[str]] = {
    "female": "Jane Amara Priya Fatima Agnieszka Siobhan Lucía Aisha Ingrid Chiara Thandiwe Yuki Eleni Nadia Marguerite Hana".split(),
    "male": "Tomás Wei Oluwaseun Hiroshi Mohammed Kwame Dmitri Rahul Mehmet Joaquín Connor Bongani Ravi Lars Nikolai Samuel".split(),
    "surnames": [
        "Roe", "Okonkwo", "de la Cruz", "Sharma", "Zhang", "Haddad", "Adeyemi", "Tanaka", "Kowalczyk", "Al-Rashid", "O'Sullivan",
        "Mensah", "Fernández", "Volkov", "Bello", "Tran", "Lindqvist", "Patel", "Rossi", "Yılmaz", "Dlamini", "Herrera", "Sato",
        "Papadopoulos", "Byrne", "Karimi", "Nkosi", "Kim", "Iyer", "Dubois", "Whitfield", "Abernethy",
    ],
    "cities": "Leeds Bristol Manchester Glasgow Cardiff Norwich York Oxford Cambridge Liverpool Newcastle Bath Reading Dundee Hull".split(),
    "street_names": "Elm Oak Mill Church Station Victoria Park Maple Rose Beech High Bridge Meadow Heather Ash".split(),
    "street_types": "Lane Road Street Avenue Close".split(),
    "mail_domains": ["example.com", "example.org", "mail.example.net"],
    "org_words": "Riverside Northgate Meadowbank Ashford Kingsway Elmwood Highfield Oakridge Bridgewater Castlegate".split(),
    "health_orgs": ["{city} General Hospital", "{word} Medical Centre", "{city} Royal Hospital", "{word} Clinic"],
    "courts": ["{city} Crown Court", "{city} County Court", "High Court of Justice"],
    "firms": ["{surname} & {surname2} LLP", "{surname} Solicitors"],
    "banks": ["{word} Bank", "{word} Building Society"],
    "employers": ["{word} Logistics Ltd", "{word} Foods Ltd", "{word} Software Ltd"],
    "nrp": ["Polish", "Nigerian", "Irish", "Catholic", "Muslim", "Jewish", "Hindu", "Somali", "Portuguese", "Ghanaian"],
}
DIAGNOSES = [
    "community-acquired pneumonia", "type 2 diabetes", "acute appendicitis", "atrial fibrillation", "cellulitis of the left leg",
    "an asthma exacerbation", "a fractured right wrist", "iron-deficiency anaemia", "a urinary tract infection", "gallstones",
    "migraine with aura", "hypertension",
]
MEDICATIONS = ["amoxicillin", "metformin", "salbutamol", "apixaban", "ferrous sulfate", "flucloxacillin", "ramipril", "paracetamol"]


def _health_admission(m: Maker) -> tuple[Doc, str, list[dict[str, str]]]:
    full, given, family, pron = m.person()
    diagnosis, medication = m.r.choice(DIAGNOSES), m.r.choice(MEDICATIONS)
    outcome = m.r.choice(["discharged home", "transferred to a rehabilitation ward", "discharged with community follow-up"])
    doc, name, admitted = Doc(), Ent(full, "PERSON"), m.date()
    doc.fill(
        "Patient {name}, aged {age}, MRN {mrn}, was admitted to {hospital} on {date} with {complaint}. "
        "The working diagnosis was {diagnosis}. {Pron} was started on {medication} and was {outcome} on {date2}.\n"
        "Home address: {street}, {city} {postcode}. Telephone: {phone}.\nAttending physician: Dr {doctor}.",
        name=name, age=m.age(), mrn=Ent(f"{m.digits(3)}-{m.digits(2)}", "ID"), hospital=m.org("health_orgs"), date=admitted,
        complaint=m.r.choice(["fever and cough", "chest pain", "shortness of breath", "abdominal pain", "a fall at home"]),
        diagnosis=diagnosis, Pron=pron.capitalize(), medication=medication, outcome=outcome, date2=m.date(), street=m.street(),
        city=m.city(), postcode=m.postcode(), phone=m.phone(), doctor=m.name(),
    )
    return doc, "Hospital admission note", [
        _q("What was the working diagnosis?", diagnosis, "public"),
        _q("Which medication was the patient started on?", medication, "public"),
        _q("What is the patient's name?", name, "private"),
        _q("On what date was the patient admitted?", admitted, "private"),
    ]


def _health_letter(m: Maker) -> tuple[Doc, str, list[dict[str, str]]]:
    full, given, family, pron = m.person()
    diagnosis = m.r.choice(DIAGNOSES)
    specialty = m.r.choice(["cardiology", "respiratory", "diabetes", "orthopaedic", "gastroenterology"])
    treatment = m.r.choice(["a six-week course of physiotherapy", "a change of inhaler", "dietary advice and review", "a repeat blood test"])
    consultant = m.name()
    doc = Doc()
    doc.fill(
        "Dear Dr {gp},\nRe: {name}, DOB {dob}, NHS number {nhs}\n"
        "I reviewed this {age}-year-old {nrp} {person} in the {specialty} clinic at {hospital} on {date}. "
        "Examination and tests confirm {diagnosis}. I have recommended {treatment}. "
        "Please contact me on {phone} or {email} with any concerns.\nYours sincerely,\nDr {consultant}",
        gp=Ent(m.pick("surnames"), "PERSON"), name=Ent(full, "PERSON"), dob=m.dob(), nhs=Ent(nhs_number(m.r), "ID"), age=m.age(),
        nrp=m.nrp(), person="woman" if pron == "she" else "man", specialty=specialty, hospital=m.org("health_orgs"), date=m.date(),
        diagnosis=diagnosis, treatment=treatment, phone=m.phone(), email=m.email(*consultant.text.split(" ", 1)), consultant=consultant,
    )
    return doc, "Outpatient clinic letter", [
        _q("What condition did the tests confirm?", diagnosis, "public"),
        _q("What treatment was recommended?", treatment, "public"),
        _q("Which clinic did the patient attend?", specialty, "public"),
        _q("Who wrote the letter?", consultant, "private"),
    ]


def _health_triage(m: Maker) -> tuple[Doc, str, list[dict[str, str]]]:
    full, given, family, pron = m.person()
    complaint = m.r.choice(["headache and vomiting", "a deep cut to the hand", "dizziness", "back pain after lifting", "an allergic rash"])
    category = m.r.choice(["urgent (amber)", "standard (green)", "very urgent (orange)"])
    dob = m.dob()
    doc = Doc()
    doc.fill(
        "TRIAGE FORM\nName: {name}\nDate of birth: {dob}\nAddress: {street}, {city}\nEmail: {email}\n"
        "Presenting complaint: {complaint}\nTriage category: {category}\nAssessment: {diagnosis}\n"
        "Triage nurse: {nurse} (badge {badge})",
        name=Ent(full, "PERSON"), dob=dob, street=m.street(), city=m.city(), email=m.email(given, family), complaint=complaint,
        category=category, diagnosis=m.r.choice(DIAGNOSES), nurse=m.name(), badge=Ent(f"{m.letters(2)}-{m.digits(5)}", "ID"),
    )
    return doc, "Emergency department triage form", [
        _q("What was the presenting complaint?", complaint, "public"),
        _q("What triage category was assigned?", category, "public"),
        _q("What is the patient's date of birth?", dob, "private"),
    ]


CASE_TYPES = ["claim for unpaid wages", "tenancy deposit dispute", "personal injury claim", "breach of contract claim", "claim for unfair dismissal"]
RULINGS = ["dismissed the claim", "found for the claimant", "struck out the defence", "adjourned the hearing", "approved a settlement"]


def _legal_judgment(m: Maker) -> tuple[Doc, str, list[dict[str, str]]]:
    case_type, ruling = m.r.choice(CASE_TYPES), m.r.choice(RULINGS)
    claimant, firm = m.name(), m.org("firms")
    doc = Doc()
    doc.fill(
        "Case No. {case}\nIn the {court}\n{claimant} (Claimant) v {defendant} (Defendant)\nHearing: {date}, before HHJ {judge}\n"
        "The claimant, aged {age}, of {street}, {city}, brought a {case_type}. The defendant was represented by {firm}. "
        "Having heard the evidence, the court {ruling}. The defendant was ordered to pay costs of {money}.",
        case=Ent(f"{m.r.randint(2018, 2025)}-CV-{m.digits(5)}", "ID"), court=m.org("courts"), claimant=claimant, defendant=m.name(),
        date=m.date(), judge=Ent(m.pick("surnames"), "PERSON"), age=m.age(), street=m.street(), city=m.city(), case_type=case_type,
        firm=firm, ruling=ruling, money=m.money(300, 20000),
    )
    return doc, "County court judgment summary", [
        _q("What type of claim was brought?", case_type, "public"),
        _q("What did the court decide?", ruling, "public"),
        _q("Who was the claimant?", claimant, "private"),
        _q("Which firm represented the defendant?", firm, "private"),
    ]


def _legal_application(m: Maker) -> tuple[Doc, str, list[dict[str, str]]]:
    kind = m.r.choice(["a residence permit", "legal aid", "a change of name", "bail", "a non-molestation order"])
    decision = m.r.choice(["granted", "refused", "deferred pending further evidence"])
    appno = Ent(f"{m.digits(5)}/{m.digits(2)}", "ID")
    rep_given, rep_family = m.pick("female"), m.pick("surnames")
    doc = Doc()
    doc.fill(
        "Applicant {name} ({nrp} national, born {dob}) applied on {date} for {kind}. Application no. {appno}. "
        "The applicant's representative, Ms {rep} of {firm}, can be reached at {email}. Decision: the application was {decision}.",
        name=m.name(), nrp=m.nrp(), dob=m.dob(), date=m.date(), kind=kind, appno=appno, rep=Ent(f"{rep_given} {rep_family}", "PERSON"),
        firm=m.org("firms"), email=m.email(rep_given, rep_family), decision=decision,
    )
    return doc, "Application decision", [
        _q("What was the application for?", kind, "public"),
        _q("What was the decision?", decision, "public"),
        _q("What is the application number?", appno, "private"),
    ]


def _legal_statement(m: Maker) -> tuple[Doc, str, list[dict[str, str]]]:
    offence = m.r.choice(["theft of a bicycle", "criminal damage to a car", "a burglary", "an assault outside a bar"])
    occupation = m.r.choice(["teacher", "bus driver", "nurse", "student", "shop manager"])
    officer = m.name()
    doc = Doc()
    doc.fill(
        "Witness statement of {name}, {age}-year-old {occupation}, of {street}, {city} {postcode}.\n"
        "On {date} at about {time} I saw the incident that led to this report of {offence}. I can be contacted on {phone}.\n"
        "Statement taken by PC {officer}, badge {badge}. Incident reference {ref}.",
        name=m.name(), age=m.age(), occupation=occupation, street=m.street(), city=m.city(), postcode=m.postcode(), date=m.date(),
        time=m.time(), offence=offence, phone=m.phone(), officer=officer, badge=Ent(m.digits(5), "ID"),
        ref=Ent(f"INC-{m.digits(6)}", "ID"),
    )
    return doc, "Witness statement", [
        _q("What offence is the statement about?", offence, "public"),
        _q("What is the witness's occupation?", occupation, "public"),
        _q("Who took the statement?", officer, "private"),
    ]


CATEGORIES = ["groceries", "rent", "electricity bill", "train tickets", "restaurant", "mobile phone contract", "council tax", "gym membership"]


def _finance_statement(m: Maker) -> tuple[Doc, str, list[dict[str, str]]]:
    acct_type = m.r.choice(["current account", "joint current account", "savings account"])
    holder, acctno = m.name(), Ent(m.digits(8), "ID")
    cats = m.r.sample(CATEGORIES, 3)
    doc = Doc()
    doc.fill(
        "{bank}\nStatement of account for {name}\n{street}, {city} {postcode}\n"
        "Account type: {acct_type}   Account number: {acctno}   Sort code: {sort}\nStatement period: {d0} to {d5}\n\n"
        "{d1}  {c1}  {m1}\n{d2}  {c2}  {m2}\n{d3}  {c3}  {m3}\n{d4}  Salary from {employer}  {m4}\nClosing balance: {bal}",
        bank=m.org("banks"), name=holder, street=m.street(), city=m.city(), postcode=m.postcode(), acct_type=acct_type, acctno=acctno,
        sort=Ent(f"{m.digits(2)}-{m.digits(2)}-{m.digits(2)}", "ID"), d0=m.date(), d5=m.date(), d1=m.date(), c1=cats[0],
        m1=m.money(5, 400, sign=True), d2=m.date(), c2=cats[1], m2=m.money(5, 400, sign=True), d3=m.date(), c3=cats[2],
        m3=m.money(5, 400, sign=True), d4=m.date(), employer=m.org("employers"), m4=m.money(1200, 4500), bal=m.money(100, 9000),
    )
    return doc, "Monthly bank statement", [
        _q("What type of account is this?", acct_type, "public"),
        _q("What was the first transaction for?", cats[0], "public"),
        _q("What is the account number?", acctno, "private"),
        _q("Who is the account holder?", holder, "private"),
    ]


def _finance_transfer(m: Maker) -> tuple[Doc, str, list[dict[str, str]]]:
    full, given, family, pron = m.person()
    purpose = m.r.choice(["a house deposit", "university fees", "a used car", "wedding catering", "a kitchen renovation"])
    payee = m.name()
    doc = Doc()
    doc.fill(
        "On {date}, {name} transferred {money} from {poss} savings account to {payee} (IBAN {iban}) for {purpose}. "
        "The payment reference was {ref}. Questions about this payment can be sent to {email}.",
        date=m.date(), name=Ent(full, "PERSON"), money=m.money(500, 30000), poss="her" if pron == "she" else "his", payee=payee,
        iban=Ent(iban(m.r, "GB", m.letters(4) + m.digits(14)), "IBAN_CODE"), purpose=purpose, ref=Ent(f"TRF{m.digits(7)}", "ID"),
        email=m.email(given, family),
    )
    return doc, "Transfer confirmation", [
        _q("What was the payment for?", purpose, "public"),
        _q("Who received the payment?", payee, "private"),
    ]


def _finance_dispute(m: Maker) -> tuple[Doc, str, list[dict[str, str]]]:
    merchant = m.r.choice(["online electronics", "airline", "hotel", "furniture", "ticketing"])
    outcome = m.r.choice(["refund issued", "claim rejected", "chargeback in progress"])
    doc = Doc()
    doc.fill(
        "Customer {name} disputed a card payment of {money} to {article} {merchant} merchant on {date}. The card used was {card}. "
        "The customer, who lives at {street}, {city}, was contacted on {phone}. Outcome: {outcome}.",
        name=m.name(), money=m.money(40, 2500), article="an" if merchant[0] in "aeiou" else "a", merchant=merchant, date=m.date(), card=m.card(), street=m.street(), city=m.city(),
        phone=m.phone(), outcome=outcome,
    )
    return doc, "Card payment dispute", [
        _q("What kind of merchant was the disputed payment to?", merchant, "public"),
        _q("What was the outcome of the dispute?", outcome, "public"),
    ]


STYLE_A = Style(
    name="A",
    pools=POOLS_A,
    date=_date_a,
    time=lambda r, h, mnt: f"{h:02d}:{mnt:02d}",
    phone=_phone_a,
    money=_money_a,
    email_locals=["{g}.{f}", "{gi}{f}", "{g}{n}"],
    templates={
        "health": [_health_admission, _health_letter, _health_triage],
        "legal": [_legal_judgment, _legal_application, _legal_statement],
        "finance": [_finance_statement, _finance_transfer, _finance_dispute],
    },
)


def _load_style(filename: str) -> Style:
    # Evaluation templates live beside the evaluation sets (tests/data), outside the package:
    # they are what the detectors are measured on, not something they ship with.
    import importlib.util

    path = EVAL_PATH.parent / filename
    spec = importlib.util.spec_from_file_location(f"dpfusion_{path.stem}", path)
    if spec is None or spec.loader is None or not path.exists():
        raise FileNotFoundError(f"evaluation templates not found: {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.STYLE  # type: ignore[no-any-return]


def generate() -> dict[Path, list[dict[str, object]]]:
    """Bundled records (style A), the evaluation set (B) and the held-out sets (C, D)."""
    return {
        RECORDS_PATH: build(STYLE_A, 63, seed=7, prefix="rec"),
        EVAL_PATH: build(_load_style("eval_templates.py"), 240, seed=2024, prefix="eval"),
        HOLDOUT_PATH: build(_load_style("holdout_templates.py"), 120, seed=99, prefix="hold"),
        HOLDOUT2_PATH: build(_load_style("holdout2_templates.py"), 60, seed=5, prefix="hold2"),
    }


def _dump_records(records: list[dict[str, object]]) -> str:
    slim = [{k: v for k, v in r.items() if k != "template"} for r in records]
    return json.dumps(slim, ensure_ascii=False, indent=1) + "\n"


def _dump_eval(records: list[dict[str, object]]) -> str:
    slim = [{k: v for k, v in r.items() if k != "questions"} for r in records]
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in slim)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="verify the files on disk match the generator")
    args = parser.parse_args(argv)
    outputs = {path: (_dump_records(records) if path == RECORDS_PATH else _dump_eval(records)) for path, records in generate().items()}
    if args.check:
        stale = [str(p) for p, content in outputs.items() if not p.exists() or p.read_text(encoding="utf-8") != content]
        if stale:
            print("stale: " + ", ".join(stale), file=sys.stderr)
            return 1
        return 0
    for path, content in outputs.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    # Run the imported module's main: the evaluation templates import this module by name, and
    # their Doc/Ent classes must be the same objects as the ones the builder uses.
    from dpfusion_chains.data.make_records import main as _main

    raise SystemExit(_main())
