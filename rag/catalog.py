"""The paper catalog: every paper's record but its abstract, and name -> paper look-ups, in one small sqlite file.

Retrieval needs a few whole-collection structures: the papers whose author, session or moderator a question names,
the papers whose names (name-like title words, coined method names) it writes, a talk's session-mates, the
papers a filter admits, and the long forms the abstracts give the acronyms a question writes. Held as `Paper`
objects they cost memory in proportion to the collection in every process; here they are rows of a file written
at ingest beside the collection (`rag.retrieve` decides what goes in), and a question reads only the rows its
words or anchors select. Abstracts stay in the vector store, read for the few papers a question returns.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from rag.types import Paper

_SCHEMA = """
CREATE TABLE papers (id TEXT PRIMARY KEY, title TEXT, authors TEXT, sources TEXT, session TEXT, room TEXT,
                     moderator TEXT, day TEXT, time_slot TEXT, year INTEGER, category TEXT);
CREATE TABLE keys (kind TEXT, key TEXT, paper_id TEXT, position INTEGER);
CREATE INDEX keys_by_key ON keys (kind, key);
CREATE INDEX papers_by_session ON papers (session);
CREATE TABLE acronyms (short TEXT PRIMARY KEY, long TEXT);
"""


class Catalog:
    """Read side of the catalog; safe to share between threads (one connection, one lock)."""

    def __init__(self, connection: sqlite3.Connection):
        self._connection = connection
        self._lock = threading.Lock()

    # --- building --------------------------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        papers: Iterable[Paper],
        keys: Iterable[tuple[str, str, str, int]],
        path: Path | None = None,
        long_forms: Mapping[str, str] | None = None,
    ) -> Catalog:
        """Write papers (abstracts left out), (kind, key, paper id, position) look-up rows and the collection's
        acronym -> long form table; with `path`, into that file, replaced whole (written beside it, then
        renamed over it), else in memory."""
        long_forms = long_forms or {}
        if path is None:
            connection = sqlite3.connect(":memory:", check_same_thread=False)
            _fill(connection, papers, keys, long_forms)
            return cls(connection)
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        staging.unlink(missing_ok=True)
        connection = sqlite3.connect(staging)
        _fill(connection, papers, keys, long_forms)
        connection.close()
        os.replace(staging, path)
        return cls.open(path)

    @classmethod
    def open(cls, path: Path) -> Catalog:
        """The catalog in `path`, read-only."""
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        connection.execute("SELECT 1 FROM papers LIMIT 1")  # a damaged or foreign file fails here, not mid-question
        return cls(connection)

    # --- reading ---------------------------------------------------------------------------------------------
    def papers(self, paper_ids: Iterable[str]) -> dict[str, Paper]:
        """The records of `paper_ids` that exist (abstract empty), by id."""
        ids = list(dict.fromkeys(paper_ids))
        found: dict[str, Paper] = {}
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            marks = ",".join("?" * len(part))
            found.update(
                (row[0], _paper(row)) for row in self._rows(f"SELECT * FROM papers WHERE id IN ({marks})", part)
            )
        return found

    def every_paper(self) -> Iterator[Paper]:
        """Every record (abstract empty), streamed: for filters, which may admit any paper."""
        for row in self._rows("SELECT * FROM papers ORDER BY id", ()):
            yield _paper(row)

    def session_mates(self, paper: Paper) -> dict[str, Paper]:
        """The papers of `paper`'s session, itself included."""
        rows = self._rows("SELECT * FROM papers WHERE session = ?", (paper.session,))
        return {row[0]: _paper(row) for row in rows}

    def lookup(self, kind: str, keys: Iterable[str]) -> list[tuple[str, str, int]]:
        """(key, paper id, position) rows of `kind` for `keys`, ordered by paper id and position."""
        wanted = list(dict.fromkeys(keys))
        rows: list[tuple[str, str, int]] = []
        for start in range(0, len(wanted), 500):
            part = wanted[start : start + 500]
            marks = ",".join("?" * len(part))
            query = f"SELECT key, paper_id, position FROM keys WHERE kind = ? AND key IN ({marks})"
            rows.extend(self._rows(query, [kind, *part]))
        return sorted(rows, key=lambda row: (row[1], row[2]))

    def long_forms(self, acronyms: Iterable[str]) -> dict[str, str]:
        """The long forms the collection agrees on (`rag.text.agreed_long_forms`) of those `acronyms` it has."""
        wanted = list(dict.fromkeys(acronyms))[:500]
        if not wanted:
            return {}
        marks = ",".join("?" * len(wanted))
        return dict(self._rows(f"SELECT short, long FROM acronyms WHERE short IN ({marks})", wanted))

    def longest(self, kind: str) -> int:
        """The most words any key of `kind` has (n-grams of a query longer than this cannot match)."""
        rows = self._rows("SELECT MAX(LENGTH(TRIM(key)) - LENGTH(REPLACE(TRIM(key), ' ', '')) + 1) FROM keys "
                          "WHERE kind = ?", (kind,))  # fmt: skip
        return int(rows[0][0] or 0)

    def __len__(self) -> int:
        return int(self._rows("SELECT COUNT(*) FROM papers", ())[0][0])

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    def _rows(self, query: str, parameters) -> list[tuple]:
        with self._lock:
            return self._connection.execute(query, list(parameters)).fetchall()


def _fill(
    connection: sqlite3.Connection,
    papers: Iterable[Paper],
    keys: Iterable[tuple[str, str, str, int]],
    long_forms: Mapping[str, str],
) -> None:
    connection.executescript(_SCHEMA)
    connection.executemany(
        "INSERT OR REPLACE INTO papers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            (
                paper.id, paper.title, json.dumps(paper.authors), json.dumps(paper.sources), paper.session,
                paper.room, paper.moderator, paper.day, paper.time_slot, paper.year, paper.category,
            )
            for paper in papers
        ),
    )  # fmt: skip
    connection.executemany("INSERT INTO keys VALUES (?, ?, ?, ?)", keys)
    connection.executemany("INSERT INTO acronyms VALUES (?, ?)", long_forms.items())
    connection.commit()


def _paper(row: tuple) -> Paper:
    paper_id, title, authors, sources, session, room, moderator, day, time_slot, year, category = row
    return Paper(
        id=paper_id,
        title=title or "",
        abstract="",
        authors=json.loads(authors or "[]"),
        sources=json.loads(sources or "[]"),
        session=session,
        room=room,
        moderator=moderator,
        day=day,
        time_slot=time_slot,
        year=year,
        category=category,
    )
