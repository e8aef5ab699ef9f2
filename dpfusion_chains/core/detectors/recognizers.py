"""Building blocks for our own recognizers: compiled patterns, term lists, and names after triggers.

A recognizer is anything with ``name`` and ``find(text) -> Iterable[DetectedSpan]``; users plug in
their own by passing such objects (or a `PatternRecognizer`) to a detector or a profile.
Everything here is pure Python + `re`: no spaCy, so the regex detector runs in milliseconds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Protocol, runtime_checkable

from dpfusion_chains.core.detect import DetectedSpan


@runtime_checkable
class Recognizer(Protocol):
    """Finds typed spans in a text. Must be stateless (shared across threads)."""

    name: str

    def find(self, text: str) -> Iterable[DetectedSpan]: ...


class PatternRecognizer:
    """One regular expression; each listed group (0 = whole match) becomes a span of its type.

    ``groups`` maps a group (index or name) to an entity type, so one pattern can emit, say, a
    street as ADDRESS and the city after it as LOCATION. ``validate(span_text)``, applied to the
    spans of the recognizer's own type, may veto a match (return False), keep it (True), or
    retype/rescore it (return a ``(type, score)`` pair).

    ``word_anchor``, for patterns whose matches never contain whitespace: a regular expression
    every match contains ("@" for e-mail addresses). The pattern then runs only over the stretches
    between whitespace that hold an anchor, instead of being tried at every character of the text.
    The matches are the same provided the pattern's look-aheads need not see past the stretch.
    ``line_anchor``, likewise, for patterns whose matches never span a line end ("Hospital" for
    care facilities): the pattern runs only over the lines holding an anchor.
    """

    def __init__(
        self,
        name: str,
        entity_type: str,
        pattern: str,
        score: float = 0.85,
        *,
        flags: int = 0,
        group: int | str = 0,
        groups: Mapping[int | str, str] | None = None,
        validate: Callable[[str], bool | tuple[str, float]] | None = None,
        strip_leading: Iterable[str] = (),
        word_anchor: str | None = None,
        line_anchor: str | None = None,
    ) -> None:
        self.name = name
        self.entity_type = entity_type
        self.score = score
        self.strip_leading = frozenset(strip_leading)
        self.regex = re.compile(pattern, flags)
        self.groups: dict[int | str, str] = dict(groups) if groups else {group: entity_type}
        self.validate = validate
        if word_anchor and line_anchor:
            raise ValueError("give a word anchor or a line anchor, not both")
        self.word_anchor = re.compile(word_anchor) if word_anchor else None
        self.line_anchor = re.compile(line_anchor) if line_anchor else None

    def matches(self, text: str) -> Iterator[re.Match[str]]:
        """The pattern's matches, left to right, not overlapping (as `finditer`)."""
        anchors = self.word_anchor or self.line_anchor
        if anchors is None:
            yield from self.regex.finditer(text)
            return
        end = 0
        for anchor in anchors.finditer(text):
            if anchor.start() < end:
                continue  # its word or line was searched already
            if self.line_anchor is not None:
                start = text.rfind("\n", 0, anchor.start()) + 1
                # The line end stays inside (look-aheads for "\n" see it); matches cannot cross it.
                end = text.find("\n", anchor.start()) + 1 or len(text)
            else:
                start = anchor.start()
                while start > 0 and not text[start - 1].isspace():
                    start -= 1
                end = _NON_SPACE.match(text, anchor.start()).end()  # type: ignore[union-attr]
            # Look-behinds still see the text before `start`.
            yield from self.regex.finditer(text, start, end)

    def find(self, text: str) -> Iterator[DetectedSpan]:
        for match in self.matches(text):
            for group, entity_type in self.groups.items():
                start, end = match.span(group)
                if start < 0 or end <= start:
                    continue
                start, end = trim(text, start, end)
                while self.strip_leading:
                    # Connector words a name pattern may start with ("and Lakeside Ltd" -> "Lakeside Ltd").
                    head = text[start:end].split(None, 1)
                    if len(head) < 2 or head[0] not in self.strip_leading:
                        break
                    start = end - len(head[1])
                if end <= start:
                    continue
                score = self.score
                # The validator judges spans of the recognizer's own type (an organisation, not the
                # town captured after it).
                if self.validate is not None and entity_type == self.entity_type:
                    verdict = self.validate(text[start:end])
                    if verdict is False:
                        continue
                    if isinstance(verdict, tuple):
                        entity_type, score = verdict
                yield DetectedSpan(start, end, entity_type, score)

    def __repr__(self) -> str:
        return f"PatternRecognizer({self.name!r}, {self.entity_type!r})"


