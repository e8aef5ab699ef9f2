"""Style "C": a held-out labelled set (detect_holdout.jsonl), written after the detectors were
developed against style "B" and never used to tune them. New layouts (chat logs, transcripts,
listings, credit files, invoices, narrative notes), new name/place pools and formats. Its scores
are the honest estimate of how the detectors do on text they were not shaped on.
"""

from __future__ import annotations

import random

from dpfusion_chains.data.builder import Doc, Ent, Maker, Style

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"]


def _date(r: random.Random, y: int, m: int, d: int) -> str:
    month = MONTHS[m - 1]
    return r.choice([f"{d} {month}, {y}", f"{month} {d} {y}", f"{d:02d}/{m:02d}/{str(y)[2:]}", f"{y}.{m:02d}.{d:02d}", f"{d}-{month[:3]}-{y}"])


def _time(r: random.Random, h: int, mnt: int) -> str:
    return r.choice([f"{h:02d}:{mnt:02d}", f"{h % 12 or 12}:{mnt:02d} {'AM' if h < 12 else 'PM'}", f"{h}h{mnt:02d}"])


def _phone(r: random.Random) -> str:
    n, k = r.randint(0, 999), r.randint(0, 99)
    return r.choice([f"0113 496 0{n:03d}", f"+44 7700 900 {n:03d}", f"(617) 555-01{k:02d}", f"+33 1 99 00 {k:02d} {k:02d}", f"0191 498 0{n:03d}"])


def _money(r: random.Random, amount: float, sign: bool) -> str:
    return r.choice([f"£{amount:,.2f}", f"{amount:,.2f} EUR", f"${round(amount):,}", f"GBP {amount:,.2f}", f"€ {round(amount):,}"])


POOLS: dict[str, list[str]] = {
    "female": "Olga Beatriz Nkechi Saanvi Hye-jin Marta Aoife Yasmin Francesca Ingeborg Thu Amina Luisa Rania Sakura Wanjiru Elif Paulina Catalina Noor".split(),
    "male": "Tadeusz Chukwuma Rohan Takeshi Giorgos Rashid Cian Kwabena Alejandro Mikhail Bilal Duc Tendai Oskar Malik Enzo Raúl Seun Haruto Ivo".split(),
    "surnames": [
        "Adebayo", "Kowalski", "Rodríguez", "Gupta", "Huang", "Okoro", "Yamamoto", "Zielińska", "El-Sayed", "Ó Briain", "Boateng",
        "Ricci", "Ivanova", "Hussain", "Nguyen", "Eriksson", "Pillai", "Colombo", "Aydın", "Ndlovu", "Castillo", "Kobayashi",
        "Nikolaidis", "Doherty", "Hosseini", "Zulu", "Choi", "Rao", "Girard", "de Vries", "Campbell", "Lewandowski",
        "Nwachukwu-Ade", "Sánchez-Ruiz", "Liu", "Malhotra", "O'Connor", "Bakker",
    ],
    "cities": [
        "Bradford", "Wolverhampton", "Stirling", "Lancaster", "Canterbury", "Salisbury", "Galway", "Limerick", "Lille", "Bordeaux",
        "Munich", "Cologne", "Valencia", "Bilbao", "Utrecht", "Gdańsk", "Kraków", "Nairobi", "Accra", "Chennai", "Melbourne",
        "Vancouver", "Atlanta",
    ],
    "street_names": "Poplar Linden Foundry Quarry Bramble Heron Ropewalk Tanner Cooper Mulberry Rowan Larch Falcon Clover Ferry".split(),
    "street_types": "Lane Close Road Street Hill View Court Park Green Way".split(),
    "mail_domains": ["post.example.com", "example.ie", "home.example.net"],
    "org_words": "Ashgrove Beacon Eastfield Glenmore Kestrel Northfield Pinewood Redcliffe Summerhill Woodlands".split(),
    "health_orgs": ["{word} Hospital", "{city} University Hospital", "{word} Family Practice", "{word} Memorial Hospital", "{word} Medical Centre"],
    "courts": ["{city} Crown Court", "County Court at {city}", "{city} Magistrates' Court", "First-tier Tribunal (Property Chamber)"],
    "firms": ["{surname} & {surname2} LLP", "{word} Law Solicitors", "{surname} Legal"],
    "banks": ["{word} Bank", "{word} Building Society", "{word} Finance"],
    "employers": ["{word} Foods Ltd", "{word} Analytics Limited", "{word} Construction plc"],
    "nrp": ["Nigerian", "Polish", "Hindu", "Muslim", "Catholic", "Turkish", "Greek", "Jewish", "Sikh", "Irish"],
}


