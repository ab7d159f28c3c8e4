"""Readers for the files researchers' libraries come as, and the sniffer that picks one by content.

One function per format, each returning a `rag.corpus.FileLoad` (papers before merging, one-line problems):

* `read_arxiv`: the arXiv metadata snapshot, JSON lines with ``id``, ``title``, ``abstract``, ``authors``
  ("A. One, B. Two and C. Three"), ``categories`` ("cs.LG stat.ML"), ``versions`` / ``update_date`` and often
  ``authors_parsed``. Read line by line, so a multi-gigabyte dump is never held as one string.
* `read_bibtex`: BibTeX / BibLaTeX entries (``@article{key, abstract = {...}}``) with ``@string`` macros,
  ``#`` concatenation, braces or quotes, and the common LaTeX accents turned into Unicode.
* `read_csl_json`: CSL-JSON, what Zotero and Mendeley export (an array of items with ``title``,
  ``abstract``, ``author: [{family, given}]``, ``issued: {date-parts}``, ``container-title``, ``id``).
* The JSONL, CSV and seed-page readers of `rag.corpus`, as before.

`detect_format` reads the start of a file and names its format from the content (a ``.txt`` that holds
BibTeX is BibTeX); the suffix decides only when the content says nothing. Year and category (arXiv
categories, or the journal / proceedings a bibliography names) become `Paper` fields that searches filter
on. An entry without an abstract is not indexed (answers quote abstracts) but counted in
`FileLoad.missing_abstracts` and named in one summary problem; a malformed entry is one problem naming the
file and line and, for BibTeX, its key. No reader raises on bad content.
"""

from __future__ import annotations

import codecs
import csv
import json
import re
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rag.corpus import (
    _YEAR,
    BIBTEX_SUFFIXES,
    CORPUS_SUFFIXES,
    CSV_SUFFIXES,
    JSONL_SUFFIXES,
    PAGE_SUFFIXES,
    FileLoad,
    _clean,
    _clean_line,
    _one_line,
    _read_text,
    paper_id_for,
    read_csv,
    read_jsonl,
    read_page,
    unique_id,
)
from rag.types import Paper

SNIFF_BYTES = 65536
"""How much of a file the format is told from: enough for the first records of any of the formats."""

MISSING_SHOWN = 5
"""Entries without an abstract named in the summary problem; the rest are counted."""

_SIMPLE_ID = re.compile(r"^[\w.:/+-]{1,120}$")
"""A citation key or arXiv id usable as a paper id as it is ("doe2020example", "hep-th/9901001")."""

# --- detection -----------------------------------------------------------------------------------------------

_BIBTEX_ENTRY = re.compile(r"^[ \t]*@[ \t]*([A-Za-z][\w-]*)[ \t]*[{(]", re.MULTILINE)
_ARXIV_KEYS = frozenset({"categories", "versions", "update_date", "authors_parsed"})
_CSL_KEYS = frozenset({"issued", "container-title", "citation-key", "date-parts"})
_CSL_HINT = re.compile(r'"(?:issued|container-title|citation-key|date-parts)"\s*:|"author"\s*:\s*\[\s*\{')