_NON_SPACE = re.compile(r"\S*")


class TermsRecognizer:
    """Whole-word occurrences of listed terms (a gazetteer), optionally case-insensitive.

    Candidates are the text's words (one fast scan); a term is checked only where its first word
    occurs, instead of trying a 200-way alternation at every character."""

    _WORDS = re.compile(r"[^\W_][\w'’.-]*")
    # Case-sensitive lists hold capitalised terms: only words starting upper-case need a look.
    _CAPITALISED = re.compile("[A-Z" + "".join(c for c in map(chr, range(0xC0, 0x250)) if c.isupper()) + r"][\w'’.-]*")

    def __init__(self, name: str, entity_type: str, terms: Iterable[str], score: float = 0.85, *, ignore_case: bool = False) -> None:
        self.name = name
        self.entity_type = entity_type
        self.score = score
        self.ignore_case = ignore_case
        self.by_first: dict[str, list[str]] = {}
        for term in {t.strip() for t in terms if t.strip()}:
            key = term.split()[0].rstrip(".")
            key = key.lower() if ignore_case else key
            self.by_first.setdefault(key, []).append(term.lower() if ignore_case else term)
        if not self.by_first:
            raise ValueError(f"recognizer {name!r} needs at least one non-empty term")
        for options in self.by_first.values():
            options.sort(key=len, reverse=True)
        self._all_capitalised = all(k[:1].isupper() for k in self.by_first)

    def find(self, text: str) -> Iterator[DetectedSpan]:
        haystack = lowered(text) if self.ignore_case else text
        done = 0
        if self.ignore_case or not self._all_capitalised:
            words: Iterable[tuple[int, str]] = ((m.start(), m.group()) for m in self._WORDS.finditer(haystack))
        else:
            words = capitalised_words(text)
        for start, word in words:
            if start < done:
                continue
            options = self.by_first.get(word.rstrip("."))
            if options is None:
                continue
            for term in options:
                end = start + len(term)
                if haystack.startswith(term, start) and (end == len(text) or not (text[end].isalnum() or text[end] in "@_")):
                    if start == 0 or not (text[start - 1].isalnum() or text[start - 1] in "@_"):
                        yield DetectedSpan(start, end, self.entity_type, self.score)
                        done = end
                    break

    def __repr__(self) -> str:
        return f"TermsRecognizer({self.name!r}, {self.entity_type!r})"


def lowered(text: str) -> str:
    """A lower-cased copy with the same offsets. Case-insensitive keyword lists run several times
    faster as plain alternations on this copy than with IGNORECASE; the rare texts whose
    lower-casing changes length ("İ") are mapped character by character instead."""
    low = _lower_cache.get(text)
    if low is None:
        low = text.lower()
        if len(low) != len(text):
            low = "".join(c.lower() if len(c.lower()) == 1 else c for c in text)
        if len(_lower_cache) > 8:
            _lower_cache.clear()
        _lower_cache[text] = low
    return low


_lower_cache: dict[str, str] = {}


