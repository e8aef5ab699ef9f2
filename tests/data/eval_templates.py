"""Style "B": the templates, pools and formats of the labelled detection evaluation set.

Loaded by `dpfusion_chains/data/make_records.py` (which writes `detect_eval.jsonl` beside this
file). Kept apart from the bundled records' style "A" on purpose: different phrasings and layouts
(prose, forms, tables, letters, US and continental formats), bare names without titles, names of
many origins, and other formats for dates, times, phones, identifiers and money. Nothing here is
copied into the detectors.
"""

from __future__ import annotations

import datetime as _dt
import random

from dpfusion_chains.data.builder import Doc, Ent, Maker, Style, iban, nhs_number

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"]


def _ordinal(d: int) -> str:
    return f"{d}{'th' if 11 <= d % 100 <= 13 else {1: 'st', 2: 'nd', 3: 'rd'}.get(d % 10, 'th')}"


def _date(r: random.Random, y: int, m: int, d: int) -> str:
    month = MONTHS[m - 1]
    weekday = _dt.date(y, m, d).strftime("%A")
    return r.choice(
        [
            f"{month} {d}, {y}", f"{_ordinal(d)} of {month} {y}", f"{d:02d}.{m:02d}.{y}", f"{month[:3]} {d}, {y}",
            f"{d:02d}-{month[:3].upper()}-{y}", f"{weekday} {d} {month} {y}", f"{d} {month[:3]} {y}", f"{d}/{m}/{str(y)[2:]}",
            f"{y}/{m:02d}/{d:02d}", f"{_ordinal(d)} {month}",
        ]
    )


def _time(r: random.Random, h: int, mnt: int) -> str:
    h12, ampm = h % 12 or 12, "am" if h < 12 else "pm"
    return r.choice([f"{h:02d}:{mnt:02d}", f"{h12}.{mnt:02d} {ampm}", f"{h12}:{mnt:02d}{ampm}", f"{h:02d}{mnt:02d} hrs"])


def _phone(r: random.Random) -> str:
    # Reserved fictional/documentation ranges: 07700 900xxx, 020 7946 0xxx, 555-01xx (NANP).
    n, k = r.randint(0, 999), r.randint(0, 99)
    return r.choice(
        [
            f"07700 900{n:03d}", f"+44 (0)20 7946 0{n:03d}", f"020-7946-0{n:03d}", f"+1 312 555 01{k:02d}", f"(312) 555-01{k:02d}",
            f"+49 30 901820{k:02d}", f"312.555.01{k:02d}", f"+353 1 555 0{n:03d}",
        ]
    )


def _money(r: random.Random, amount: float, sign: bool) -> str:
    whole = round(amount)
    text = r.choice(
        [
            f"EUR {amount:,.2f}", f"{whole:,} GBP", f"€{amount:,.2f}", f"£{whole:,}", f"USD {amount:,.2f}", f"{whole:,} pounds",
            f"$ {amount:,.2f}", f"CHF {whole:,}",
        ]
    )
    return ("-" + text) if sign and not text[0].isdigit() else text


