"""Labelled synthetic texts, built piece by piece (the bundled records and the detection sets).

A `Doc` is assembled from plain strings and `Ent` values; each Ent's offsets are recorded as it
is appended, so labels are exact by construction (never found by searching). A `Style` is one
family of texts: name and place pools, value formats and templates; `Maker` draws values from
it; `build` cycles a style's domains and templates into records and checks every label and
every answer (public answers must survive redaction: `public_text`).
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Callable
from dataclasses import dataclass, field


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


def qa(question: str, answer: str | Ent, where: str) -> dict[str, str]:
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
        check_record(record)
        out.append(record)
    return out


def check_record(record: dict[str, object]) -> None:
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
            public = public_text(text, spans)
            assert q["answer"] in public, (record["id"], q["answer"])


def public_text(text: str, spans: list[dict[str, object]]) -> str:
    out, pos = [], 0
    for span in spans:
        out.append(text[pos : int(span["start"])])
        out.append(f"[{span['type']}]")
        pos = int(span["end"])
    out.append(text[pos:])
    return "".join(out)