def h_progress(m: Maker) -> tuple[Doc, str, list[dict[str, str]]]:
    full, given, family, pron = m.person()
    doc = Doc()
    doc.fill(
        "{title} {name} is a {age}-year-old retired {job} who lives alone in {city}. {Poss} GP, Dr {gp}, referred {obj} after "
        "{pron} was found confused by a neighbour, {neighbour}, on {date}. On arrival at {hospital} {pron} was disorientated; "
        "a CT head was normal and a urine infection was treated with nitrofurantoin. {Pron} will go home on {date2} with carers "
        "twice a day. {Poss} son can be reached on {phone}.",
        title="Mrs." if pron == "she" else "Mr.", name=Ent(full, "PERSON"), age=m.age(), job=m.r.choice(["teacher", "postman", "engineer"]),
        city=m.city(), Poss="Her" if pron == "she" else "His", gp=m.name(), obj="her" if pron == "she" else "him", pron=pron,
        neighbour=m.name(), date=m.date(), hospital=m.org("health_orgs"), Pron=pron.capitalize(), date2=m.date(), phone=m.phone(),
    )
    return doc, "Ward progress note", []


def h_lab(m: Maker) -> tuple[Doc, str, list[dict[str, str]]]:
    full, given, family, pron = m.person()
    doc = Doc()
    doc.fill(
        "LABORATORY REPORT\nSpecimen no. {spec}\nCollected: {date} {time}\nRequesting clinician: {doc}\nPatient: {surname}, {given}\n"
        "Sex: {sex}   Age: {age}\nHaemoglobin 98 g/L (low); ferritin 9 ug/L (low). Comment: consistent with iron deficiency.\n"
        "Report sent to {email}",
        spec=Ent(f"{m.letters(1)}{m.digits(2)}-{m.digits(6)}", "ID"), date=m.date(), time=m.time(), doc=m.name(),
        surname=Ent(family.upper(), "PERSON"), given=Ent(given, "PERSON"), sex="F" if pron == "she" else "M", age=m.age(),
        email=m.email(given, family),
    )
    return doc, "Laboratory report", []


def h_chat(m: Maker) -> tuple[Doc, str, list[dict[str, str]]]:
    full, given, family, pron = m.person()
    doc_surname = m.pick("surnames")
    doc = Doc()
    doc.fill(
        "[{t1}] {given}: hi, I've had a rash on my arms since the weekend\n[{t2}] Dr {doc}: Sorry to hear that. Are you still living at {street}?\n"
        "[{t3}] {given2}: yes, and my new number is {phone}\n[{t4}] Dr {doc2}: Thanks. I've sent a prescription for an emollient to {pharmacy}.",
        t1=m.time(), given=Ent(given, "PERSON"), t2=m.time(), doc=Ent(doc_surname, "PERSON"), street=m.street(), t3=m.time(),
        given2=Ent(given, "PERSON"), phone=m.phone(), t4=m.time(), doc2=Ent(doc_surname, "PERSON"), pharmacy=m.org("health_orgs"),
    )
    return doc, "Online consultation log", []


def l_tenancy(m: Maker) -> tuple[Doc, str, list[dict[str, str]]]:
    doc = Doc()
    doc.fill(
        "Case reference: {case}\n{court}\nThe tenant, {name}, has occupied {street}, {city} since {date}. The landlord, {company}, "
        "seeks possession on the ground of rent arrears of {arrears}. The tenant's daughter, {daughter}, gave evidence by video. "
        "Having considered the evidence the tribunal refuses the application.",
        case=Ent(f"{m.letters(3)}/{m.digits(2)}{m.letters(2)}/{m.letters(3)}/{m.r.randint(2020, 2025)}/{m.digits(4)}", "ID"),
        court=m.org("courts"), name=m.name(), street=m.street(), city=m.city(), date=m.date(), company=m.org("employers"),
        arrears=m.money(300, 9000), daughter=m.name(),
    )
    return doc, "Tenancy tribunal decision", []