POOLS: dict[str, list[str]] = {
    "female": (
        "Ana Sofía Mei Layla Zofia Niamh Valentina Zainab Linh Astrid Giulia Nomvula Haruka Dimitra Leila Ji-woo Anjali Camille "
        "Esperanza Anneliese Oksana Keiko Ngozi Róisín Adaeze Maryam Tatiana Ximena Ewa Folake"
    ).split(),
    "male": (
        "Emeka Arjun Chidi Kenji Omar Kofi Sergei Vikram Emre Mateo Declan Sipho Björn Tariq Jamal Pedro Hamza Thabo Matteo Jun "
        "Aleksander Santiago Kiran Femi Lukas Farid Ibrahim Yusuf Hugo Anders"
    ).split(),
    "surnames": [
        "Eze", "Nowak", "García", "Reddy", "Chen", "Mansour", "Obi", "Nakamura", "Wiśniewska", "Farouk", "Ní Bhriain", "Asante",
        "Moretti", "Petrov", "Suleiman", "Pham", "Johansson", "Menon", "Bianchi", "Demir", "Khumalo", "Ortega", "Watanabe",
        "Georgiou", "Gallagher", "Rahimi", "Mthembu", "Park", "Nair", "Lefèvre", "van der Berg", "MacLeod", "Abubakar",
        "Kaczmarek", "Okafor-Nwosu", "Hernández-López", "Zhou", "Kapoor", "Fitzgerald", "Achterberg", "Ng", "Santos",
        "Oyelaran", "Kuznetsova", "Haugen",
    ],
    "cities": [
        "Sheffield", "Nottingham", "Edinburgh", "Swansea", "Leicester", "Brighton", "Aberdeen", "Coventry", "Plymouth", "Derby",
        "Exeter", "Belfast", "Sunderland", "Preston", "Inverness", "Stoke-on-Trent", "Milton Keynes", "Southampton", "Cork",
        "Marseille", "Hamburg", "Porto", "Rotterdam", "Lagos", "Pune", "Auckland",
    ],
    "us_places": ["Chicago, IL", "Denver, CO", "Seattle, WA", "Austin, TX", "Portland, OR", "Columbus, OH", "Tucson, AZ"],
    "street_names": [
        "Birch", "Willow", "Chapel", "Market", "Albert", "Cedar", "Harbour", "Orchard", "Windmill", "Foxglove", "Kingfisher",
        "Juniper", "Hawthorn", "Primrose", "Sycamore", "Regent", "Lavender", "Copper Beech", "Wellington", "Tannery",
    ],
    "street_types": "Crescent Drive Terrace Way Grove Gardens Place Mews Row Street Road Walk Rise Square Avenue".split(),
    "mail_domains": ["mail.example.com", "example.co.uk", "inbox.example.org", "example.net"],
    "org_words": "Hillview Brookside Fairfield Westbury Lakeside Greenacre Stonebridge Millbrook Thornbury Ravenswood Silverdale".split(),
    "health_orgs": [
        "{city} Royal Infirmary", "{word} Health Centre", "{word} Surgery", "{city} Teaching Hospitals NHS Trust",
        "{city} Children's Hospital", "{word} Care Home", "{word} Hospice", "{word} Community Hospital", "{word} Medical Practice",
        "University Hospital {city}",
    ],
    "courts": [
        "{city} Magistrates' Court", "Employment Tribunal at {city}", "County Court at {city}", "Court of Appeal (Civil Division)",
        "First-tier Tribunal (Immigration and Asylum Chamber)", "{city} Family Court", "Upper Tribunal", "{city} Coroner's Court",
        "High Court of Justice, King's Bench Division", "Sheriff Court of {city}",
    ],
    "firms": [
        "{surname} {surname2} Solicitors", "{surname} Chambers", "{surname}, {surname2} & Partners", "{surname} Law Group",
        "{word} Legal LLP", "{surname} & Co.",
    ],
    "banks": ["{word} Building Society", "{word} Credit Union", "{word} Savings Bank", "Bank of {word}", "{word} Mutual Bank"],
    "employers": [
        "{word} Logistics plc", "{word} Consulting GmbH", "{word} Technologies Inc.", "{surname} & Sons", "{word} Engineering Limited",
        "{word} Healthcare Group", "{word} Retail LLC",
    ],
    "nrp": [
        "Kurdish", "Eritrean", "Vietnamese", "Brazilian", "Romanian", "Sikh", "Buddhist", "Lithuanian", "Pakistani", "Sudanese",
        "Protestant", "Syrian", "Filipino", "Afghan", "Colombian", "Ukrainian",
    ],
}
DIAGNOSES = [
    "acute pancreatitis", "a transient ischaemic attack", "pyelonephritis", "a community-acquired chest infection", "deep vein thrombosis",
    "an exacerbation of COPD", "a displaced ankle fracture", "diabetic ketoacidosis", "viral gastroenteritis", "heart failure",
]
MEDS = ["co-amoxiclav", "enoxaparin", "furosemide", "ondansetron", "prednisolone", "intravenous fluids", "morphine"]


