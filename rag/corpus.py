"""Read the corpus (seed pages, BEIR-style JSONL, CSV, and the bibliography formats of `rag.readers`) into unique
`Paper`s.

Three inputs of our own, one output (the arXiv metadata snapshot, BibTeX and CSL-JSON are read by
`rag.readers`, which also tells every format apart by its content):

* **Seed pages** (`*.txt`), text copied from two kinds of web pages. *Session pages* of a conference
  (a session name, an optional room, ``Moderator: NAME``, then per talk a time-slot line, the title, the
  authors joined by `` · `` and the abstract) and *paper listings* (a title line, then its abstract line, over
  and over). Both come wrapped in site chrome (``Subscribe``, ``Chat is not available.``, ...) that must never
  become a paper, or part of one. `parse_page` tells the two apart and parses either.
* **JSONL** in the BEIR layout (``{"_id" or "id", "title", "text", ...}``, one object a line) and JSON arrays.
* **CSV** with a header naming at least a title and a text (or abstract) column.

The same paper is often listed on several pages (and twice on one page): `merge_papers` folds entries with
the same normalised title into one `Paper` that keeps every source and the richest metadata. `load_corpus`
does all of it for files and folders, and never gives up on a corpus because one file or row is broken:
each is reported as a one-line problem naming the file and line, and the rest is kept.

Only reads files: no pickle, no eval, nothing written.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from rag.errors import CorpusError
from rag.text import normalise_title, split_sentences
from rag.types import Paper

PAGE_SUFFIXES = (".txt",)
JSONL_SUFFIXES = (".jsonl", ".json")
CSV_SUFFIXES = (".csv",)
BIBTEX_SUFFIXES = (".bib", ".bibtex")
CORPUS_SUFFIXES = PAGE_SUFFIXES + JSONL_SUFFIXES + CSV_SUFFIXES + BIBTEX_SUFFIXES

MAX_TITLE_CHARS = 300
"""A line longer than this is an abstract, never a title. A format fact, not a tunable: the longest bundled
title has 166 characters and the shortest bundled abstract 569, so 300 sits clear of both, and real titles
beyond 300 characters are vanishingly rare."""

MAX_PROBLEMS_PER_FILE = 20
"""Problems reported per file before the rest are summarised in one line, so a badly broken million-row file
cannot flood the ingest report."""

SKIPPED_IN_FOLDERS = ("queries.jsonl",)
"""Files a folder walk leaves out: a BEIR dataset folder holds its questions next to corpus.jsonl."""


class CorpusLoad(BaseModel):
    """What `load_corpus` read: unique papers plus the counts and problems the ingest report shows."""

    papers: list[Paper] = Field(default_factory=list, description="Unique papers, in first-seen order.")
    entries: int = Field(default=0, description="Paper entries read, before merging duplicates.")
    files: int = Field(default=0, description="Files read (including files that yielded problems only).")
    problems: list[str] = Field(default_factory=list, description="One line per unreadable file or row.")
    missing_abstracts: int = Field(default=0, description="Entries without an abstract (see `IngestReport`).")


class FileLoad(BaseModel):
    """The papers read from one file, before merging, and what went wrong on the way."""

    path: str
    papers: list[Paper] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list)
    missing_abstracts: int = Field(default=0, description="Entries without an abstract, kept or left out.")


# --- text normalisation ------------------------------------------------------------------------------------

_HORIZONTAL_SPACE = re.compile(r"[^\S\n]+")
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_MOJIBAKE_MARK = re.compile(r"[ÂÃÄÅĂĹâ]")
_MOJIBAKE_CODECS = ("cp1252", "cp1250")
_VALID_NON_ASCII = re.compile("[^\x00-\x7f\ufffd]")


_NAMING_VERBS = r"called|named|dubbed|termed|coined|referred\s+to\s+as"
_ACRONYM_AFTER = r"\b[^.()]{0,80}\(([A-Z][A-Za-z0-9-]*[A-Z0-9][A-Za-z0-9-]*)\)"
_COINED_ACRONYM = re.compile(rf"\b(?:{_NAMING_VERBS}|proposes?|introduces?|presents?){_ACRONYM_AFTER}")
_NAMED_ACRONYM = re.compile(rf"\b(?:{_NAMING_VERBS}){_ACRONYM_AFTER}")
"""Only after a naming verb: "we propose a novel generative adversarial network (GAN)" is not a new name."""
_COINED_MIXED_CASE = re.compile(
    rf"\b(?:{_NAMING_VERBS}|proposes?|introduces?|presents?)\b[^.()]{{0,160}}"
    r"\(([A-Z][A-Za-z0-9-]*[a-z][A-Za-z0-9-]*[A-Z0-9][A-Za-z0-9-]*)\)"
)
"""A mixed-case acronym further from the verb ("we propose an image pyramid-based framework, Inverse Saliency
Pyramid Reconstruction Network (InSPyReNet)"): established acronyms are capitals (CNN), coined ones often not."""
_PROPOSED_NAME = re.compile(
    r"\b(?:we|this paper|this work)\s+(?:propose|introduce|present)s?\s+(?:an?\s+|the\s+)?"
    r"([A-Z][a-z]*[A-Z0-9][A-Za-z0-9+-]*)(?![\w(])"
)
"""A one-word name right after "we propose" ("we propose XNet that ..."): a word with an inner capital or a
digit, which no ordinary word has; "-based" or "-like" words describe, they do not name."""
_INTRODUCED_NAME = re.compile(
    r"\b(?:We|This paper|This work)\s+(?:(?:also|then|therefore|thus|hence|further|first|here|now)\s+)?"
    r"(?:propose|introduce|present|devise|develop|design)s?\s+(?:an?\s+|the\s+)?"
    r"([A-Z][a-z]*[A-Z0-9][A-Za-z0-9+-]*)(?=\s*[,:;(]|\s+(?:that|which)\b)"
)
"""The same at a sentence's start, after an adverb, or after "devise", "develop" or "design" ("We therefore
devise XNet, a ..."), where the name must be set off from what follows (a comma, a colon, a bracket, "that",
"which"): "We also present ImageNet samples" uses an established name as a modifier, "We first introduce
KGs used in ..." an established acronym."""
_CAPITALISED_NAME = r"[A-Z][\w-]*(?:\s+(?:(?:of|for|and|in|with)\s+)?[A-Z][\w-]*)*"
_COINED_PHRASE = re.compile(rf"\b(?:{_NAMING_VERBS})\s+(?:an?\s+|the\s+)?({_CAPITALISED_NAME})")
_CODE_REPOSITORY = re.compile(r"github\.com/[\w.-]+/([A-Za-z][A-Za-z0-9]*)(?![\w-])")
"""A released code repository, whose name is often the method's: "github.com/org/XNet"."""


def coined_names(abstract: str, strict: bool = False) -> list[str]:
    """The names an abstract gives its own method, acronyms first: "This architecture, called a Cross Pooling
    Network (XPN)" -> ["XPN", "Cross Pooling Network"]; "a new attribution method called Path Scores" -> ["Path
    Scores"]. Only coined names: "cross pooling networks (XPN) are widely exploited" merely uses another
    paper's name. A code repository named like a method ("github.com/org/XNet": one word with
    an inner capital or a digit) counts too. Researchers know papers by these names more than by their titles.
    `strict` takes acronyms only after a naming verb ("called", "dubbed", ...), not after "propose": "we propose
    a novel generative adversarial network (GAN)" and "this survey presents ... Deep Neural Network (DNN)"
    use established names."""
    acronyms = _NAMED_ACRONYM if strict else _COINED_ACRONYM
    names = [match.group(1) for match in acronyms.finditer(abstract)]
    if not strict:
        names += [match.group(1) for match in _COINED_MIXED_CASE.finditer(abstract)]
        proposed = [*_PROPOSED_NAME.findall(abstract), *_INTRODUCED_NAME.findall(abstract)]
        names += [name for name in proposed if not re.search(r"-[a-z]+$", name)]
    names += [match.group(1) for match in _COINED_PHRASE.finditer(abstract)]
    names += [name for name in _CODE_REPOSITORY.findall(abstract) if re.search(r".[A-Z]|\d", name)]
    return [name for name in dict.fromkeys(names) if len(name) >= 3]


def paper_id_for(title: str) -> str:
    """A stable id from the normalised title: a short readable slug plus 10 hex digits of its SHA-1.

    The same title gives the same id in every run and on every machine, so re-ingesting a page finds the
    papers already indexed instead of adding them again.
    """
    key = normalise_title(title)
    ascii_words = unicodedata.normalize("NFKD", key).encode("ascii", "ignore").decode().split()
    slug = ""
    for word in ascii_words:
        if len(slug) + len(word) + 1 > 40:
            break
        slug = f"{slug}-{word}" if slug else word
    digest = hashlib.sha1((key or title.strip()).encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{slug or 'paper'}-{digest}"


def _repair_mojibake(text: str) -> str:
    """Undo UTF-8 that was once decoded as Windows-1252/1250 ("JosĂ©" -> "José").

    Only words holding a typical marker character are tried, and a repair is kept only when the word
    re-encodes and decodes as strict UTF-8, which legitimate text like "Jürgen" or "Äpfel" never does.
    """
    if not _MOJIBAKE_MARK.search(text):
        return text
    return re.sub(r"\S+", _repair_word, text)


def _repair_word(match: re.Match[str]) -> str:
    word = match.group(0)
    if not _MOJIBAKE_MARK.search(word):
        return word
    for codec in _MOJIBAKE_CODECS:
        try:
            repaired = word.encode(codec).decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            continue
        if repaired != word:
            return repaired
    return word


def _clean(text: str) -> str:
    """NFC, mojibake repaired, control characters dropped, TeX-escaped characters ("88.25\\%", "R\\&D") as
    the characters they stand for (abstracts copied from arXiv keep them, and "\\%" after a figure reads as
    noise to a reader and to the model), surrounding space stripped."""
    text = unicodedata.normalize("NFC", text)
    text = _CONTROL_CHARS.sub("", _repair_mojibake(text))
    return _TEX_ESCAPED.sub(r"\1", text).strip()


_TEX_ESCAPED = re.compile(r"\\([%&_#])")


def _clean_line(text: str) -> str:
    """`_clean` plus every run of whitespace collapsed to one space: for titles, names and labels."""
    return " ".join(_clean(text).split())


def _split_authors(value: Any) -> list[str]:
    """Authors as a list: from a list, or from a string joined by '·', ';', '|' or (failing those) commas."""
    if value is None:
        return []
    if isinstance(value, str):
        parts = re.split(r"\s*[·;|]\s*", value) if re.search(r"[·;|]", value) else value.split(",")
    elif isinstance(value, list | tuple):
        parts = [part if isinstance(part, str) else str(part) for part in value if part is not None]
    else:
        raise _RowError(f"'authors' is {type(value).__name__}, expected a list or a string")
    names = (_clean_line(re.sub(r"^and\s+", "", part.strip())) for part in parts)
    return [name for name in names if name]


# --- pages -------------------------------------------------------------------------------------------------

_TIME_SLOT = re.compile(
    r"^(?P<day>(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)[a-z]*\.?,?\s+\d{1,2}\s+[A-Z][a-z]+\.?)\s+"
    r"(?P<time>\d{1,2}:\d{2}\s*(?:[AaPp]\.?[Mm]\.?)?\s*[-–—]\s*\d{1,2}:\d{2}\s*(?:[AaPp]\.?[Mm]\.?)?"
    r"(?:\s+[A-Z]{2,5})?)$"
)
_MODERATOR = re.compile(r"^Moderators?\s*:\s*(?P<name>.*)$", re.IGNORECASE)
_CHROME_LINES = re.compile(
    r"^(?:new|subscribe|get trending papers in your email inbox(?: once a day)?!?"
    r"|by\s*ak and the research community"
    r"|skip to yearly menu bar(?: skip to main content)?|skip to main content|chat is not available\.?"
    r"|(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.? \d{1,2}(?:, \d{4})?)$",
    re.IGNORECASE,
)
"""Whole lines of site chrome, matched on the entire line: a title that merely contains these words stays."""

_GLUED_CHROME = re.compile(r"^(?:Get trending papers in your email inbox(?: once a day)?!\s*|Subscribe(?=[^\sa-z]))")
"""Chrome glued onto the first title when a page was copied ("SubscribeSparse Routing Networks ...").
Only stripped before the first abstract, and "Subscribe" only when a non-lowercase character follows without a
space, which a real title ("Subscriber Churn ...") does not do."""

Line = tuple[int, str]
"""A non-blank page line: (1-based line number, text stripped)."""


def parse_page(text: str, source: str) -> list[Paper]:
    """The papers of one seed page, either a conference session page or a paper listing.

    A page with time-slot lines ("Tue 20 July 7:00 - 7:20 PDT") is a session page; anything else is read as a
    listing. Pages never raise: what cannot be read is left out (`read_page` also reports it).
    """
    return _parse_page(text, source, where=source)[0]


def _parse_page(text: str, source: str, where: str) -> tuple[list[Paper], list[str]]:
    """Papers (with `source` as their source) and problems (prefixed with `where`: the file as given)."""
    lines = _content_lines(text)
    if any(_TIME_SLOT.match(line) for _, line in lines):
        return _parse_session_page(lines, source, where)
    return _parse_listing_page(lines, source, where)


def _physical_lines(text: str) -> list[str]:
    """Lines as an editor numbers them: split at \\n, \\r\\n or \\r only (not at U+2028 and the other breaks
    `str.splitlines` knows, which may legally sit inside a JSON string)."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _content_lines(text: str) -> list[Line]:
    """Non-blank lines with their line numbers, whole-line chrome removed. Blank lines carry no structure:
    the same listing is found with and without blank lines between title and abstract."""
    lines = []
    for number, raw in enumerate(_physical_lines(text), start=1):
        line = _clean(raw)
        if line and not _CHROME_LINES.match(line):
            lines.append((number, line))
    return lines


def _is_abstract_length(line: str) -> bool:
    return len(line) > MAX_TITLE_CHARS


def _parse_session_page(lines: list[Line], source: str, where: str) -> tuple[list[Paper], list[str]]:
    """A session page: header (session name, optional room, moderator), then one block per time slot.

    Each block is [title, authors, abstract...]; a block with no lines is a slot without a talk (pages end
    with one) and is skipped. The authors line is recognised by its " · " separators, or, for a single
    author, by being a short line between the title and the abstract.
    """
    slots = [(index, match) for index, (_, line) in enumerate(lines) if (match := _TIME_SLOT.match(line))]
    header = _session_header(lines[: slots[0][0]])
    papers: list[Paper] = []
    problems: list[str] = []
    block_ends = [index for index, _ in slots[1:]] + [len(lines)]
    for (position, slot), end in zip(slots, block_ends, strict=True):
        block = [line for _, line in lines[position + 1 : end]]
        if not block:
            continue
        paper = _session_paper(block, header, slot["day"], slot["time"], source)
        if paper is None:
            slot_number, slot_line = lines[position]
            problems.append(f"{where}:{slot_number}: talk at '{slot_line}' has no authors or abstract, skipped")
        else:
            papers.append(paper)
    return papers, problems


def _session_header(lines: list[Line]) -> dict[str, str | None]:
    """Session name and room are the first two header lines that are neither chrome nor the moderator."""
    moderator = None
    rest = []
    for _, line in lines:
        match = _MODERATOR.match(line)
        if match:
            moderator = _clean_line(match["name"]) or None
        else:
            rest.append(_clean_line(line))
    return {
        "session": rest[0] if rest else None,
        "room": rest[1] if len(rest) > 1 else None,
        "moderator": moderator,
    }


def _session_paper(
    block: list[str], header: dict[str, str | None], day: str, time_slot: str, source: str
) -> Paper | None:
    title, rest = _clean_line(block[0]), block[1:]
    if _is_abstract_length(title):
        return None
    authors: list[str] = []
    if rest and ("·" in rest[0] or (len(rest) > 1 and not _is_abstract_length(rest[0]))):
        authors, rest = _split_authors(rest[0]), rest[1:]
    abstract = "\n".join(rest)
    if not authors and not abstract:
        return None
    return Paper(
        id=paper_id_for(title),
        title=title,
        abstract=abstract,
        authors=authors,
        sources=[source],
        day=_clean_line(day),
        time_slot=_clean_line(time_slot),
        **header,
    )


def _parse_listing_page(lines: list[Line], source: str, where: str) -> tuple[list[Paper], list[str]]:
    """A listing: title line, abstract line(s), repeated.

    Titles and abstracts alternate, so pairing is positional; lengths only resolve the rare break in the
    rhythm. A line longer than `MAX_TITLE_CHARS` is always abstract text: right after a title it is the
    abstract, after an abstract it is a further paragraph of it. A short line after a title is that title's
    (short) abstract unless a long line follows it, in which case it is the next title and the first title
    had no abstract. A page without a single abstract-length line is not a listing (a stray README, say) and
    yields nothing.
    """
    if not any(_is_abstract_length(line) for _, line in lines):
        not_a_page = f"{where}: no paper found (no session time slots, no abstract-length lines)"
        return [], [not_a_page] if lines else []
    lines = _strip_glued_chrome(lines)
    papers: list[Paper] = []
    problems: list[str] = []
    index = 0
    while index < len(lines):
        number, line = lines[index]
        if _is_abstract_length(line):
            problems.append(f"{where}:{number}: abstract without a title, skipped")
            index += 1
            continue
        abstract_lines, index = _take_abstract(lines, index + 1)
        if abstract_lines:
            title = _clean_line(line)
            papers.append(
                Paper(id=paper_id_for(title), title=title, abstract="\n".join(abstract_lines), sources=[source])
            )
        else:
            problems.append(f"{where}:{number}: title without an abstract, skipped: {line[:80]!r}")
    return papers, problems


def _take_abstract(lines: list[Line], start: int) -> tuple[list[str], int]:
    """The abstract lines of the title just before `start`, and where the next title starts."""
    if start >= len(lines):
        return [], start
    first = lines[start][1]
    after = lines[start + 1][1] if start + 1 < len(lines) else None
    if not _is_abstract_length(first) and after is not None and _is_abstract_length(after):
        return [], start  # `first` is the next title
    taken = [first]
    end = start + 1
    while end < len(lines) and _is_abstract_length(lines[end][1]):
        taken.append(lines[end][1])
        end += 1
    return taken, end


def _strip_glued_chrome(lines: list[Line]) -> list[Line]:
    """Remove chrome glued to the start of lines before the first abstract; later lines are left alone."""
    result = []
    for position, (number, line) in enumerate(lines):
        if _is_abstract_length(line):
            return result + lines[position:]
        stripped = line
        while (match := _GLUED_CHROME.match(stripped)) is not None:
            stripped = stripped[match.end() :]
        if stripped:
            result.append((number, stripped))
    return result


# --- JSONL and CSV rows ------------------------------------------------------------------------------------


class _RowError(ValueError):
    """A row that cannot become a paper; the message completes 'file:line: ...'."""


_ID_KEYS = ("id", "_id", "doc_id", "paper_id")
_TEXT_KEYS = ("text", "abstract")
_CATEGORY_KEYS = ("category", "categories", "venue", "journal", "booktitle", "container-title")
_EXTRA_FIELDS = ("session", "room", "moderator", "day", "time_slot")
_YEAR = re.compile(r"\b(1[89]\d\d|2[01]\d\d)\b")


def _first_present(record: dict[str, Any], keys: Sequence[str]) -> Any:
    for key in keys:
        if record.get(key) not in (None, ""):
            return record[key]
    return None


def _as_text(value: Any, field: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise _RowError(f"'{field}' is {type(value).__name__}, expected text")


def _as_year(value: Any) -> int | None:
    if value in (None, ""):
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 1800 <= value <= 2199:
        return value
    match = _YEAR.search(str(value)) if isinstance(value, str | int | float) else None
    if match is None:
        raise _RowError(f"'year' {str(value)[:40]!r} is not a year")
    return int(match.group(1))


def _as_category(value: Any) -> str | None:
    """A category or venue as one string: a list of categories is joined by spaces, as arXiv writes them; any
    other shape is left out (an optional field never costs a row)."""
    if isinstance(value, list | tuple):
        value = " ".join(part for part in value if isinstance(part, str))
    return _clean_line(value) or None if isinstance(value, str) else None


def _record_to_paper(record: dict[str, Any], source: str) -> tuple[Paper, list[str]]:
    """One JSONL object or CSV row as a Paper, plus notes on what had to be guessed.

    BEIR keeps extra fields under "metadata"; they are looked up there too. A row without a title gets one
    from the start of its text (some BEIR corpora have no titles), so no row with text is lost.
    """
    metadata = record.get("metadata") if isinstance(record.get("metadata"), dict) else {}
    merged = {**metadata, **record}
    notes = []
    title = _clean_line(_as_text(merged.get("title"), "title"))
    abstract = _clean(_as_text(_first_present(merged, _TEXT_KEYS), "text"))
    if not title and not abstract:
        raise _RowError("no title and no text")
    if not title:
        title = _title_from_text(abstract)
        notes.append("no title")
    if not abstract:
        notes.append("no text")
    raw_id = _first_present(merged, _ID_KEYS)
    paper_id = _clean_line(_as_text(raw_id, "id")) or paper_id_for(title)
    try:
        year = _as_year(merged.get("year"))
    except _RowError:
        year = None
        notes.append("unreadable year")
    extras = {field: _clean_line(_as_text(merged.get(field), field)) or None for field in _EXTRA_FIELDS}
    extras["category"] = _as_category(_first_present(merged, _CATEGORY_KEYS))
    paper = Paper(
        id=paper_id,
        title=title,
        abstract=abstract,
        authors=_split_authors(_first_present(merged, ("authors", "author"))),
        sources=[source],
        year=year,
        **extras,
    )
    return paper, notes


def _title_from_text(text: str) -> str:
    """The first sentence of `text`, cut to a title-like length at a word boundary."""
    sentence = re.split(r"(?<=[.!?])\s", text[: MAX_TITLE_CHARS * 2], maxsplit=1)[0]
    if len(sentence) <= 120:
        return sentence
    return sentence[:120].rsplit(" ", 1)[0] + " …"


class _RowCollector:
    """Turns records into papers for one file: row problems with line numbers, id clashes, guessed fields."""

    def __init__(self, path: str, source: str, unit: str = "line"):
        self.path = path
        self.source = source
        self.unit = unit  # "line" for JSONL/CSV, "item" for a JSON array, whose lines are not known
        self.papers: list[Paper] = []
        self.problems: list[str] = []
        self._title_by_id: dict[str, str] = {}
        self._notes: dict[str, list[int]] = {}

    def add(self, record: Any, line: int) -> None:
        if not isinstance(record, dict):
            self.problem(line, f"expected an object with title and text, got {type(record).__name__}")
            return
        try:
            paper, notes = _record_to_paper(record, self.source)
        except (_RowError, ValidationError) as error:
            self.problem(line, _one_line(error))
            return
        for note in notes:
            self._notes.setdefault(note, []).append(line)
        self.papers.append(self._unique_id(paper, line))

    def _unique_id(self, paper: Paper, line: int) -> Paper:
        paper, clash = unique_id(paper, self._title_by_id)
        if clash:
            self.problem(line, clash)
        return paper

    def problem(self, line: int | None, message: str) -> None:
        if line is None:
            where = self.path
        elif self.unit == "line":
            where = f"{self.path}:{line}"
        else:
            where = f"{self.path}: {self.unit} {line}"
        self.problems.append(f"{where}: {message}")

    def finish(self) -> FileLoad:
        for note, lines in self._notes.items():
            shown = ", ".join(str(line) for line in lines[:5]) + (", ..." if len(lines) > 5 else "")
            self.problems.append(f"{self.path}: {len(lines)} row(s) with {note} ({self.unit}s {shown}); kept")
        missing = len(self._notes.get("no text", ()))
        return FileLoad(path=self.path, papers=self.papers, problems=self.problems, missing_abstracts=missing)


def unique_id(paper: Paper, title_by_id: dict[str, str]) -> tuple[Paper, str | None]:
    """`paper`, with its id suffixed when another title already has it, and the one-line problem to report.

    Same id and title is a duplicate (merged later); same id, another title is a clash (a reused row id or
    citation key). `title_by_id` (id -> normalised title) records what each file has seen so far."""
    key = normalise_title(paper.title)
    known = title_by_id.get(paper.id)
    if known is None or known == key:
        title_by_id[paper.id] = key
        return paper, None
    new_id = _free_id(paper.id, title_by_id)
    title_by_id[new_id] = key
    return paper.model_copy(update={"id": new_id}), f"id {paper.id!r} already used by another title; kept as {new_id!r}"


def _free_id(paper_id: str, taken: dict[str, Any] | set[str]) -> str:
    suffix = 2
    while f"{paper_id}-{suffix}" in taken:
        suffix += 1
    return f"{paper_id}-{suffix}"


def _one_line(error: Exception) -> str:
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        return f"invalid {'.'.join(str(part) for part in first['loc'])}: {first['msg']}"
    return " ".join(str(error).split())


# --- files -------------------------------------------------------------------------------------------------


def _decode(data: bytes, path: str) -> tuple[str, list[str]]:
    """Bytes to text: UTF-8 (BOM allowed), UTF-16 with a BOM, else a lossless-enough fallback and a problem.

    A file that is mostly UTF-8 with a few corrupt bytes keeps its UTF-8 characters (bad bytes become
    U+FFFD); a file with no valid UTF-8 multi-byte characters is taken to be Windows-1252 (Latin-1 for the few
    bytes that code page leaves undefined), which is what legacy CSV exports usually are.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace"), []
    try:
        return data.decode("utf-8-sig"), []
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        where = f"{path}:{line}: not valid UTF-8 (byte 0x{data[error.start]:02x})"
    replaced = data.decode("utf-8-sig", errors="replace")
    valid_multibyte = len(_VALID_NON_ASCII.findall(replaced))
    if valid_multibyte > replaced.count("\ufffd"):
        return replaced, [f"{where}; read as UTF-8 with undecodable bytes replaced"]
    try:
        return data.decode("cp1252"), [f"{where}; read as Windows-1252, check accented characters"]
    except UnicodeDecodeError:
        return data.decode("latin-1"), [f"{where}; read as Latin-1, check accented characters"]


def _read_text(path: Path) -> tuple[str | None, list[str]]:
    """A file's text, or None and a problem when it cannot be read, is empty or is binary."""
    shown = str(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        return None, [f"{shown}: cannot read ({error.strerror or _one_line(error)})"]
    if not data.strip():
        return None, [f"{shown}: empty file"]
    if b"\x00" in data[:8192] and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return None, [f"{shown}: looks like a binary file, not text; skipped"]
    return _decode(data, shown)


def read_page(path: str | Path) -> FileLoad:
    """One seed page (`parse_page` on the file's text), with problems naming the file and line."""
    path = Path(path)
    text, problems = _read_text(path)
    if text is None:
        return FileLoad(path=str(path), problems=problems)
    papers, page_problems = _parse_page(text, path.name, where=str(path))
    return FileLoad(path=str(path), papers=papers, problems=problems + page_problems)


def read_jsonl(path: str | Path) -> FileLoad:
    """A BEIR-style corpus: one JSON object a line with "_id"/"id", "title", "text" (or "abstract").

    Optional "authors" (list or string), "year", "session", "room", "moderator", "day", "time_slot" are kept,
    also when nested under "metadata". A `.json` file holding one array of such objects is read too. A broken
    line is reported as "file:line: invalid JSON (...)" and the other lines are kept.
    """
    path = Path(path)
    text, problems = _read_text(path)
    rows = _RowCollector(str(path), path.name)
    rows.problems.extend(problems)
    if text is None:
        return rows.finish()
    if text.lstrip().startswith("["):
        _add_json_array(text, rows)
    else:
        for number, line in enumerate(_physical_lines(text), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, RecursionError) as error:
                rows.problem(number, f"invalid JSON ({getattr(error, 'msg', 'nested too deeply')})")
                continue
            rows.add(record, number)
    return rows.finish()


def _add_json_array(text: str, rows: _RowCollector) -> None:
    """A whole-file JSON array: the line of each object is not known, so problems name the item (1-based)."""
    try:
        items = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as error:
        rows.problem(getattr(error, "lineno", None), f"invalid JSON ({getattr(error, 'msg', 'nested too deeply')})")
        return
    if not isinstance(items, list):
        rows.problem(None, "expected a JSON array of objects")
        return
    rows.unit = "item"
    for position, item in enumerate(items, start=1):
        rows.add(item, position)


_CSV_ALIASES = {
    "title": ("title",),
    "text": ("text", "abstract"),
}
_CSV_RENAMES = {"abstract note": "abstract", "publication year": "year", "publication title": "venue", "key": "id"}
"""Column names of a Zotero CSV export, read as the names above (a column the file already has wins)."""


def read_csv(path: str | Path) -> FileLoad:
    """A CSV (comma, semicolon, tab or pipe separated) whose header names a title and a text/abstract column.

    Other recognised columns: id, authors, year, session, room, moderator, day, time_slot; a missing id is
    derived from the title. A file without the required columns is one problem; a bad row is one problem
    naming its line, and the other rows are kept.
    """
    path = Path(path)
    text, problems = _read_text(path)
    rows = _RowCollector(str(path), path.name)
    rows.problems.extend(problems)
    if text is None:
        return rows.finish()
    _raise_csv_field_limit()
    reader = csv.reader(io.StringIO(text, newline=""), dialect=_sniff_dialect(text))
    try:
        header = _csv_header(next(reader))
    except (StopIteration, csv.Error) as error:
        rows.problem(1, f"unreadable CSV header ({_one_line(error) or 'no header'})")
        return rows.finish()
    missing = [name for name, aliases in _CSV_ALIASES.items() if not any(alias in header for alias in aliases)]
    if missing:
        found = ", ".join(repr(column) for column in header[:10])
        rows.problem(1, f"missing column(s) {', '.join(missing)} (need title and text or abstract; found {found})")
        return rows.finish()
    for start, values in _csv_rows(reader, rows):
        if len(values) != len(header):
            rows.problem(start, f"row has {len(values)} fields, the header has {len(header)}")
            continue
        rows.add(dict(zip(header, values, strict=True)), start)
    return rows.finish()


def _csv_header(columns: list[str]) -> list[str]:
    header = [column.strip().lower() for column in columns]
    return [_CSV_RENAMES[name] if _CSV_RENAMES.get(name, name) not in header else name for name in header]


def _csv_rows(reader: Iterator[list[str]], rows: _RowCollector) -> Iterator[tuple[int, list[str]]]:
    """Non-empty rows with the line they start on; a row the csv module rejects becomes a problem."""
    previous_end = reader.line_num  # type: ignore[attr-defined]
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            rows.problem(previous_end + 1, f"unreadable CSV row ({_one_line(error)})")
            previous_end = reader.line_num  # type: ignore[attr-defined]
            continue
        start, previous_end = previous_end + 1, reader.line_num  # type: ignore[attr-defined]
        if any(value.strip() for value in values):
            yield start, values


def _sniff_dialect(text: str) -> type[csv.Dialect] | csv.Dialect:
    first_line = text.split("\n", 1)[0]
    try:
        return csv.Sniffer().sniff(first_line, delimiters=",;\t|")
    except csv.Error:
        return csv.excel


def _raise_csv_field_limit() -> None:
    """The csv module rejects fields over 128 KiB by default; a very long abstract is data, not an error."""
    if csv.field_size_limit() < 2**30:
        csv.field_size_limit(2**30)


def read_file(path: str | Path) -> FileLoad:
    """Read one corpus file in the format its content shows (`rag.readers.detect_format`), the suffix deciding
    only when the content does not: a .txt holding BibTeX is read as BibTeX."""
    from rag.readers import read_any  # rag.readers builds on this module's helpers

    return read_any(path)


# --- merging and loading -----------------------------------------------------------------------------------


def merge_papers(papers: Iterable[Paper]) -> list[Paper]:
    """One paper per normalised title, in first-seen order, with the richest metadata of all its entries.

    Kept: the first id and title, the longest abstract with what other versions say differently
    (`merged_abstract`), every author once (first spelling, first-seen order), every source once, and for
    session fields, year and category the first value that is set.
    """
    groups: dict[str, list[Paper]] = {}
    for paper in papers:
        groups.setdefault(normalise_title(paper.title) or paper.title.strip(), []).append(paper)
    return [_merge_group(group) if len(group) > 1 else group[0] for group in groups.values()]


def _merge_group(group: list[Paper]) -> Paper:
    first = group[0]
    update: dict[str, Any] = {
        "abstract": merged_abstract([paper.abstract for paper in group]),
        "authors": _union((author for paper in group for author in paper.authors), key=normalise_title),
        "sources": _union((source for paper in group for source in paper.sources), key=str),
    }
    for field in (*_EXTRA_FIELDS, "year", "category"):
        update[field] = next((getattr(p, field) for p in group if getattr(p, field) not in (None, "")), None)
    return first.model_copy(update=update)


ANOTHER_VERSION = "Another version of this abstract says:"
"""Opens the sentences that only another version of a paper's abstract has (see `merged_abstract`)."""


def merged_abstract(abstracts: Sequence[str]) -> str:
    """The longest abstract, followed by the sentences that only the other versions have.

    The same paper listed twice often carries two versions of its abstract (a preprint and the final paper),
    and they can differ in their figures. Keeping the longest alone would lose what the other one states, and a
    reader who saw the other figure elsewhere could not find it. A shorter version that is a truncation or a
    subset of the longest adds nothing."""
    versions = sorted(dict.fromkeys(abstract.strip() for abstract in abstracts if abstract.strip()), key=len)
    if not versions:
        return ""
    longest = versions.pop()
    seen = " ".join(longest.split())
    extra: list[str] = []
    for version in reversed(versions):
        for sentence in split_sentences(version):
            flat = " ".join(sentence.split()).rstrip(".…")
            if flat and flat not in seen:
                extra.append(sentence)
                seen += " " + flat
    return f"{longest}\n\n{ANOTHER_VERSION} {' '.join(extra)}" if extra else longest


def _union(values: Iterable[str], key) -> list[str]:
    seen: set[str] = set()
    result = []
    for value in values:
        marker = key(value) or value
        if marker not in seen:
            seen.add(marker)
            result.append(value)
    return result


def _ensure_unique_ids(papers: list[Paper]) -> tuple[list[Paper], list[str]]:
    """Different papers that ended up with one id (two files both using id "1") get suffixed ids."""
    taken: set[str] = set()
    result, problems = [], []
    for paper in papers:
        if paper.id in taken:
            new_id = _free_id(paper.id, taken)
            problems.append(
                f"{', '.join(paper.sources)}: id {paper.id!r} is used by another paper; "
                f"{paper.title[:60]!r} kept as {new_id!r}"
            )
            paper = paper.model_copy(update={"id": new_id})
        taken.add(paper.id)
        result.append(paper)
    return result, problems


def corpus_files(paths: Sequence[str | Path] | str | Path) -> tuple[list[Path], list[str]]:
    """The files `paths` name: files as given, folders as their corpus files sorted by name (not recursive).

    Raises CorpusError for a path that does not exist, since that is almost always a typo worth stopping for.
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    if not paths:
        raise CorpusError("corpus", "no files or folders given")
    files: list[Path] = []
    problems: list[str] = []
    seen: set[Path] = set()
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise CorpusError(str(path), "no such file or folder")
        found, found_problems = _folder_files(path) if path.is_dir() else ([path], [])
        problems.extend(found_problems)
        for file in found:
            resolved = file.resolve()
            if resolved not in seen:
                seen.add(resolved)
                files.append(file)
    return files, problems


def _folder_files(folder: Path) -> tuple[list[Path], list[str]]:
    try:
        entries = sorted(folder.iterdir())
    except OSError as error:
        return [], [f"{folder}: cannot list folder ({error.strerror or _one_line(error)})"]
    files, problems = [], []
    for entry in entries:
        if entry.name.startswith(".") or entry.suffix.lower() not in CORPUS_SUFFIXES or not entry.is_file():
            continue
        if entry.name.lower() in SKIPPED_IN_FOLDERS:
            problems.append(f"{entry}: skipped (BEIR queries, not papers)")
            continue
        files.append(entry)
    if not files:
        problems.append(f"{folder}: no {', '.join(CORPUS_SUFFIXES)} files in this folder")
    return files, problems


def load_corpus(paths: Sequence[str | Path] | str | Path) -> CorpusLoad:
    """Read every file `paths` names and merge duplicates into unique papers.

    Broken files and rows become `problems` (one line each, naming file and line) and the rest of the corpus
    is kept; only a path that does not exist raises `CorpusError`.
    """
    files, problems = corpus_files(paths)
    entries: list[Paper] = []
    missing = 0
    for file in files:
        loaded = read_file(file)
        entries.extend(loaded.papers)
        missing += loaded.missing_abstracts
        problems.extend(_capped(loaded.problems, loaded.path))
    papers, id_problems = _ensure_unique_ids(merge_papers(entries))
    return CorpusLoad(
        papers=papers,
        entries=len(entries),
        files=len(files),
        problems=problems + id_problems,
        missing_abstracts=missing,
    )


def _capped(problems: list[str], path: str) -> list[str]:
    if len(problems) <= MAX_PROBLEMS_PER_FILE:
        return problems
    hidden = len(problems) - MAX_PROBLEMS_PER_FILE
    return [*problems[:MAX_PROBLEMS_PER_FILE], f"{path}: ... and {hidden} more problem(s) in this file"]
