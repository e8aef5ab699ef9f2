"""Style "A": the templates, pools and formats of the bundled synthetic records
(dpfusion_chains/data/records.json, written by make_records). Everything is invented; phone
numbers use Ofcom's drama ranges. The evaluation and held-out styles live in tests/data."""

from __future__ import annotations

import random

from dpfusion_chains.data.builder import Doc, Ent, Maker, Style, iban, nhs_number, qa


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
        qa("What was the working diagnosis?", diagnosis, "public"),
        qa("Which medication was the patient started on?", medication, "public"),
        qa("What is the patient's name?", name, "private"),
        qa("On what date was the patient admitted?", admitted, "private"),
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
        qa("What condition did the tests confirm?", diagnosis, "public"),
        qa("What treatment was recommended?", treatment, "public"),
        qa("Which clinic did the patient attend?", specialty, "public"),
        qa("Who wrote the letter?", consultant, "private"),
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
        qa("What was the presenting complaint?", complaint, "public"),
        qa("What triage category was assigned?", category, "public"),
        qa("What is the patient's date of birth?", dob, "private"),
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
        qa("What type of claim was brought?", case_type, "public"),
        qa("What did the court decide?", ruling, "public"),
        qa("Who was the claimant?", claimant, "private"),
        qa("Which firm represented the defendant?", firm, "private"),
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
        qa("What was the application for?", kind, "public"),
        qa("What was the decision?", decision, "public"),
        qa("What is the application number?", appno, "private"),
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
        qa("What offence is the statement about?", offence, "public"),
        qa("What is the witness's occupation?", occupation, "public"),
        qa("Who took the statement?", officer, "private"),
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
        qa("What type of account is this?", acct_type, "public"),
        qa("What was the first transaction for?", cats[0], "public"),
        qa("What is the account number?", acctno, "private"),
        qa("Who is the account holder?", holder, "private"),
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
        qa("What was the payment for?", purpose, "public"),
        qa("Who received the payment?", payee, "private"),
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
        qa("What kind of merchant was the disputed payment to?", merchant, "public"),
        qa("What was the outcome of the dispute?", outcome, "public"),
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