def _us_place(m: Maker) -> tuple[Ent, Ent, Ent]:
    city, state = m.pick("us_places").split(", ")
    return Ent(city, "LOCATION"), Ent(state, "LOCATION"), Ent(m.digits(5), "ADDRESS")


# ----------------------------------------------------------------------------- health
def h_emergency(m: Maker) -> tuple[Doc, str, list[dict[str, str]]]:
    full, given, family, pron = m.person()
    doc = Doc()
    doc.fill(
        "{date}, {time}. {name}, {age} years old, was brought to the emergency department of {hospital} after {event}. "
        "{Pron} was assessed by {doctor} and given {med}. Impression: {dx}. Hospital No. {hno}.",
        date=m.date(), time=m.time(), name=Ent(full, "PERSON"), age=m.age(), hospital=m.org("health_orgs"),
        event=m.r.choice(["a collapse at work", "a cycling accident", "two days of vomiting", "a fall down the stairs"]),
        Pron=pron.capitalize(), doctor=m.name(), med=m.r.choice(MEDS), dx=m.r.choice(DIAGNOSES), hno=Ent(f"H{m.digits(7)}", "ID"),
    )
    return doc, "Emergency department note", []


def h_referral(m: Maker) -> tuple[Doc, str, list[dict[str, str]]]:
    full, given, family, pron = m.person()
    gp_full, gp_given, gp_family, _ = m.person()
    doc = Doc()
    doc.fill(
        "From: {gp_email}\nTo: {to}\nSubject: routine referral\n\nHello, I am writing from {practice} in {city} about {name}, "
        "a {age} y/o {nrp} {person} living at {street}, {postcode}, who has had {symptom} since {since}. "
        "{Poss} daughter {daughter} (tel {phone}) usually comes with {obj}.\nMany thanks,\n{gp}",
        gp_email=m.email(gp_given, gp_family), to=m.email("referrals", m.pick("org_words")), practice=m.org("health_orgs"),
        city=m.city(), name=Ent(full, "PERSON"), age=m.age(), nrp=m.nrp(), person="woman" if pron == "she" else "man",
        street=m.street(), postcode=m.postcode(), symptom=m.r.choice(["intermittent palpitations", "a persistent cough", "joint pain"]),
        since=m.date(), Poss="Her" if pron == "she" else "His", daughter=Ent(m.pick("female"), "PERSON"), phone=m.phone(),
        obj="her" if pron == "she" else "him", gp=Ent(gp_full, "PERSON"),
    )
    return doc, "GP referral e-mail", []


def h_us_clinic(m: Maker) -> tuple[Doc, str, list[dict[str, str]]]:
    city, state, zipcode = _us_place(m)
    doc = Doc()
    doc.fill(
        "Pt: {name}    DOB: {dob}    MRN: {mrn}\nPCP: Dr. {pcp}, {org}\nAddress: {street}, {city}, {state} {zip}\n"
        "Phone: {phone}    SSN: {ssn}\nAssessment: {dx}. Plan: {plan}.",
        name=m.name(), dob=m.dob(), mrn=Ent(m.digits(8), "ID"), pcp=m.name(), org=m.org("health_orgs"), street=m.street(),
        city=city, state=state, zip=zipcode, phone=m.phone(), ssn=Ent(f"9{m.digits(2)}-{m.digits(2)}-{m.digits(4)}", "ID"),
        dx=m.r.choice(DIAGNOSES), plan=m.r.choice(["repeat labs in two weeks", "start physical therapy", "refer to cardiology"]),
    )
    return doc, "Clinic visit summary", []


def h_handover(m: Maker) -> tuple[Doc, str, list[dict[str, str]]]:
    full, given, family, pron = m.person()
    doc = Doc()
    doc.fill(
        "Handover: {name} (age {age}) was admitted on {date} with {dx}. Next of kin: {nok} ({relation}), {phone}. "
        "{Pron} is a practising {nrp} and asked to see the chaplain. Allergies: {allergy}. Seen this morning by {doctor}; "
        "plan to discharge to {street}, {city} on {date2} if observations stay stable.",
        name=Ent(full, "PERSON"), age=m.age(), date=m.date(), dx=m.r.choice(DIAGNOSES), nok=m.name(),
        relation=m.r.choice(["husband", "wife", "son", "sister", "partner"]), phone=m.phone(), Pron=pron.capitalize(), nrp=m.nrp(),
        allergy=m.r.choice(["penicillin", "none known", "latex"]), doctor=m.name(), street=m.street(), city=m.city(), date2=m.date(),
    )
    return doc, "Nursing handover", []