def detect_format(path: str | Path) -> str | None:
    """The format of a file: "arxiv", "bibtex", "csl", "jsonl", "csv" or "page", or None when neither its
    content nor its suffix says. Unreadable files get their suffix's format, whose reader reports why."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            head = handle.read(SNIFF_BYTES)
    except OSError:
        head = b""
    return sniff_format(_decode_head(head), path.suffix.lower())


def sniff_format(head: str, suffix: str = "") -> str | None:
    """`detect_format` on the first characters of a file: JSON before BibTeX before CSV, then the suffix."""
    start = head.lstrip()[:1]
    if start == "[":
        return "csl" if _CSL_HINT.search(head) else "jsonl"
    if start == "{":
        first = _first_json_object(head)
        if first is not None:
            return _json_record_format(first)
    if _BIBTEX_ENTRY.search(head):
        return "bibtex"
    if _looks_like_csv_header(head):
        return "csv"
    by_suffix = {
        **dict.fromkeys(PAGE_SUFFIXES, "page"),
        **dict.fromkeys(JSONL_SUFFIXES, "jsonl"),
        **dict.fromkeys(CSV_SUFFIXES, "csv"),
        **dict.fromkeys(BIBTEX_SUFFIXES, "bibtex"),
    }
    return by_suffix.get(suffix)


def _decode_head(head: bytes) -> str:
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return head.decode("utf-16", errors="replace")
    return head.decode("utf-8-sig", errors="replace")


def _first_json_object(head: str) -> dict[str, Any] | None:
    """The first line as a JSON object, or None (a pretty-printed or broken first line)."""
    line = head.lstrip().split("\n", 1)[0]
    try:
        value = json.loads(line)
    except (json.JSONDecodeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _json_record_format(record: dict[str, Any]) -> str:
    keys = set(record)
    if "abstract" in keys and "id" in keys and keys & _ARXIV_KEYS:
        return "arxiv"
    authors = record.get("author")
    if keys & _CSL_KEYS or (isinstance(authors, list) and authors and isinstance(authors[0], dict)):
        return "csl"
    return "jsonl"


def _looks_like_csv_header(head: str) -> bool:
    """A first line whose columns name a title and a text or abstract (the header `read_csv` needs)."""
    first = head.lstrip("\ufeff").split("\n", 1)[0]
    if not any(separator in first for separator in ",;\t|"):
        return False
    try:
        dialect = csv.Sniffer().sniff(first, delimiters=",;\t|")
        columns = next(csv.reader([first], dialect=dialect))
    except (csv.Error, StopIteration):
        return False
    names = {column.strip().lower() for column in columns}
    return "title" in names and bool(names & {"text", "abstract", "abstract note"})


# --- shared entry handling -----------------------------------------------------------------------------------


class _Entries:
    """Papers of one bibliography file: ids kept unique, problems and missing abstracts named by place.

    A place is `where` (":12" for line 12, ": item 3" for the third item of an array), written right after
    the file name, and `name`, the entry's key or id when it has one.
    """

    def __init__(self, path: Path, noun: str):
        self.path = str(path)
        self.source = path.name
        self.noun = noun  # how problems name an entry: "entry 'key'" (BibTeX), "id '0704.0001'"
        self.papers: list[Paper] = []
        self.problems: list[str] = []
        self.missing: list[str] = []
        self._title_by_id: dict[str, str] = {}

    def problem(self, where: str, message: str, name: str = "") -> None:
        self.problems.append(f"{self.path}{where}: {f'{self.noun} {name!r}: ' if name else ''}{message}")

    def add(self, fields: dict[str, Any], where: str, name: str) -> None:
        """One entry's fields (title, abstract, authors, year, category, id) as a paper, or its problem."""
        title, abstract = fields.get("title") or "", fields.get("abstract") or ""
        if not title:
            self.problem(where, "no title, skipped", name)
            return
        if not abstract:
            self.missing.append(name or _place(where))
            return
        raw_id = fields.get("id") or ""
        paper_id = raw_id if _SIMPLE_ID.match(raw_id) and "://" not in raw_id else paper_id_for(title)
        try:
            paper = Paper(
                id=paper_id,
                title=title,
                abstract=abstract,
                authors=fields.get("authors") or [],
                sources=[self.source],
                year=fields.get("year"),
                category=fields.get("category") or None,
            )
        except ValidationError as error:
            self.problem(where, _one_line(error), name)
            return
        self.papers.append(self._unique_id(paper, where))

    def _unique_id(self, paper: Paper, where: str) -> Paper:
        paper, clash = unique_id(paper, self._title_by_id)
        if clash:
            self.problem(where, clash)
        return paper

    def finish(self, extra_problems: list[str] | None = None) -> FileLoad:
        problems = [*(extra_problems or []), *self.problems]
        if self.missing:
            shown = ", ".join(self.missing[:MISSING_SHOWN]) + (", ..." if len(self.missing) > MISSING_SHOWN else "")
            noun = "entry" if len(self.missing) == 1 else "entries"
            problems.append(f"{self.path}: {len(self.missing)} {noun} without an abstract, not indexed ({shown})")
        return FileLoad(path=self.path, papers=self.papers, problems=problems, missing_abstracts=len(self.missing))


def _place(where: str) -> str:
    """':12' -> 'line 12', ': item 3' -> 'item 3'."""
    return f"line {where[1:]}" if where[1:].isdigit() else where.lstrip(": ")


def _year_in(value: Any) -> int | None:
    """The first plausible year (1800-2199) in a number or a date string, else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value if 1800 <= value <= 2199 else None
    match = _YEAR.search(str(value)) if isinstance(value, str | float) else None
    return int(match.group(1)) if match else None


def _text(value: Any) -> str:
    """A field value as text: strings as they are, numbers written out, anything else (lists, objects) empty."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return ""


