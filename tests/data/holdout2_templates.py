"""Style "D": a second held-out set (detect_holdout2.jsonl), written after all detector changes and
scored once, untouched: the honest estimate of recall on unseen layouts. Referral letters,
immunisation records, court orders, solicitors' e-mails, payslips and payment-app histories, with
new name/place pools and formats (including things the detectors were never taught, such as
@usernames).
"""

from __future__ import annotations

import random

from dpfusion_chains.data.builder import Doc, Ent, Maker, Style

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"]


def _date(r: random.Random, y: int, m: int, d: int) -> str:
    month = MONTHS[m - 1]
    return r.choice([f"{d} {month[:3]}. {y}", f"{m}/{d}/{y}", f"{month} {d}", f"{d}.{m}.{y}", f"{y}-{m:02d}-{d:02d}"])


def _time(r: random.Random, h: int, mnt: int) -> str:
    return r.choice([f"{h:02d}:{mnt:02d}", f"{h % 12 or 12}.{mnt:02d}{'am' if h < 12 else 'pm'}"])


def _phone(r: random.Random) -> str:
    n = r.randint(0, 999)
    return r.choice([f"0118 496 0{n:03d}", f"+44 28 9649 6{n:03d}", f"07700 900 {n:03d}", f"+1-202-555-0{n % 200:03d}"])


def _money(r: random.Random, amount: float, sign: bool) -> str:
    return r.choice([f"£{amount:,.2f}", f"£{round(amount)}", f"${amount:,.2f}", f"{amount:,.2f} GBP"])


POOLS: dict[str, list[str]] = {
    "female": "Halima Greta Precious Ishita Min-ji Renata Orla Soraya Benedetta Solveig Hoa Fadumo Inés Dalia Aiko Akosua Zeynep Kasia Lorena Mariam".split(),
    "male": "Wojciech Obinna Siddharth Daisuke Stavros Karim Ruairí Yaw Ignacio Andrei Usman Quang Nikos Farai Emil Idris Lorenzo Joaquim Tunde Sora".split(),
    "surnames": [
        "Okafor", "Mazur", "Jiménez", "Banerjee", "Wu", "Nwosu", "Fujita", "Dąbrowska", "Abdullah", "Mac Giolla", "Owusu", "Greco",
        "Smirnova", "Qureshi", "Vo", "Lund", "Krishnan", "Marino", "Şahin", "Moyo", "Navarro", "Ishikawa", "Alexiou", "Kavanagh",
        "Tehrani", "Dube", "Yoon", "Iyengar", "Rousseau", "ter Horst", "Sutherland", "Adeleke-Bright", "Figueroa", "Chowdhury",
    ],
    "cities": "Reading Swindon Perth Oban Durham Carlisle Kilkenny Nantes Leipzig Seville Eindhoven Poznań Kampala Kumasi Mysore Adelaide Calgary Phoenix".split(),
    "street_names": "Beechwood Osprey Millstone Cherry Tree Wharfside Bluebell Greystone Sandpiper Holly Ivy".split(),
    "street_types": "Road Avenue Close Lane Drive Crescent".split(),
    "mail_domains": ["firm.example.co.uk", "example.org", "lawmail.example.com"],
    "org_words": "Abbeyfield Brightwater Crossways Dunmore Elmhurst Foxwood Glenview Harcourt Ivybridge Juniper".split(),
    "health_orgs": ["{word} Medical Group", "{word} Surgery", "{city} General Infirmary"],
    "courts": ["Family Court at {city}", "{city} County Court", "Central Family Court"],
    "firms": ["{surname} {surname2} LLP", "{word} Family Law", "{surname} & Partners"],
    "banks": ["{word} Bank", "{word} Savings"],
    "employers": ["{word} Hotels Ltd", "{word} Freight Limited", "{word} Software plc", "{word} Bakery Ltd"],
    "nrp": ["Ghanaian", "Bangladeshi", "Turkish", "Eritrean", "Portuguese", "Catholic", "Muslim", "Hindu"],
}


def h_referral(m: Maker) -> tuple[Doc, str, list[dict[str, str]]]:
    full, given, family, pron = m.person()
    partner = m.pick("male" if pron == "she" else "female")
    doc = Doc()
    doc.fill(
        "Thank you for seeing this pleasant {age}-year-old {nrp} {person}, {name}, whom I have known for several years. {Pron} works "
        "as a chef at {employer} and lives with {poss} partner {partner} in {city}. Over the last two months {pron} has noticed "
        "blood in the stool. I would be grateful for an urgent colonoscopy.\nWith kind regards,\n{doctor}\n{practice}",
        age=m.age(), nrp=m.nrp(), person="lady" if pron == "she" else "gentleman", name=Ent(full, "PERSON"), Pron=pron.capitalize(),
        employer=m.org("employers"), poss="her" if pron == "she" else "his", partner=Ent(f"{partner} {family}", "PERSON"), city=m.city(),
        pron=pron, doctor=m.name(), practice=m.org("health_orgs"),
    )
    return doc, "Referral letter", []