def h_claim(m: Maker) -> tuple[Doc, str, list[dict[str, str]]]:
    doc = Doc()
    doc.fill(
        "Claim reference {claim}\nPolicy holder: {name}\nMember ID: {member}\nDate of treatment: {date}\nProvider: {org}\n"
        "Amount claimed: {money}\nDiagnosis: {dx}\nPay to IBAN {iban}",
        claim=Ent(f"CLM/{m.r.randint(2019, 2025)}/{m.digits(5)}", "ID"), name=m.name(),
        member=Ent(f"{m.letters(2)}{m.digits(1)}-{m.digits(3)}-{m.digits(2)}", "ID"), date=m.date(), org=m.org("health_orgs"),
        money=m.money(80, 6000), dx=m.r.choice(DIAGNOSES), iban=Ent(iban(m.r, "DE", m.digits(18)), "IBAN_CODE"),
    )
    return doc, "Health insurance claim", []


def h_discharge(m: Maker) -> tuple[Doc, str, list[dict[str, str]]]:
    full, given, family, pron = m.person()
    gp = m.name()
    doc = Doc()
    doc.fill(
        "DISCHARGE SUMMARY\n{name} | NHS {nhs} | born {dob}\nAdmitted: {date} at {time}    Discharged: {date2}\n"
        "Consultant: Prof. {consultant}\nReason for admission: {dx}\nProcedure: {procedure}\n"
        "Follow-up with {gp} at {practice}, {city}. A copy was e-mailed to {email}.",
        name=Ent(full, "PERSON"), nhs=Ent(nhs_number(m.r), "ID"), dob=m.dob(), date=m.date(), time=m.time(), date2=m.date(),
        consultant=m.name(), dx=m.r.choice(DIAGNOSES), procedure=m.r.choice(["CT pulmonary angiogram", "ERCP", "open reduction and internal fixation"]),
        gp=gp, practice=m.org("health_orgs"), city=m.city(), email=m.email(given, family),
    )
    return doc, "Discharge summary", []


# ----------------------------------------------------------------------------- legal
def l_judgment(m: Maker) -> tuple[Doc, str, list[dict[str, str]]]:
    year = m.r.randint(2015, 2025)
    doc = Doc()
    doc.fill(
        "Neutral Citation Number: {citation}\nCase No: {case}\n{court}\nDate: {date}\nBefore: Mrs Justice {judge}\n"
        "Between: {claimant} (Claimant) and {company} (Defendant)\n{counsel} (instructed by {firm}) for the Claimant.\n"
        "The claim for {claim} is {outcome}.",
        citation=Ent(f"[{year}] {m.r.choice(['EWHC', 'EWCA Civ', 'UKSC'])} {m.r.randint(1, 3999)}", "ID"),
        case=Ent(f"{m.letters(2)}-{year}-{m.digits(6)}", "ID"), court=m.org("courts"), date=m.date(), judge=Ent(m.pick("surnames"), "PERSON"),
        claimant=m.name(), company=m.org("employers"), counsel=m.name(), firm=m.org("firms"),
        claim=m.r.choice(["negligent misstatement", "breach of warranty", "professional negligence"]),
        outcome=m.r.choice(["dismissed", "allowed in part", "allowed"]),
    )
    return doc, "High Court judgment header", []