# --- LaTeX -------------------------------------------------------------------------------------------------

_ACCENT_MARKS = {
    "'": "\u0301",
    "`": "\u0300",
    "^": "\u0302",
    '"': "\u0308",
    "~": "\u0303",
    "=": "\u0304",
    ".": "\u0307",
    "u": "\u0306",
    "v": "\u030c",
    "H": "\u030b",
    "c": "\u0327",
    "k": "\u0328",
    "r": "\u030a",
    "d": "\u0323",
    "b": "\u0331",
}
_BASE = r"(\\[ij](?![A-Za-z])|[A-Za-z])"
_SYMBOL_ACCENT = re.compile(rf"""\\([`'^"~=.])\s*(?:\{{\s*{_BASE}\s*\}}|{_BASE})""")
_LETTER_ACCENT = re.compile(rf"\\([uvHckrdb])(?:\s*\{{\s*{_BASE}\s*\}}|\s+{_BASE})")
_LETTERS = {
    "ss": "ß",
    "ae": "æ",
    "AE": "Æ",
    "oe": "œ",
    "OE": "Œ",
    "aa": "å",
    "AA": "Å",
    "o": "ø",
    "O": "Ø",
    "l": "ł",
    "L": "Ł",
    "i": "ı",
    "j": "ȷ",
}
_LETTER = re.compile(r"\\(ss|ae|AE|oe|OE|aa|AA|o|O|l|L|i|j)(?![A-Za-z])(?:\{\}|\s)?")
_ESCAPED = re.compile(r"\\([&%$#_{}])")
_FORMATTING = re.compile(
    r"\\(?:emph|textit|textbf|textrm|textsf|texttt|textsc|textup|textnormal|text|mathrm|mathbf|mathit|mbox|url)"
    r"\s*(?=\{)"
)
_MATH = re.compile(r"((?<!\\)\$(?:[^$\\]|\\.)+?\$)", re.DOTALL)
_PUNCTUATION = (("---", "—"), ("--", "–"), ("``", "“"), ("''", "”"), ("~", " "))


def latex_to_text(text: str) -> str:
    """The plain reading of BibTeX/arXiv text: accents ({\\'e}, \\"o, \\c{c}, \\v s) as Unicode, \\ss and
    friends as letters, \\& and other escapes as the character, formatting commands and grouping braces
    dropped, dashes and quotes typeset, whitespace collapsed. Math ($...$) and unknown commands stay as
    written: "$\\mathcal{O}(n^{2})$" reads better whole than with its braces taken out."""
    if "\\" not in text and "{" not in text and "~" not in text and "--" not in text and "`" not in text:
        return " ".join(text.split())
    pieces = _MATH.split(text)  # odd positions are math
    text = "".join(piece if position % 2 else _plain(piece) for position, piece in enumerate(pieces))
    return " ".join(unicodedata.normalize("NFC", text).split())


def _plain(text: str) -> str:
    """`latex_to_text` on text outside math."""

    def accent(match: re.Match[str]) -> str:
        base = next(group for group in match.groups()[1:] if group)
        return base.lstrip("\\") + _ACCENT_MARKS[match.group(1)]

    text = _SYMBOL_ACCENT.sub(accent, text)
    text = _LETTER_ACCENT.sub(accent, text)
    text = _LETTER.sub(lambda match: _LETTERS[match.group(1)], text)
    text = _FORMATTING.sub("", text)
    text = _ESCAPED.sub(lambda match: {"{": "\x01", "}": "\x02"}.get(match.group(1), match.group(1)), text)
    text = text.replace("{", "").replace("}", "")  # grouping; escaped braces are kept aside as \x01 \x02
    for latex, typeset in _PUNCTUATION:
        text = text.replace(latex, typeset)
    return text.replace("\x01", "{").replace("\x02", "}")


# --- arXiv metadata snapshot -------------------------------------------------------------------------------

_NEW_ARXIV_ID = re.compile(r"^(\d{2})(\d{2})\.\d{4,5}")
_OLD_ARXIV_ID = re.compile(r"/(\d{2})(\d{2})\d{3}")
_PARENTHESES = re.compile(r"\([^()]*\)")