def capitalised_words(text: str) -> list[tuple[int, str]]:
    """(start, word) for the words of `text` that start with a capital (Latin script), remembered
    for the last few texts: the country, region and group gazetteers all look up the same words."""
    words = _capitalised_cache.get(text)
    if words is None:
        words = [(m.start(), m.group()) for m in TermsRecognizer._CAPITALISED.finditer(text)]
        if len(_capitalised_cache) > 8:
            _capitalised_cache.clear()
        _capitalised_cache[text] = words
    return words


_capitalised_cache: dict[str, list[tuple[int, str]]] = {}


def _keyword_regex(keywords: Iterable[str], tail: str = ")(?![\\w])") -> re.Pattern[str]:
    """Whole-word alternation of keywords (regex fragments allowed, longest first), then `tail`
    (which closes the alternation's group)."""
    ordered = sorted(keywords, key=len, reverse=True)
    groups = _by_first_character(ordered)
    if groups is None:
        return re.compile(r"(?<![\w])(?:" + "|".join(ordered) + tail)
    # Same matches, several times faster on a page: `re` tries a 200-word alternation at every
    # character, and a pattern that opens with a look-behind gets no fast scan. Grouped by first
    # character ("p(?:atient|olicy)|a(?:pplicant)"), it skips to the characters that can start a
    # keyword and tries one group there. The word-boundary check moves after that first character
    # (`(?<![\w].)`: the character before it is no word character). Keywords with different first
    # characters never match at the same place, and each group keeps the longest-first order.
    body = "|".join(first + r"(?<![\w].)(?:" + "|".join(rests) + ")" for first, rests in groups.items())
    return re.compile("(?:" + body + tail)


def _by_first_character(fragments: list[str]) -> dict[str, list[str]] | None:
    """The fragments grouped by a literal first character (order kept), or None if one does not
    start with a plain letter or digit that stands alone (no quantifier after it) or holds a "|"."""
    groups: dict[str, list[str]] = {}
    for fragment in fragments:
        first, rest = fragment[:1], fragment[1:]
        if not first.isalnum() or rest[:1] in ("?", "*", "+", "{") or "|" in fragment:
            return None
        groups.setdefault(first, []).append(rest)
    return groups


class KeywordValueRecognizer:
    """The value right after a keyword: "MRN 443-21", "sort code 20-32-06", "aged 54".

    ``keywords`` are lower-case regex fragments matched as whole words (case-insensitively), then
    ``connector`` (also lower-case: "no.", ":", "is"), then ``value`` is matched on the original text.
    """

    CONNECTOR = r"\.?(?:[ \t]*(?:number|num|no|nr|code|id|ref)(?![\w])\.?)?[ \t]*(?:is|was|:|#|-|=|–)?[ \t]*"

    def __init__(
        self,
        name: str,
        entity_type: str,
        keywords: Iterable[str],
        value: str,
        score: float = 0.9,
        *,
        connector: str | None = None,
        value_flags: int = 0,
        validate: Callable[[str], bool | tuple[str, float]] | None = None,
    ) -> None:
        self.name = name
        self.entity_type = entity_type
        self.score = score
        self.keywords = _keyword_regex(keywords, r")(?![\w])" + (self.CONNECTOR if connector is None else connector))
        self.value = re.compile(value, value_flags)
        self.validate = validate

    def find(self, text: str) -> Iterator[DetectedSpan]:
        for match in self.keywords.finditer(lowered(text)):
            value = self.value.match(text, match.end())
            if value is None:
                continue
            start, end = trim(text, *value.span(value.lastindex or 0))
            if end <= start:
                continue
            entity_type, score = self.entity_type, self.score
            if self.validate is not None:
                verdict = self.validate(text[start:end])
                if verdict is False:
                    continue
                if isinstance(verdict, tuple):
                    entity_type, score = verdict
            yield DetectedSpan(start, end, entity_type, score)

    def __repr__(self) -> str:
        return f"KeywordValueRecognizer({self.name!r}, {self.entity_type!r})"