def l_us_complaint(m: Maker) -> tuple[Doc, str, list[dict[str, str]]]:
    city, state, _ = _us_place(m)
    att_full, att_given, att_family, _ = m.person()
    doc = Doc()
    doc.fill(
        "{court}\nCivil Action No. {docket}\n"
        "{plaintiff}, Plaintiff, v. {defendant}, Defendant.\nComplaint filed {date}. Plaintiff, a resident of {city}, {state}, "
        "alleges {claim}. Attorney for Plaintiff: {attorney}, {firm}, {phone}, {email}.",
        court=Ent(f"United States District Court for the {m.r.choice(['Northern', 'Southern', 'Eastern', 'Western'])} District of {m.r.choice(['Illinois', 'Texas', 'Ohio', 'Washington'])}", "ORGANIZATION"),
        docket=Ent(f"1:{m.r.randint(19, 25)}-cv-{m.digits(5)}", "ID"), plaintiff=m.name(), defendant=m.name(), date=m.date(), city=city,
        state=state, claim=m.r.choice(["wrongful termination", "a breach of a lease", "discrimination in housing"]),
        attorney=Ent(att_full, "PERSON"), firm=m.org("firms"), phone=m.phone(), email=m.email(att_given, att_family),
    )
    return doc, "Civil complaint caption", []


def l_tribunal(m: Maker) -> tuple[Doc, str, list[dict[str, str]]]:
    doc = Doc()
    doc.fill(
        "Claimant: {name}\nRespondent: {employer}\nHeard at: {tribunal}\nOn: {date} and {date2}\nEmployment Judge {judge}\n\n"
        "The claimant was employed as a {job} from {start} until {end}, earning {salary} a year. The complaint of {complaint} is "
        "{outcome}. The respondent shall pay the claimant {award}.",
        name=m.name(), employer=m.org("employers"), tribunal=m.org("courts"), date=m.date(), date2=m.date(),
        judge=Ent(m.pick("surnames"), "PERSON"), job=m.r.choice(["warehouse supervisor", "care assistant", "software tester"]),
        start=m.date((2010, 2019)), end=m.date(), salary=m.money(18000, 60000), complaint=m.r.choice(["unfair dismissal", "unpaid holiday pay"]),
        outcome=m.r.choice(["well founded", "not well founded"]), award=m.money(500, 25000),
    )
    return doc, "Employment tribunal judgment", []


def l_asylum(m: Maker) -> tuple[Doc, str, list[dict[str, str]]]:
    full, given, family, pron = m.person()
    doc = Doc()
    doc.fill(
        "Appeal Number: {appeal}\n{tribunal}\nThe appellant, {name}, is a {nrp} national born on {dob} in {birthplace}. "
        "{Pron} claimed asylum on {date}. Representative: {rep} of {firm}. Home Office reference {ref}. The appeal is {outcome}.",
        appeal=Ent(f"PA/{m.digits(5)}/{m.r.randint(2019, 2025)}", "ID"), tribunal=m.org("courts"), name=Ent(full, "PERSON"),
        nrp=m.nrp(), dob=m.dob(), birthplace=m.city(), Pron=pron.capitalize(), date=m.date(), rep=m.name(), firm=m.org("firms"),
        ref=Ent(f"{m.letters(1)}{m.digits(7)}", "ID"), outcome=m.r.choice(["dismissed", "allowed", "remitted for a fresh hearing"]),
    )
    return doc, "Asylum appeal decision", []


def l_charge(m: Maker) -> tuple[Doc, str, list[dict[str, str]]]:
    full, given, family, pron = m.person()
    doc = Doc()
    doc.fill(
        "CHARGE SHEET\nSurname: {surname}    Forenames: {given}\nDate of birth: {dob}\nAddress: {street}, {city}, {postcode}\n"
        "Charge: {offence}\nCustody record: {custody}\nVehicle registration: {plate}\nOfficer in case: DC {officer}, collar number {collar}\n"
        "Bailed to appear at {court} on {date} at {time}.",
        surname=Ent(family, "PERSON"), given=Ent(given, "PERSON"), dob=m.dob(), street=m.street(), city=m.city(), postcode=m.postcode(),
        offence=m.r.choice(["dangerous driving", "possession of a bladed article", "fraud by false representation"]),
        custody=Ent(f"CR/{m.digits(6)}/{m.r.randint(19, 25)}", "ID"), plate=Ent(f"{m.letters(2)}{m.digits(2)} {m.letters(3)}", "ID"),
        officer=Ent(m.pick("surnames"), "PERSON"), collar=Ent(m.digits(4), "ID"), court=m.org("courts"), date=m.date(), time=m.time(),
    )
    return doc, "Charge sheet", []