def read_arxiv(path: str | Path) -> FileLoad:
    """The arXiv metadata snapshot (one JSON object a line, as in the public dump), read line by line.

    Year: the first version's date, else the id's YYMM, else update_date. Category: the arXiv categories.
    Authors: the author string split at commas and "and", affiliations in parentheses dropped; or
    authors_parsed when the string is missing.
    """
    path = Path(path)
    entries = _Entries(path, "id")
    lines, problems = _physical_lines_of(path)
    seen = False
    for number, line in lines:
        if not line.strip():
            continue
        seen = True
        where = f":{number}"
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as error:
            entries.problem(where, f"invalid JSON ({getattr(error, 'msg', 'nested too deeply')})")
            continue
        if not isinstance(record, dict):
            entries.problem(where, f"expected an arXiv record (a JSON object), got {type(record).__name__}")
            continue
        arxiv_id = _clean_line(_text(record.get("id")))
        entries.add(_arxiv_fields(record, arxiv_id), where, arxiv_id)
    if not seen and not problems:
        problems.append(f"{path}: empty file")
    return entries.finish(problems)


def _physical_lines_of(path: Path) -> tuple[Iterator[tuple[int, str]], list[str]]:
    """(line number, text) of a file read as a stream, or no lines and the problem that stopped it."""
    try:
        handle = path.open("rb")
    except OSError as error:
        return iter(()), [f"{path}: cannot read ({error.strerror or _one_line(error)})"]

    def lines() -> Iterator[tuple[int, str]]:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        with handle:
            for number, raw in enumerate(handle, start=1):
                text = decoder.decode(raw)
                yield number, text.lstrip("\ufeff") if number == 1 else text

    return lines(), []


def _arxiv_fields(record: dict[str, Any], arxiv_id: str) -> dict[str, Any]:
    return {
        "id": arxiv_id,
        "title": latex_to_text(_clean(_text(record.get("title")))),
        "abstract": latex_to_text(_clean(_text(record.get("abstract")))),
        "authors": _arxiv_authors(record),
        "year": _arxiv_year(record, arxiv_id),
        "category": " ".join(_text(record.get("categories")).split()),
    }


def _arxiv_authors(record: dict[str, Any]) -> list[str]:
    written = _text(record.get("authors"))
    if written.strip():
        while _PARENTHESES.search(written):  # "A. One (MIT), B. Two ((1) CMU)": affiliations, nested too
            written = _PARENTHESES.sub("", written)
        parts = re.split(r",|\band\b", written)
        return [name for part in parts if (name := latex_to_text(_clean(part)))]
    parsed = record.get("authors_parsed")
    names = []
    for item in parsed if isinstance(parsed, list) else []:
        if isinstance(item, list) and item and all(isinstance(part, str) for part in item):
            last, first, suffix = [*item, "", ""][:3]
            names.append(latex_to_text(" ".join(part for part in (first, last, suffix) if part.strip())))
    return [name for name in names if name]


def _arxiv_year(record: dict[str, Any], arxiv_id: str) -> int | None:
    versions = record.get("versions")
    if isinstance(versions, list) and versions and isinstance(versions[0], dict):
        year = _year_in(versions[0].get("created"))
        if year is not None:
            return year
    match = _NEW_ARXIV_ID.match(arxiv_id) or _OLD_ARXIV_ID.search(arxiv_id)
    if match is not None and 1 <= int(match.group(2)) <= 12:
        short = int(match.group(1))
        return 1900 + short if short >= 91 else 2000 + short  # arXiv opened in August 1991
    return _year_in(record.get("update_date"))


# --- BibTeX ------------------------------------------------------------------------------------------------

_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october")
_MONTHS += ("november", "december")
_PREDEFINED_MACROS = {name[:3]: name.capitalize() for name in _MONTHS}
_SKIPPED_TYPES = ("comment", "preamble")
_NAME = re.compile(r"[^\s=,{}\"#()%]+")
_SPACE = re.compile(r"\s*")
_BRACE_OR_ESCAPE = re.compile(r"\\.|[{}]", re.DOTALL)
_QUOTE_BRACE_OR_ESCAPE = re.compile(r'\\.|[{}"]', re.DOTALL)
_CATEGORY_FIELDS = ("journal", "journaltitle", "booktitle", "eventtitle", "primaryclass", "eprintclass")
_AND = re.compile(r"\s+and\s+", re.IGNORECASE)


