"""Citation markers: read [n] markers, keep those of sources that exist, remove them, put them in place.

The model writes markers loosely ("[1, 2]", "[1-3]", "[Source 2]", a marker after the period); the answer the
user sees has one canonical form, "[1][3]" before the final punctuation, and cites only sources the user can
open. Everything that reads or rewrites markers uses these functions, so the answer stage, the splitter of
`rag.text` and the faces agree on what a marker is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

_NUMBER_LIST = r"\d+(?:\s*[-–—]\s*\d+)?(?:\s*[,;]\s*(?:and\s+)?\d+(?:\s*[-–—]\s*\d+)?)*"
CITATION = re.compile(
    rf"\[\s*(?:(?:sources?|papers?|refs?\.?|references?)\s*)?({_NUMBER_LIST})\s*\]",
    re.IGNORECASE,
)
"""One bracketed marker: [1], [1, 2], [1; 3], [1-3], [1–3], [Source 2]. [1][2] is two markers."""

LEADING_MARKERS = re.compile(r"^(?:\s*" + CITATION.pattern + r")+", re.IGNORECASE)
"""Markers that open a text: "[2] A Paper Title ..." (a list item labelled with its source)."""

ONE_MARKER = r"\[\s*\d+\s*\]"
"""One canonical marker with one number: [3]."""

_MAX_RANGE = 20
"""[a-b] with b - a above this is read as the numbers a and b, not expanded (guards against '[1-2024]')."""


def _expand(inner: str) -> list[int]:
    numbers: list[int] = []
    for part in re.split(r"\s*[,;]\s*(?:and\s+)?", inner.strip()):
        bounds = [int(value) for value in re.split(r"\s*[-–—]\s*", part) if value]
        if len(bounds) == 2 and 0 <= bounds[1] - bounds[0] <= _MAX_RANGE:
            numbers.extend(range(bounds[0], bounds[1] + 1))
        else:
            numbers.extend(bounds)
    return numbers


def _unique(numbers: Iterable[int]) -> list[int]:
    return list(dict.fromkeys(numbers))


def parse_citations(text: str) -> list[int]:
    """Source numbers cited in `text`, unique, in order of first appearance."""
    return _unique(number for match in CITATION.finditer(text) for number in _expand(match.group(1)))


def format_citations(numbers: Iterable[int]) -> str:
    """The canonical marker form used in final answers: [1][3]."""
    return "".join(f"[{number}]" for number in numbers)


def strip_invalid_citations(text: str, valid_numbers: Iterable[int]) -> str:
    """`text` with every marker rewritten to canonical [a][b] form, keeping only numbers in `valid_numbers`.

    A marker left with no valid number disappears together with the space before it, so "fast [9]." becomes
    "fast.". This is what guarantees that the final answer never cites a source the user cannot see.
    """
    valid = set(valid_numbers)

    def rewrite(match: re.Match[str]) -> str:
        kept = [number for number in _unique(_expand(match.group(2))) if number in valid]
        return f"{match.group(1)}{format_citations(kept)}" if kept else ""

    cleaned = re.sub(r"([ \t]*)" + CITATION.pattern, rewrite, unwrapped(text), flags=re.IGNORECASE)
    cleaned = re.sub(r"[ \t]{2,}", " ", cleaned)
    return re.sub(r"[ \t]+([.,;:!?])", r"\1", cleaned).strip()


def unwrapped(text: str) -> str:
    """`text` with markers taken out of an extra pair of brackets or parentheses: "[[1]]", "[[1], [2]]" and
    "([1])" become "[1]" and "[1][2]"; a lone "[" left open before a marker goes. Rewriting the markers alone
    would leave the wrapper behind as "[]", "[,]" or "()" in the answer."""
    text = _WRAPPED.sub(lambda match: "".join(marker[0] for marker in _CITATIONS.finditer(match[0])), text)
    return _OPEN_BEFORE_MARKER.sub("", text)


_CITATIONS = re.compile(CITATION.pattern, re.IGNORECASE)
_MARKER_SEQUENCE = rf"{CITATION.pattern}(?:\s*[,;]?\s*{CITATION.pattern})*"
_WRAPPED = re.compile(rf"\[\s*{_MARKER_SEQUENCE}\s*\]|\(\s*{_MARKER_SEQUENCE}\s*\)", re.IGNORECASE)
_OPEN_BEFORE_MARKER = re.compile(rf"\[\s*(?={CITATION.pattern}(?!\s*\]))", re.IGNORECASE)


def remove_citations(text: str) -> str:
    """`text` without any markers (what gets embedded and compared)."""
    return strip_invalid_citations(text, ())


def put_markers_inside(sentence: str, markers: str) -> str:
    """'XNet is fast.' + '[1]' -> 'XNet is fast [1].'"""
    body = sentence.rstrip()
    ending = re.search(r"[.!?]+[\"'”’)]*$", body)
    if ending is None:
        return f"{body} {markers}"
    return f"{body[: ending.start()].rstrip()} {markers}{ending.group(0)}"


def with_citations(sentence: str, numbers: Sequence[int]) -> str:
    """`sentence` with its markers replaced by `numbers`, placed before the final punctuation."""
    body = remove_citations(sentence)
    return put_markers_inside(body, format_citations(numbers)) if numbers else body