def l_letter(m: Maker) -> tuple[Doc, str, list[dict[str, str]]]:
    full, given, family, pron = m.person()
    sol_full, sol_given, sol_family, _ = m.person()
    doc = Doc()
    doc.fill(
        "Our ref: {ref}\nYour ref: {ref2}\n{date}\nDear {title} {surname},\nRe: {matter}\nWe act for {client} in this matter. "
        "Please send the signed forms to {street}, {city} {postcode} or e-mail {email}. If you have any questions, call "
        "{solicitor} on {phone}.\nYours sincerely\n{firm}",
        ref=Ent(f"{m.letters(3)}/{m.digits(4)}/{m.letters(2)}", "ID"), ref2=Ent(f"{m.digits(6)}", "ID"), date=m.date(),
        title="Ms" if pron == "she" else "Mr", surname=Ent(family, "PERSON"),
        matter=m.r.choice(["the sale of the property", "the boundary dispute", "your late father's estate"]), client=m.name(),
        street=m.street(), city=m.city(), postcode=m.postcode(), email=m.email(sol_given, sol_family), solicitor=Ent(sol_full, "PERSON"),
        phone=m.phone(), firm=m.org("firms"),
    )
    return doc, "Solicitor's letter", []


# ----------------------------------------------------------------------------- finance
def f_eu_statement(m: Maker) -> tuple[Doc, str, list[dict[str, str]]]:
    country = m.r.choice(["NL", "DE"])
    bban = m.letters(4) + m.digits(10) if country == "NL" else m.digits(18)
    doc = Doc()
    doc.fill(
        "Statement - {bank}\nAccount holder: {name}\nIBAN: {iban}\nBIC: {bic}\nPeriod: {period}\n\nDate | Description | Amount\n",
        bank=m.org("banks"), name=m.name(), iban=Ent(iban(m.r, country, bban), "IBAN_CODE"),
        bic=Ent(f"{m.letters(4)}{country}{m.letters(2)}", "ID"), period=Ent(f"{MONTHS[m.r.randint(0, 11)]} {m.r.randint(2020, 2025)}", "DATE_TIME"),
    )
    for category in m.r.sample(["Groceries", "Pharmacy", "Fuel", "Streaming subscription", "Bakery", "Parking"], 3):
        doc.fill("{d} | {cat} - card payment | {amount}\n", d=m.date(), cat=category, amount=m.money(3, 180, sign=True))
    doc.fill("Balance carried forward: {bal}", bal=m.money(100, 8000))
    return doc, "Current account statement", []


def f_wire(m: Maker) -> tuple[Doc, str, list[dict[str, str]]]:
    doc = Doc()
    doc.fill(
        "Beneficiary name: {name}\nBeneficiary address: {street}, {city}\nBeneficiary bank: {bank}\nSWIFT/BIC: {bic}\n"
        "Account no.: {acct}\nAmount: {money}\nPurpose: {purpose}\nOrdering customer: {name2}, customer no. {cust}",
        name=m.name(), street=m.street(), city=m.city(), bank=m.org("banks"), bic=Ent(f"{m.letters(4)}GB{m.digits(1)}{m.letters(1)}", "ID"),
        acct=Ent(m.digits(8), "ID"), money=m.money(200, 40000), purpose=m.r.choice(["invoice settlement", "school fees", "family support"]),
        name2=m.name(), cust=Ent(f"{m.digits(3)}-{m.digits(4)}", "ID"),
    )
    return doc, "International transfer order", []


def f_loan(m: Maker) -> tuple[Doc, str, list[dict[str, str]]]:
    full, given, family, pron = m.person()
    doc = Doc()
    doc.fill(
        "{name} ({age}) has been employed by {employer} since {since} as a {job}, with a gross annual salary of {salary}. "
        "{Pron} rents a flat at {street}, {postcode} for {rent} per month. Credit card {card} has an outstanding balance of "
        "{balance}. Requested loan: {loan} over five years for {purpose}.",
        name=Ent(full, "PERSON"), age=m.age(), employer=m.org("employers"), since=m.date((2008, 2023)),
        job=m.r.choice(["lab technician", "electrician", "accounts assistant"]), salary=m.money(21000, 75000), Pron=pron.capitalize(),
        street=m.street(), postcode=m.postcode(), rent=m.money(500, 1800), card=m.card(), balance=m.money(100, 6000),
        loan=m.money(2000, 25000), purpose=m.r.choice(["a car", "home improvements", "debt consolidation"]),
    )
    return doc, "Loan application summary", []