class BibError(ValueError):
    """A BibTeX entry that cannot be read; the message completes 'file:line: entry KEY: ...'."""


def read_bibtex(path: str | Path) -> FileLoad:
    """BibTeX or BibLaTeX entries with an abstract field, as papers.

    Year: the year field, else the year of date. Category: journal, booktitle (or their BibLaTeX names),
    else the arXiv primary class. A broken entry (unbalanced braces, a missing "=") is one problem naming
    its line and key; entries after it are read as usual.
    """
    path = Path(path)
    text, problems = _read_text(path)
    entries = _Entries(path, "entry")
    if text is None:
        return entries.finish(problems)
    records, errors = parse_bibtex(text)
    events = [(line, key, fields, "") for line, key, fields in records]
    events += [(line, key, None, message) for line, key, message in errors]
    for line, key, fields, message in sorted(events, key=lambda event: event[0]):
        if fields is None:
            entries.problem(f":{line}", message, key)
        else:
            entries.add(_bibtex_fields(key, fields), f":{line}", key)
    return entries.finish(problems)


def parse_bibtex(text: str) -> tuple[list[tuple[int, str, dict[str, str]]], list[tuple[int, str, str]]]:
    """(line, key, raw fields) of every entry, and (line, key, problem) of every entry that could not be read
    (the key as written, or "" when it cannot be told).

    The text is cut at each line that starts an entry ("@type{" or "@type("), so a missing brace spoils only
    its own entry. @string macros apply to the entries after them; @comment and @preamble are skipped; text
    outside entries is a comment, as in BibTeX.
    """
    macros = dict(_PREDEFINED_MACROS)
    starts = list(_BIBTEX_ENTRY.finditer(text))
    records, errors = [], []
    line = text.count("\n", 0, starts[0].start()) + 1 if starts else 1
    for position, match in enumerate(starts):
        end = starts[position + 1].start() if position + 1 < len(starts) else len(text)
        kind = match.group(1).lower()
        if kind in _SKIPPED_TYPES:
            pass
        elif kind == "string":
            try:
                _, fields = _parse_body(text, match.end(), end, _closer(match), macros, keyed=False)
                macros.update(fields)
            except BibError as error:
                errors.append((line, "", f"@string: {error}"))
        else:
            key = _entry_key(text, match.end(), end)
            try:
                key, fields = _parse_body(text, match.end(), end, _closer(match), macros, keyed=True)
                records.append((line, key, fields))
            except BibError as error:
                errors.append((line, key, str(error)))
        line += text.count("\n", match.start(), end)
    return records, errors


def _closer(match: re.Match[str]) -> str:
    return ")" if match.group(0).rstrip().endswith("(") else "}"


def _entry_key(text: str, start: int, end: int) -> str:
    """The key as written (for problem messages), even when the rest of the entry is broken."""
    head = text[start:end].split(",", 1)[0]
    return head.strip() if _SIMPLE_ID.match(head.strip()) else ""


def _parse_body(
    text: str, start: int, end: int, closer: str, macros: dict[str, str], keyed: bool
) -> tuple[str, dict[str, str]]:
    """The key and fields of one entry body `text[start:end]` (after its opening delimiter)."""
    position = start
    key = ""
    if keyed:
        comma = text.find(",", start, end)
        close = text.find(closer, start, end)
        stop = comma if comma != -1 and (close == -1 or comma < close) else close
        if stop == -1:
            raise BibError(f"no closing {closer!r}")
        key = text[start:stop].strip()
        if not key or not _SIMPLE_ID.match(key):
            raise BibError("missing citation key" if not key or "=" in key else f"bad citation key {key[:40]!r}")
        position = stop
    fields: dict[str, str] = {}
    while True:
        position = _skip(text, position, end)
        if position < end and text[position] == ",":
            position += 1
            continue
        if position >= end:
            raise BibError(f"no closing {closer!r} (unbalanced braces?)")
        if text[position] == closer:
            return key, fields
        name_match = _NAME.match(text, position, end)
        if name_match is None:
            raise BibError(f"unexpected {text[position]!r} where a field name should be")
        name = name_match.group(0).lower()
        position = _skip(text, name_match.end(), end)
        if position >= end or text[position] != "=":
            raise BibError(f"field {name!r} has no '='")
        value, position = _value(text, position + 1, end, closer, macros, name)
        fields.setdefault(name, value)
        position = _skip(text, position, end)
        if position < end and text[position] not in (",", closer):
            raise BibError(f"field {name!r}: expected ',' or {closer!r} after its value")