# A token of ASCII letters/digits joined by single separators (- / . _) that holds a digit, in one
# regex: its first character, then a look-behind (no letter/digit before it; first, so that `re`
# scans fast to letters and digits), then either the rest of the token (the first character was a
# digit) or the rest up to a digit and on to the token's end. A token without a digit fails at once.
_REST = r"[A-Za-z0-9]*(?:[-/._][A-Za-z0-9]+)*"
_DIGIT_TOKEN = re.compile(
    rf"[A-Za-z0-9](?<![A-Za-z0-9].)(?:(?<=[0-9]){_REST}|(?:[A-Za-z0-9]*[-/._](?=[A-Za-z0-9]))*[A-Za-z0-9]*[0-9]{_REST})"
)


class DigitTokenRecognizer:
    """Alphanumeric tokens that carry digits ("ZX-99120", "443-21", "A1234567"), judged by `validate`."""

    def __init__(self, name: str, entity_type: str, validate: Callable[[str], bool], score: float = 0.65) -> None:
        self.name = name
        self.entity_type = entity_type
        self.validate = validate
        self.score = score

    def find(self, text: str) -> Iterator[DetectedSpan]:
        for token in _DIGIT_TOKEN.finditer(text):
            start, end = token.span()
            before = text[start - 1] if start else " "
            after = text[end : end + 2]
            # Part of an e-mail, URL path, file name or a longer word: not a standalone identifier.
            if before in "@/\\" or before.isalnum() or after.startswith("@") or after[:1].isalnum() or (after[:1] in "-." and after[1:2].isalnum()):
                continue
            if self.validate(text[start:end]):
                yield DetectedSpan(start, end, self.entity_type, self.score)

    def __repr__(self) -> str:
        return f"DigitTokenRecognizer({self.name!r})"


class PrecedingPlaceRecognizer:
    """The place name just before an anchor on the same line: "Leeds LS1 4AB", "Springfield, IL 62704".

    Looking back from each anchor match is much cheaper than an optional leading group that the
    regex engine would try at every position of the text.
    """

    _PLACE = re.compile(r"([A-Z][\w'’\-]+(?:[ \-](?:upon|on|under|le|en|sur|am|im|de|del)?[ \-]?[A-Z][\w'’\-]+){0,2}),?[ \t]+$")

    def __init__(self, name: str, anchor: str, *, entity_type: str = "LOCATION", score: float = 0.85, flags: int = 0, skip: Iterable[str] = ()) -> None:
        self.name = name
        self.entity_type = entity_type
        self.score = score
        self.anchor = re.compile(anchor, flags)
        self.skip = frozenset(skip)

    def find(self, text: str) -> Iterator[DetectedSpan]:
        for match in self.anchor.finditer(text):
            window_start = max(0, match.start() - 60, text.rfind("\n", 0, match.start()) + 1)
            place = self._PLACE.search(text, window_start, match.start())
            if place is None:
                continue
            words = place.group(1).split()
            # Drop leading words that are sentence furniture ("In Leeds ...", "The ...").
            offset = 0
            while words and words[0] in self.skip:
                offset += len(words[0]) + 1
                words = words[1:]
            if words:
                start = place.start(1) + offset
                yield DetectedSpan(start, place.end(1), self.entity_type, self.score)

    def __repr__(self) -> str:
        return f"PrecedingPlaceRecognizer({self.name!r})"


def trim(text: str, start: int, end: int) -> tuple[int, int]:
    """Strip whitespace and sentence punctuation a pattern may have swallowed at either end."""
    while start < end and (text[start].isspace() or text[start] in ",;:"):
        start += 1
    while end > start and (text[end - 1].isspace() or text[end - 1] in ",;:"):
        end -= 1
    return start, end


def run_recognizers(recognizers: Iterable[Recognizer], text: str) -> list[DetectedSpan]:
    spans: list[DetectedSpan] = []
    for recognizer in recognizers:
        spans.extend(recognizer.find(text))
    return spans