def f_alert(m: Maker) -> tuple[Doc, str, list[dict[str, str]]]:
    full, given, family, pron = m.person()
    ip = f"203.0.113.{m.r.randint(1, 254)}" if m.r.random() < 0.7 else f"2001:db8:{m.r.randint(1, 9999):x}::{m.r.randint(1, 255):x}"
    doc = Doc()
    doc.fill(
        "Dear {given},\nWe noticed a sign-in to your online banking from IP address {ip} at {time} on {date}. A payment of {money} "
        "was attempted from your card ending {last4}. If this wasn't you, call us on {phone} or visit {url}. Your customer number is {cust}.",
        given=Ent(given, "PERSON"), ip=Ent(ip, "IP_ADDRESS"), time=m.time(), date=m.date(), money=m.money(50, 3000),
        last4=Ent(m.digits(4), "ID"), phone=m.phone(), url=Ent(f"https://secure.{m.pick('org_words').lower()}-bank.example.com/verify", "URL"),
        cust=Ent(m.digits(10), "ID"),
    )
    return doc, "Fraud alert", []


def f_us_statement(m: Maker) -> tuple[Doc, str, list[dict[str, str]]]:
    city, state, zipcode = _us_place(m)
    doc = Doc()
    doc.fill(
        "{bank}\n{name}\n{street}\n{city}, {state} {zip}\nChecking account {acct} | Routing number {routing}\n"
        "Statement period {d1} - {d2}\n\n{d3}  ACH deposit - payroll - {employer}  {pay}\n{d4}  Check #{check}  {chk}\n"
        "{d5}  Utilities - electric  {util}",
        bank=m.org("banks"), name=m.name(), street=m.street(), city=city, state=state, zip=zipcode, acct=Ent(f"****{m.digits(4)}", "ID"),
        routing=Ent(m.digits(9), "ID"), d1=m.date(), d2=m.date(), d3=m.date(), employer=m.org("employers"), pay=m.money(900, 5000),
        d4=m.date(), check=Ent(m.digits(4), "ID"), chk=m.money(20, 900), d5=m.date(), util=m.money(30, 300),
    )
    return doc, "Checking account statement", []


def f_mortgage(m: Maker) -> tuple[Doc, str, list[dict[str, str]]]:
    full, given, family, pron = m.person()
    doc = Doc()
    doc.fill(
        "Mortgage account {mort}\nProperty: {street}, {city} {postcode}\nBorrowers: {name} and {name2}\n"
        "We confirm that your monthly payment will change to {payment} from {date}. The interest rate is 4.2% fixed for two years. "
        "Contact the mortgage team on {phone} or at {email}.",
        mort=Ent(f"{m.digits(4)} {m.digits(4)} {m.digits(2)}", "ID"), street=m.street(), city=m.city(), postcode=m.postcode(),
        name=Ent(full, "PERSON"), name2=m.name(), payment=m.money(400, 2500), date=m.date(), phone=m.phone(), email=m.email(given, family),
    )
    return doc, "Mortgage payment letter", []


STYLE = Style(
    name="B",
    pools=POOLS,
    date=_date,
    time=_time,
    phone=_phone,
    money=_money,
    email_locals=["{gi}.{f}{n}", "{f}_{g}", "{g}{f}", "{g}-{f}"],
    templates={
        "health": [h_emergency, h_referral, h_us_clinic, h_handover, h_claim, h_discharge],
        "legal": [l_judgment, l_us_complaint, l_tribunal, l_asylum, l_charge, l_letter],
        "finance": [f_eu_statement, f_wire, f_loan, f_alert, f_us_statement, f_mortgage],
    },
)