def h_immunisation(m: Maker) -> tuple[Doc, str, list[dict[str, str]]]:
    full, given, family, pron = m.person()
    doc = Doc()
    doc.fill(
        "Immunisation record\nChild: {child}   Born: {dob}\nParent/guardian: {parent}\nHealth visitor: {hv}\n",
        child=Ent(full, "PERSON"), dob=m.date((2018, 2024)), parent=m.name(), hv=m.name(),
    )
    for vaccine in m.r.sample(["MMR dose 1", "6-in-1 dose 2", "MenB booster", "Pneumococcal"], 2):
        doc.fill(
            "{date}  {vaccine}  batch {batch}  given at {clinic}\n", date=m.date((2019, 2025)), vaccine=vaccine,
            batch=Ent(f"{m.letters(2)}{m.digits(4)}", "ID"), clinic=m.org("health_orgs"),
        )
    return doc, "Immunisation record", []


def l_order(m: Maker) -> tuple[Doc, str, list[dict[str, str]]]:
    resp_full, resp_given, resp_family, _ = m.person()
    doc = Doc()
    doc.fill(
        "In the {court}\nCase number {case}\nUpon hearing counsel for the Applicant (Ms {counsel}) and the Respondent in person, "
        "IT IS ORDERED THAT the former matrimonial home at {street}, {city} shall be sold. Mr {resp} shall pay {money} per month "
        "for the children, {child1} and {child2}, until each finishes full-time education.",
        court=m.org("courts"), case=Ent(f"{m.letters(2)}{m.digits(2)}D{m.digits(5)}", "ID"), counsel=m.name(),
        street=m.street(), city=m.city(), resp=Ent(resp_family, "PERSON"), money=m.money(150, 1200),
        child1=Ent(m.pick("female"), "PERSON"), child2=Ent(m.pick("male"), "PERSON"),
    )
    return doc, "Financial remedy order", []


def l_email(m: Maker) -> tuple[Doc, str, list[dict[str, str]]]:
    a_full, a_given, a_family, _ = m.person()
    b_full, b_given, b_family, _ = m.person()
    doc = Doc()
    doc.fill(
        "From: {a} <{a_mail}>\nSent: {date} {time}\nTo: {b}\nSubject: settlement - our ref {ref}\n\n{b_given}, further to our call, "
        "my client {client} accepts the offer of {money}. I will send the signed order to {court} by Friday.\nBest,\n{a_given}",
        a=Ent(a_full, "PERSON"), a_mail=m.email(a_given, a_family), date=m.date(), time=m.time(), b=Ent(b_full, "PERSON"),
        ref=Ent(f"{m.letters(2)}/{m.digits(5)}", "ID"), b_given=Ent(b_given, "PERSON"), client=m.name(), money=m.money(2000, 90000),
        court=m.org("courts"), a_given=Ent(a_given, "PERSON"),
    )
    return doc, "Solicitors' e-mail", []


def f_payslip(m: Maker) -> tuple[Doc, str, list[dict[str, str]]]:
    doc = Doc()
    doc.fill(
        "PAYSLIP - {employer}\nEmployee: {name}   Employee no: {empno}\nNI number: {nino}   Tax code: 1257L\nPay date: {date}\n"
        "Basic pay {basic}\nOvertime {overtime}\nIncome tax -{tax}\nNet pay {net}\nPaid to account ending {last4}",
        employer=m.org("employers"), name=m.name(), empno=Ent(m.digits(6), "ID"),
        nino=Ent(f"{m.letters(2)} {m.digits(2)} {m.digits(2)} {m.digits(2)} {m.r.choice('ABCD')}", "ID"), date=m.date(),
        basic=m.money(1500, 4000), overtime=m.money(50, 600), tax=m.money(200, 900), net=m.money(1200, 3500), last4=Ent(m.digits(4), "ID"),
    )
    return doc, "Payslip", []


def f_app(m: Maker) -> tuple[Doc, str, list[dict[str, str]]]:
    full, given, family, pron = m.person()
    doc = Doc()
    doc.fill(
        "Activity\nYou paid {p1} {m1} for 'pizza night' on {d1}\n{p2} paid you {m2} on {d2}\nYou paid {p3} {m3} for rent share on {d3}\n"
        "Linked bank: {bank} ending {last4}\nUsername: @{handle}",
        p1=m.name(), m1=m.money(5, 60), d1=m.date(), p2=m.name(), m2=m.money(5, 60), d2=m.date(), p3=m.name(), m3=m.money(200, 900),
        d3=m.date(), bank=m.org("banks"), last4=Ent(m.digits(4), "ID"), handle=Ent(f"{given.lower()}-{family.lower().replace(' ', '')}{m.digits(2)}", "ID"),
    )
    return doc, "Payment app history", []


STYLE = Style(
    name="D",
    pools=POOLS,
    date=_date,
    time=_time,
    phone=_phone,
    money=_money,
    email_locals=["{g}.{f}", "{gi}{f}{n}"],
    templates={"health": [h_referral, h_immunisation], "legal": [l_order, l_email], "finance": [f_payslip, f_app]},
)