def _skip(text: str, position: int, end: int) -> int:
    return min(_SPACE.match(text, position, end).end(), end)


def _value(text: str, position: int, end: int, closer: str, macros: dict[str, str], name: str) -> tuple[str, int]:
    """One field value: braced, quoted, a number or a macro, joined with '#'; returns it and where it ends."""
    parts = []
    while True:
        position = _skip(text, position, end)
        if position >= end:
            raise BibError(f"field {name!r} has no value")
        char = text[position]
        if char == "{":
            stop = _balanced(text, position + 1, end, _BRACE_OR_ESCAPE, name)
            parts.append(text[position + 1 : stop])
            position = stop + 1
        elif char == '"':
            stop = _balanced(text, position + 1, end, _QUOTE_BRACE_OR_ESCAPE, name)
            parts.append(text[position + 1 : stop])
            position = stop + 1
        else:
            word = _NAME.match(text, position, end)
            if word is None or char == closer:
                raise BibError(f"field {name!r} has no value")
            token = word.group(0)
            parts.append(token if token.isdigit() else macros.get(token.lower(), token))
            position = word.end()
        position = _skip(text, position, end)
        if position < end and text[position] == "#":
            position += 1
            continue
        return "".join(parts), position


def _balanced(text: str, position: int, end: int, pattern: re.Pattern[str], name: str) -> int:
    """Where the value opened just before `position` closes: the '}' (or '"') at depth 0."""
    depth = 0
    for match in pattern.finditer(text, position, end):
        token = match.group(0)
        if token == "{":
            depth += 1
        elif token == "}":
            if depth == 0:
                return match.start()
            depth -= 1
        elif token == '"' and depth == 0:
            return match.start()
    raise BibError(f"field {name!r}: unbalanced braces or an unclosed quote")


def _bibtex_fields(key: str, fields: dict[str, str]) -> dict[str, Any]:
    category = next((fields[name] for name in _CATEGORY_FIELDS if fields.get(name, "").strip()), "")
    return {
        "id": key,
        "title": latex_to_text(_clean(fields.get("title", ""))),
        "abstract": latex_to_text(_clean(fields.get("abstract", ""))),
        "authors": bibtex_authors(fields.get("author", "")),
        "year": _year_in(fields.get("year")) or _year_in(fields.get("date")),
        "category": latex_to_text(_clean(category)),
    }


def bibtex_authors(value: str) -> list[str]:
    """'Last, First and First Last and others' -> ['First Last', 'First Last'] (split at 'and' outside braces,
    'Last, Jr, First' -> 'First Last Jr', 'others' left out, {Braced Corporate Names} kept whole)."""
    names = []
    for name in _split_outside_braces(value, _AND):
        parts = [part.strip() for part in _split_outside_braces(name, re.compile(","))]
        if len(parts) >= 3:
            name = f"{parts[2]} {parts[0]} {parts[1]}"
        elif len(parts) == 2:
            name = f"{parts[1]} {parts[0]}"
        text = latex_to_text(_clean(name))
        if text and text.lower() != "others":
            names.append(text)
    return names


def _split_outside_braces(text: str, separator: re.Pattern[str]) -> list[str]:
    """`text` split at `separator` matches that are not inside braces."""
    depth_at = []
    depth = 0
    for char in text:
        depth += char == "{"
        depth -= char == "}" and depth > 0
        depth_at.append(depth)
    pieces, start = [], 0
    for match in separator.finditer(text):
        if depth_at[match.start()] == 0:
            pieces.append(text[start : match.start()])
            start = match.end()
    pieces.append(text[start:])
    return pieces


# --- CSL-JSON ----------------------------------------------------------------------------------------------

_HTML_TAG = re.compile(r"</?(?:i|b|em|strong|sub|sup|sc|span|nocase)(?:\s[^>]*)?>", re.IGNORECASE)
_CSL_CATEGORY = ("container-title", "collection-title", "event-title", "event")