def l_interview(m: Maker) -> tuple[Doc, str, list[dict[str, str]]]:
    full, given, family, pron = m.person()
    doc = Doc()
    doc.fill(
        "Record of interview: {name} (DOB {dob})\nPresent: DC {officer}; {solicitor}, solicitor, of {firm}\n"
        "Q: Where were you on {date}?\nA: At my sister {sister}'s flat in {city}. I stayed there until about {time}.\n"
        "Q: Do you own a phone ending {last}?\nA: No comment.",
        name=Ent(full, "PERSON"), dob=m.dob(), officer=Ent(m.pick("surnames"), "PERSON"), solicitor=m.name(), firm=m.org("firms"),
        date=m.date(), sister=Ent(m.pick("female"), "PERSON"), city=m.city(), time=m.time(), last=Ent(m.digits(3), "ID"),
    )
    return doc, "Police interview record", []


def l_listing(m: Maker) -> tuple[Doc, str, list[dict[str, str]]]:
    doc = Doc()
    doc.fill("Daily cause list for {date}\n{court}\n", date=m.date(), court=m.org("courts"))
    for _ in range(3):
        doc.fill(
            "{time}  {case}  {a} v {b}  ({kind})\n", time=m.time(), case=Ent(f"{m.digits(2)}{m.letters(2)}{m.digits(5)}", "ID"),
            a=Ent(m.pick("surnames").upper(), "PERSON"), b=Ent(m.pick("surnames").upper(), "PERSON"),
            kind=m.r.choice(["small claim", "directions", "possession", "costs hearing"]),
        )
    return doc, "Court cause list", []


def f_credit(m: Maker) -> tuple[Doc, str, list[dict[str, str]]]:
    doc = Doc()
    doc.fill(
        "Name on file: {name}\nPrevious addresses: {street}, {city} (3 years); {street2}, {city2}\nAccounts: credit card with {bank}, "
        "opened {date}, limit {limit}; personal loan repaid {date2}.\nSearches: {lender} on {date3}. Electoral roll: registered.",
        name=m.name(), street=m.street(), city=m.city(), street2=m.street(), city2=m.city(), bank=m.org("banks"), date=m.date(),
        limit=m.money(500, 8000), date2=m.date(), lender=m.org("banks"), date3=m.date(),
    )
    return doc, "Credit file extract", []


def f_call(m: Maker) -> tuple[Doc, str, list[dict[str, str]]]:
    full, given, family, pron = m.person()
    doc = Doc()
    doc.fill(
        "Call notes {date}\nAgent: Can you confirm your full name and date of birth?\nCaller: {name}, {dob}.\n"
        "Agent: And the last four digits of the card?\nCaller: {last4}.\nAgent: I can see a payment of {amount} to an online retailer "
        "that you don't recognise. I've blocked the card and a new one will go to {street}, {postcode}.",
        date=m.date(), name=Ent(full, "PERSON"), dob=m.dob(), last4=Ent(m.digits(4), "ID"), amount=m.money(20, 900), street=m.street(),
        postcode=m.postcode(),
    )
    return doc, "Card fraud call notes", []


def f_invoice(m: Maker) -> tuple[Doc, str, list[dict[str, str]]]:
    doc = Doc()
    doc.fill(
        "INVOICE {inv}\nBill to: {name}, {company}\nVAT reg. GB {vat}\nDate: {date}   Due: {due}\nConsulting services, 12 hours: {net}\n"
        "Total due: {total}\nPay by transfer to sort code {sort}, account {acct}, quoting {inv2}.",
        inv=Ent(f"{m.r.randint(2021, 2025)}-{m.digits(4)}", "ID"), name=m.name(), company=m.org("employers"), vat=Ent(f"{m.digits(3)} {m.digits(4)} {m.digits(2)}", "ID"),
        date=m.date(), due=m.date(), net=m.money(500, 4000), total=m.money(600, 4800), sort=Ent(f"{m.digits(2)}-{m.digits(2)}-{m.digits(2)}", "ID"),
        acct=Ent(m.digits(8), "ID"), inv2=Ent(f"INV{m.digits(5)}", "ID"),
    )
    return doc, "Invoice", []


STYLE = Style(
    name="C",
    pools=POOLS,
    date=_date,
    time=_time,
    phone=_phone,
    money=_money,
    email_locals=["{g}{f}{n}", "{f}.{gi}", "{g}_{n}"],
    templates={
        "health": [h_progress, h_lab, h_chat],
        "legal": [l_tenancy, l_interview, l_listing],
        "finance": [f_credit, f_call, f_invoice],
    },
)