def read_csl_json(path: str | Path) -> FileLoad:
    """CSL-JSON: a JSON array of items (one object, or one item a line, are read too).

    Year: issued's date-parts (or its raw/literal date). Category: container-title, else the collection or
    event title. Problems name the item (1-based) and its id, or the line for one item a line.
    """
    path = Path(path)
    text, problems = _read_text(path)
    entries = _Entries(path, "id")
    if text is None:
        return entries.finish(problems)
    for where, item in _csl_items(text, entries):
        if not isinstance(item, dict):
            entries.problem(where, f"expected a CSL item (a JSON object), got {type(item).__name__}")
            continue
        item_id = _clean_line(_text(item.get("citation-key")) or _text(item.get("id")))
        entries.add(_csl_fields(item, item_id), where, item_id)
    return entries.finish(problems)


def _csl_items(text: str, entries: _Entries) -> Iterator[tuple[str, Any]]:
    """(where, item) of a whole-file array or object; of one JSON value a line when the file is not one
    JSON value; nothing but the problem for a broken array, whose items cannot be told apart."""
    try:
        whole = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as error:
        if text.lstrip().startswith("["):
            line = getattr(error, "lineno", None)
            entries.problem(f":{line}" if line else "", f"invalid JSON ({getattr(error, 'msg', 'nested too deeply')})")
            return
        whole = None
    if isinstance(whole, list):
        for position, item in enumerate(whole, start=1):
            yield f": item {position}", item
    elif whole is not None:
        yield ": item 1", whole
    else:
        for number, line in enumerate(text.replace("\r\n", "\n").split("\n"), start=1):
            if not line.strip():
                continue
            try:
                yield f":{number}", json.loads(line)
            except (json.JSONDecodeError, RecursionError) as error:
                entries.problem(f":{number}", f"invalid JSON ({getattr(error, 'msg', 'nested too deeply')})")


def _csl_fields(item: dict[str, Any], item_id: str) -> dict[str, Any]:
    category = next((value for name in _CSL_CATEGORY if (value := _csl_text(item.get(name)))), "")
    return {
        "id": item_id,
        "title": _clean_line(_HTML_TAG.sub("", _csl_text(item.get("title")))),
        "abstract": _clean(_HTML_TAG.sub("", _csl_text(item.get("abstract")))),
        "authors": _csl_authors(item.get("author")),
        "year": _csl_year(item.get("issued")) or _year_in(item.get("year")),
        "category": _clean_line(_HTML_TAG.sub("", category)),
    }


def _csl_text(value: Any) -> str:
    """A CSL string field; some exporters write a list of strings (several container titles): the first."""
    if isinstance(value, list):
        value = next((part for part in value if isinstance(part, str) and part.strip()), "")
    return _text(value)


def _csl_authors(value: Any) -> list[str]:
    names = []
    for person in value if isinstance(value, list) else []:
        if isinstance(person, str):
            names.append(_clean_line(person))
        elif isinstance(person, dict):
            literal = _text(person.get("literal"))
            keys = ("given", "dropping-particle", "non-dropping-particle", "family", "suffix")
            parts = [_text(person.get(key)) for key in keys]
            names.append(_clean_line(literal or " ".join(part for part in parts if part.strip())))
    return [name for name in names if name]


def _csl_year(issued: Any) -> int | None:
    """issued: {"date-parts": [[2020, 5, 1]]}, or {"raw": "2020-05"} / {"literal": "May 2020"}, or a string."""
    if isinstance(issued, dict):
        parts = issued.get("date-parts")
        if isinstance(parts, list) and parts and isinstance(parts[0], list) and parts[0]:
            year = _year_in(parts[0][0] if not isinstance(parts[0][0], str) else parts[0][0].strip())
            if year is not None:
                return year
        return _year_in(_text(issued.get("raw")) or _text(issued.get("literal")))
    return _year_in(issued if isinstance(issued, str | int) else None)


# --- dispatch ----------------------------------------------------------------------------------------------

READERS: dict[str, Callable[[str | Path], FileLoad]] = {
    "page": read_page,
    "jsonl": read_jsonl,
    "csv": read_csv,
    "arxiv": read_arxiv,
    "bibtex": read_bibtex,
    "csl": read_csl_json,
}


def read_any(path: str | Path) -> FileLoad:
    """Read one corpus file with the reader `detect_format` picks; an unrecognised file is one problem."""
    path = Path(path)
    kind = detect_format(path)
    if kind is None:
        suffix = path.suffix.lower()
        expected = ", ".join(CORPUS_SUFFIXES)
        return FileLoad(
            path=str(path),
            problems=[f"{path}: unsupported file type {suffix or '(none)'!r} (use {expected}, or BibTeX, CSL-JSON)"],
        )
    return READERS[kind](path)
