"""Chunking and the Chroma vector index: incremental, idempotent, crash-safe ingest of papers.

Storage: one Chroma collection (cosine space) whose metadata records the embedding model and dimension, so
vectors of two models are never mixed: opening it with another model drops and rebuilds it. Every chunk
carries its paper's content hash and enough metadata (abstract on chunk 0) to rebuild the `Paper` without
the corpus files. Chroma never embeds anything itself: collections are opened with `embedding_function=None`
and we always pass our own vectors.

Ingest is incremental: a paper whose content hash and chunk ids are already stored is skipped. Changed papers
are written first (upsert: chunk ids are deterministic) and their stale chunks deleted after, so a process
killed at any moment leaves an index that opens, answers, and is completed by the next ingest without
duplicates (a half-written paper has mixed hashes or missing ids, so the next ingest rewrites it).

Processes: the embedded store (a Chroma PersistentClient folder) keeps in-memory HNSW state per process and
is not safe for two processes at once. Tried with chromadb 1.5 and no lock: a second process missed 80 of 90
vectors written after it opened, and a process opening the folder just after two concurrent writers died
with a segfault. So an embedded index is locked (`flock` on `<index_dir>/rag.lock`) by the first
process that opens it, for as long as it stays open; a second process fails at once with an `IndexError_`
that points to server mode. The kernel drops the lock when its process dies, even by SIGKILL. Several
`PaperIndex` objects in one process share the lock. To share one index between processes (chat UI plus CLI,
say), run `chroma run --path <folder>` and set `RAG_CHROMA_HOST`.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from rag.embeddings import SentenceVectors
from rag.errors import IndexError_
from rag.records import paper_sentences
from rag.settings import Settings
from rag.text import sentences_within
from rag.types import Chunk, CollectionInfo, IngestProgress, IngestReport, Paper

log = logging.getLogger(__name__)

LIST_SEPARATOR = " · "
"""Joins authors and sources into one metadata string (Chroma metadata values cannot be lists)."""

SCHEMA_VERSION = 1
"""Bumped when the stored chunk layout changes, so old collections are rebuilt rather than misread."""

LOCK_FILE = "rag.lock"
DERIVED_DIR = "derived"
"""Next to the store, per collection: what retrieval derives from the whole collection (the BM25 index, the paper
catalog), persisted so a process opens it instead of rebuilding it (`rag.retrieve`)."""
REVISION_KEY = "rag_revision"
"""Collection metadata key that every ingest which writes changes, so derived files can tell they are stale."""
PAPERS_KEY = "rag_papers"
"""Collection metadata key: the papers stored, counted by the last ingest that wrote (a count of chunk-0 records
would read every record of a large collection)."""
CORPUS_KEY = "rag_default_corpus"
"""Collection metadata key: the fingerprint (`corpus_fingerprint`) of the default corpus as last ingested, so a
bot can tell that the bundled corpus, or the code that reads it, changed since (`Bot.ensure_index`)."""
LIST_PAGE = 100
"""Collections asked of Chroma per `list_collections` call."""
SENTENCE_VECTORS_FILE = "sentence-vectors.bin"
"""Next to the store: the answer stage's vectors of source sentences (`rag.embeddings.SentenceVectors`)."""
OPTIONAL_FIELDS = ("session", "room", "moderator", "day", "time_slot", "year", "category")
HASHED_WHEN_SET = ("category",)
"""Paper fields added after indexes were built: left out of the content hash while unset, so adding a field
does not make every stored paper look changed (and re-embedded) on the next ingest."""


ProgressCallback = Callable[[IngestProgress], None]
"""What `PaperIndex.ingest` calls after each written step (see `IngestProgress`)."""


class EmbedderLike(Protocol):
    """What the index needs from an embedder (see `rag.embeddings.Embedder`)."""

    @property
    def name(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    def embed(self, texts: list[str]) -> np.ndarray: ...


# --- chunking --------------------------------------------------------------------------------------------


def chunk_paper(paper: Paper, settings: Settings) -> list[Chunk]:
    """Sentence-based chunks of the abstract, each starting with the title and authors so it stands alone.

    Chunks hold about `settings.index.chunk_chars` characters of abstract and repeat the last
    `settings.index.chunk_overlap_sentences` sentences of the previous chunk. Runs in linear time, so a
    pathological 10 MB abstract chunks in well under a second.
    """
    header = chunk_header(paper)
    sentences = sentences_within(paper.abstract, settings.index.chunk_chars)
    groups = _group_sentences(sentences, settings.index.chunk_chars, settings.index.chunk_overlap_sentences)
    return [
        Chunk(
            id=f"{paper.id}#{index}",
            paper_id=paper.id,
            index=index,
            text=f"{header}\n{' '.join(group)}".strip(),
        )
        for index, group in enumerate(groups)
    ]


def chunk_header(paper: Paper) -> str:
    """'Title. Authors: A, B.' (no authors part when none are known)."""
    title = " ".join(paper.title.split())
    header = title if title.endswith((".", "?", "!")) else f"{title}."
    if paper.authors:
        header += f" Authors: {', '.join(paper.authors)}."
    return header


def _group_sentences(sentences: list[str], max_chars: int, overlap: int) -> list[list[str]]:
    """Greedy packing into groups of about `max_chars`; every group adds at least one new sentence."""
    groups: list[list[str]] = []
    current: list[str] = []
    size = 0
    fresh = 0  # sentences in `current` not carried over from the previous group
    for sentence in sentences:
        if fresh and size + len(sentence) > max_chars:
            groups.append(current)
            current = _overlap_tail(current, overlap, max_chars // 2)
            size = sum(len(kept) + 1 for kept in current)
            fresh = 0
        current.append(sentence)
        size += len(sentence) + 1
        fresh += 1
    if fresh or not groups:
        groups.append(current)
    return groups


def _overlap_tail(group: list[str], overlap: int, max_chars: int) -> list[str]:
    """The last `overlap` sentences of `group`, fewer if they would fill more than `max_chars`."""
    tail = group[-overlap:] if overlap else []
    while tail and sum(len(sentence) for sentence in tail) > max_chars:
        tail = tail[1:]
    return tail


def corpus_fingerprint(papers: Sequence[Paper], settings: Settings) -> str:
    """One hash of every paper's content hash: it changes when any paper of the corpus, as read, changes."""
    digest = hashlib.sha256()
    for value in sorted(content_hash(paper, settings) for paper in papers):
        digest.update(value.encode())
    return digest.hexdigest()[:16]


def content_hash(paper: Paper, settings: Settings) -> str:
    """Changes whenever the paper or the chunking settings change, so either triggers a re-embed."""
    dumped = paper.model_dump(mode="json")
    for name in HASHED_WHEN_SET:
        if dumped.get(name) is None:
            dumped.pop(name, None)
    payload = {
        "paper": dumped,
        "chunk_chars": settings.index.chunk_chars,
        "overlap": settings.index.chunk_overlap_sentences,
        "schema": SCHEMA_VERSION,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def evidence_sentences(papers: Iterable[Paper]) -> list[str]:
    """The sentences the answer stage embeds for each paper it shows (`rag.evidence.build_evidence`)."""
    return [text for paper in papers for text in paper_sentences(paper)]


# --- stored metadata <-> Paper ---------------------------------------------------------------------------


def chunk_metadata(paper: Paper, chunk: Chunk, digest: str) -> dict[str, Any]:
    """Chroma metadata of one chunk: str/int/float/bool values only; the abstract only on chunk 0."""
    metadata: dict[str, Any] = {
        "paper_id": paper.id,
        "chunk": chunk.index,
        "content_hash": digest,
        "title": paper.title,
        "authors": LIST_SEPARATOR.join(paper.authors),
        "sources": LIST_SEPARATOR.join(paper.sources),
    }
    for name in OPTIONAL_FIELDS:
        value = getattr(paper, name)
        if value is not None:
            metadata[name] = value
    if chunk.index == 0:
        metadata["abstract"] = paper.abstract
    return metadata


def paper_from_metadata(metadata: dict[str, Any]) -> Paper:
    """The `Paper` stored on a chunk-0 metadata record."""
    return Paper(
        id=str(metadata["paper_id"]),
        title=str(metadata.get("title", "")),
        abstract=str(metadata.get("abstract", "")),
        authors=_split_list(metadata.get("authors")),
        sources=_split_list(metadata.get("sources")),
        **{name: metadata[name] for name in OPTIONAL_FIELDS if name in metadata},
    )


def _split_list(value: Any) -> list[str]:
    return [item for item in str(value or "").split(LIST_SEPARATOR) if item]


# --- the index -------------------------------------------------------------------------------------------


@dataclass
class _StoredPaper:
    """What the store holds for one paper: chunk ids and the content hashes they were written with."""

    chunk_ids: set[str] = field(default_factory=set)
    hashes: set[str] = field(default_factory=set)


@dataclass
class _PendingPaper:
    paper: Paper
    chunks: list[Chunk]
    digest: str
    stale_ids: set[str]


class PaperIndex:
    """Papers as chunk vectors in one Chroma collection. Create it with `open_index`.

    Reads (`query`, `chunks`, `papers`, `count`) are safe from several threads; `ingest` should run in one
    thread at a time (the `Bot` holds a lock around it). `chunks()` and `papers()` are cached and the caches
    are dropped when an ingest writes or when the stored chunk count changes (another client of a server).
    """

    def __init__(self, client, collection, settings: Settings, embedder: EmbedderLike, *, location: str):
        self.settings = settings
        self.embedder = embedder
        self.location = location
        self.rebuilt: str | None = None  # why the collection was dropped and rebuilt on opening, if it was
        self._client = client
        self._collection = collection
        self._lock_dir: Path | None = None
        self._cache_lock = threading.Lock()
        self._chunks: list[Chunk] | None = None
        self._papers: dict[str, Paper] | None = None
        self._vectors: dict[str, np.ndarray] | None = None
        self._cached_count = -1
        self._closed = False
        self.derived_dir: Path | None = None
        """Where retrieval keeps what it derives from this collection (None: keep it in memory only)."""
        self.sentence_vectors = SentenceVectors(embedder, settings.index_dir / SENTENCE_VECTORS_FILE)
        """Vectors of the papers' title, author, schedule and abstract sentences, kept across questions."""

    # --- writing -----------------------------------------------------------------------------------------
    def ingest(self, papers: Iterable[Paper], progress: ProgressCallback | None = None) -> IngestReport:
        """Add new papers, replace changed ones, skip unchanged ones; returns what was done.

        Papers already stored but absent from `papers` are kept: ingest adds files to a collection. `progress`,
        if given, is called once before the first step and after each written step with an `IngestProgress`
        (papers done of those new or changed, the unchanged ones skipped, rate, time left).
        """
        started = time.perf_counter()
        unique = {paper.id: paper for paper in papers}  # a later duplicate id wins
        stored = self._stored_state()
        pending: list[_PendingPaper] = []
        skipped = replaced = 0
        for paper in unique.values():
            chunks = chunk_paper(paper, self.settings)
            digest = content_hash(paper, self.settings)
            ids = {chunk.id for chunk in chunks}
            before = stored.get(paper.id)
            if before is not None and before.hashes == {digest} and before.chunk_ids == ids:
                skipped += 1
                continue
            replaced += before is not None
            stale = (before.chunk_ids - ids) if before else set()
            pending.append(_PendingPaper(paper, chunks, digest, stale))
        added = 0
        meter = _Meter(len(pending), skipped, progress)
        written: set[str] = set()
        try:
            for step in _steps(pending, self._step_size()):
                added += self._write(step)
                written.update(item.paper.id for item in step)
                if self.settings.index.sentence_vectors_at_ingest:  # with its step, so progress counts this work too
                    self.sentence_vectors.fill(evidence_sentences(item.paper for item in step), self._step_size())
                meter.advance(len(step))
        finally:
            if pending:
                self._invalidate()
                self._new_revision(papers=len(stored.keys() | written))
        if self.settings.index.sentence_vectors_at_ingest:  # unchanged papers whose sentences were never embedded
            self.sentence_vectors.fill(evidence_sentences(unique.values()), batch=self._step_size())
        notes = [self.rebuilt] if self.rebuilt else []
        self.rebuilt = None  # reported once
        return IngestReport(
            papers=len(unique),
            chunks_added=added,
            papers_skipped=skipped,
            papers_replaced=replaced,
            notes=notes,
            seconds=round(time.perf_counter() - started, 3),
        )

    def _write(self, step: list[_PendingPaper]) -> int:
        """Embed and upsert the chunks of `step`, then delete their stale chunks (crash-safe order)."""
        records = [(item.paper, chunk, item.digest) for item in step for chunk in item.chunks]
        vectors = self.embedder.embed([chunk.text for _, chunk, _ in records])
        batch = self._max_batch()
        for start in range(0, len(records), batch):
            part = records[start : start + batch]
            self._chroma(
                "write to",
                self._collection.upsert,
                ids=[chunk.id for _, chunk, _ in part],
                embeddings=vectors[start : start + batch],
                documents=[chunk.text for _, chunk, _ in part],
                metadatas=[chunk_metadata(paper, chunk, digest) for paper, chunk, digest in part],
            )
        stale = sorted(set().union(*(item.stale_ids for item in step)))
        for start in range(0, len(stale), batch):
            self._chroma("delete from", self._collection.delete, ids=stale[start : start + batch])
        return len(records)

    def revision(self) -> str | None:
        """A token that changes with every ingest that writes (any client of a server), None before the first."""
        try:
            metadata = self._client.get_collection(self._collection.name, embedding_function=None).metadata
        except Exception:  # a server that went away: the count check will fail loudly elsewhere
            metadata = self._collection.metadata
        return (metadata or {}).get(REVISION_KEY)

    def default_corpus(self) -> str | None:
        """The fingerprint of the default corpus as last ingested into this collection; None when the default
        corpus never was (a collection of the user's own files is never refreshed from it)."""
        return (self._collection.metadata or {}).get(CORPUS_KEY)

    def remember_default_corpus(self, fingerprint: str) -> None:
        metadata = {**(self._collection.metadata or {}), CORPUS_KEY: fingerprint}
        self._chroma("write to", self._collection.modify, metadata=metadata)

    def _new_revision(self, papers: int) -> None:
        """A new revision token, and the paper count `collections()` shows without reading every record."""
        import uuid

        metadata = {**(self._collection.metadata or {}), REVISION_KEY: uuid.uuid4().hex, PAPERS_KEY: papers}
        self._chroma("write to", self._collection.modify, metadata=metadata)

    def _stored_state(self) -> dict[str, _StoredPaper]:
        stored: dict[str, _StoredPaper] = {}
        for chunk_id, metadata, _ in self._scan(include=["metadatas"]):
            entry = stored.setdefault(str(metadata.get("paper_id")), _StoredPaper())
            entry.chunk_ids.add(chunk_id)
            entry.hashes.add(str(metadata.get("content_hash")))
        return stored

    def _step_size(self) -> int:
        return max(1, min(self.settings.index.ingest_batch_size, self._max_batch()))

    def _max_batch(self) -> int:
        try:
            return max(1, int(self._client.get_max_batch_size()))
        except Exception:  # an old server without the endpoint: Chroma's documented floor
            return 1000

    # --- reading -----------------------------------------------------------------------------------------
    def query(self, embedding: np.ndarray, n: int, where: dict[str, Any] | None = None) -> list[tuple[Chunk, float]]:
        """The `n` chunks nearest to `embedding`, best first, with cosine similarity (higher is better).

        `where` is a Chroma metadata filter; a plain dict of several fields means all must match.
        """
        total = self.count()
        if n <= 0 or total == 0:
            return []
        vector = np.asarray(embedding, dtype=np.float32).reshape(-1)
        if vector.shape[0] != self.embedder.dimension:
            raise IndexError_(
                f"Query vector has {vector.shape[0]} dimensions; the index holds {self.embedder.dimension}."
            )
        result = self._chroma(
            "query",
            self._collection.query,
            query_embeddings=[vector],
            n_results=min(n, total),
            where=_chroma_where(where),
            include=["documents", "metadatas", "distances"],
        )
        hits = zip(
            result["ids"][0],
            result["documents"][0],
            result["metadatas"][0],
            result["distances"][0],
            strict=True,
        )
        return [
            (_chunk_from_record(chunk_id, document, metadata), 1.0 - float(distance))
            for chunk_id, document, metadata, distance in hits
        ]

    def vectors(self, chunk_ids: Iterable[str]) -> dict[str, np.ndarray]:
        """The stored unit vectors of `chunk_ids` (float32) by id; ids not stored are left out.

        The retriever scores lexical-only candidates by their exact cosine: score fusion needs a dense score for
        every candidate, and Chroma's nearest neighbours hold only its own top n.
        """
        wanted = list(dict.fromkeys(chunk_ids))
        found: dict[str, np.ndarray] = {}
        batch = self._max_batch()
        for start in range(0, len(wanted), batch):
            result = self._chroma(
                "read", self._collection.get, ids=wanted[start : start + batch], include=["embeddings"]
            )
            vectors = np.asarray(result["embeddings"], dtype=np.float32).reshape(len(result["ids"]), -1)
            found.update(zip(result["ids"], vectors, strict=True))
        return found

    def papers_by_id(self, paper_ids: Iterable[str]) -> dict[str, Paper]:
        """The stored papers among `paper_ids`, read from their chunk-0 records (what a question returns)."""
        wanted = [f"{paper_id}#0" for paper_id in dict.fromkeys(paper_ids)]
        found: dict[str, Paper] = {}
        batch = self._max_batch()
        for start in range(0, len(wanted), batch):
            result = self._chroma(
                "read", self._collection.get, ids=wanted[start : start + batch], include=["metadatas"]
            )
            for metadata in result["metadatas"]:
                paper = paper_from_metadata(metadata)
                found[paper.id] = paper
        return found

    def chunk_texts(self, chunk_ids: Iterable[str]) -> dict[str, str]:
        """The stored texts of `chunk_ids` that exist, by id."""
        wanted = list(dict.fromkeys(chunk_ids))
        found: dict[str, str] = {}
        batch = self._max_batch()
        for start in range(0, len(wanted), batch):
            result = self._chroma(
                "read", self._collection.get, ids=wanted[start : start + batch], include=["documents"]
            )
            found.update(zip(result["ids"], result["documents"], strict=True))
        return found

    def stream_papers(self) -> Iterator[Paper]:
        """Every stored paper, one page of records at a time and not cached (derived files are built from it)."""
        for _, metadata, _ in self._scan(include=["metadatas"], where={"chunk": 0}):
            yield paper_from_metadata(metadata)

    def stream_chunks(self) -> Iterator[Chunk]:
        """Every stored chunk, one page at a time and not cached."""
        for chunk_id, metadata, document in self._scan(include=["documents", "metadatas"]):
            yield _chunk_from_record(chunk_id, document, metadata)

    def chunks(self) -> list[Chunk]:
        """Every stored chunk, ordered by paper and position (the lexical index is built from these)."""
        with self._cache_lock:
            self._check_cache()
            if self._chunks is None:
                records = self._scan(include=["documents", "metadatas"])
                chunks = [_chunk_from_record(chunk_id, doc, meta) for chunk_id, meta, doc in records]
                self._chunks = sorted(chunks, key=lambda chunk: (chunk.paper_id, chunk.index))
            return list(self._chunks)

    def chunk_vectors(self) -> dict[str, np.ndarray]:
        """Every stored chunk's unit vector by chunk id (float32), cached like `chunks()`.

        The retriever scores lexical-only candidates by their exact cosine instead of guessing one: score
        fusion needs a dense score for every candidate, and Chroma only returns its own top n.
        """
        with self._cache_lock:
            self._check_cache()
            if self._vectors is None:
                records = self._scan_vectors()
                self._vectors = {chunk_id: vector for chunk_id, vector in records}
            return self._vectors

    def papers(self) -> dict[str, Paper]:
        """Every stored paper by id, rebuilt from chunk metadata (no corpus files needed)."""
        with self._cache_lock:
            self._check_cache()
            if self._papers is None:
                records = self._scan(include=["metadatas"], where={"chunk": 0})
                papers = (paper_from_metadata(metadata) for _, metadata, _ in records)
                self._papers = {paper.id: paper for paper in sorted(papers, key=lambda paper: paper.id)}
            return dict(self._papers)

    def count(self) -> int:
        """Stored chunks."""
        return int(self._chroma("read", self._collection.count))

    def paper_count(self) -> int:
        """Stored papers."""
        return len(self.papers())

    def close(self) -> None:
        """Release the Chroma client and, for an embedded store, this process's lock on it."""
        if self._closed:
            return
        self._closed = True
        _disconnect(self._client, self._lock_dir)

    def __enter__(self) -> PaperIndex:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # --- helpers -----------------------------------------------------------------------------------------
    def _scan(self, include: list[str], where: dict | None = None) -> Iterator[tuple[str, dict, str | None]]:
        """(id, metadata, document) of every record, fetched in pages of Chroma's batch size."""
        page = self._max_batch()
        offset = 0
        while True:
            result = self._chroma("read", self._collection.get, include=include, where=where, limit=page, offset=offset)
            ids = result["ids"]
            documents = result.get("documents") or [None] * len(ids)
            yield from zip(ids, result["metadatas"], documents, strict=True)
            if len(ids) < page:
                return
            offset += page

    def _scan_vectors(self) -> Iterator[tuple[str, np.ndarray]]:
        page = self._max_batch()
        offset = 0
        while True:
            result = self._chroma("read", self._collection.get, include=["embeddings"], limit=page, offset=offset)
            ids = result["ids"]
            vectors = np.asarray(result["embeddings"], dtype=np.float32).reshape(len(ids), -1)
            yield from zip(ids, vectors, strict=True)
            if len(ids) < page:
                return
            offset += page

    def _check_cache(self) -> None:
        count = self.count()
        if count != self._cached_count:
            self._chunks = self._papers = self._vectors = None
            self._cached_count = count

    def _invalidate(self) -> None:
        with self._cache_lock:
            self._chunks = self._papers = self._vectors = None
            self._cached_count = -1

    def _chroma(self, action: str, call, *args, **kwargs):
        """Run a Chroma call, turning its errors into one-line `IndexError_`s."""
        try:
            return call(*args, **kwargs)
        except IndexError_:
            raise
        except Exception as error:
            raise IndexError_(f"Cannot {action} the index at {self.location}: {_one_line(error)}") from error


class _Meter:
    """Counts the papers an ingest has written and reports each step to its progress callback."""

    def __init__(self, total: int, skipped: int, callback: ProgressCallback | None):
        self.total, self.skipped, self.callback = total, skipped, callback
        self.done = 0
        self.started = time.perf_counter()
        self._report()

    def advance(self, papers: int) -> None:
        self.done += papers
        self._report()

    def _report(self) -> None:
        if self.callback is None:
            return
        seconds = time.perf_counter() - self.started
        rate = self.done / seconds if self.done and seconds > 0 else 0.0
        eta = (self.total - self.done) / rate if rate else None
        self.callback(
            IngestProgress(
                done=self.done,
                total=self.total,
                skipped=self.skipped,
                seconds=round(seconds, 3),
                rate=round(rate, 2),
                eta_s=None if eta is None else round(eta, 1),
            )
        )


def _steps(pending: list[_PendingPaper], size: int) -> Iterator[list[_PendingPaper]]:
    """Whole papers grouped into steps of about `size` chunks (a paper bigger than a step is one step)."""
    step: list[_PendingPaper] = []
    chunks = 0
    for item in pending:
        if step and chunks + len(item.chunks) > size:
            yield step
            step, chunks = [], 0
        step.append(item)
        chunks += len(item.chunks)
    if step:
        yield step


def _chunk_from_record(chunk_id: str, document: str | None, metadata: dict[str, Any]) -> Chunk:
    return Chunk(id=chunk_id, paper_id=str(metadata["paper_id"]), index=int(metadata["chunk"]), text=document or "")


def _chroma_where(where: dict[str, Any] | None) -> dict[str, Any] | None:
    """Chroma wants `$and` around several conditions; accept a plain {field: value, ...} too."""
    if not where:
        return None
    if len(where) > 1 and not any(key.startswith("$") for key in where):
        return {"$and": [{key: value} for key, value in where.items()]}
    return where


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# --- opening ---------------------------------------------------------------------------------------------


def open_index(settings: Settings, embedder: EmbedderLike) -> PaperIndex:
    """Open (creating if needed) the collection in the embedded store, or on the Chroma server if
    `settings.index.chroma_host` is set. Raises `IndexError_` with one line when that is impossible, leaving any
    existing index untouched (except a rebuild for a different embedding model, reported in `rebuilt`)."""
    client, lock_dir, location = _connect(settings)
    try:
        collection, rebuilt = _open_collection(client, settings, embedder, location)
    except BaseException:
        _disconnect(client, lock_dir)
        raise
    index = PaperIndex(client, collection, settings, embedder, location=location)
    index._lock_dir = lock_dir
    index.derived_dir = derived_dir(settings)
    index.rebuilt = rebuilt
    if rebuilt:
        log.warning(rebuilt)
    return index


def list_collections(settings: Settings) -> list[CollectionInfo]:
    """Every collection of the embedded store or the Chroma server of `settings`, by name, with its counts.

    Chroma's `list_collections` returns collection objects (chromadb >= 0.6), read here a page at a time."""
    client, lock_dir, location = _connect(settings)
    try:
        found = []
        while page := client.list_collections(limit=LIST_PAGE, offset=len(found)):
            found += page
            if len(page) < LIST_PAGE:
                break
        return sorted((_collection_info(collection) for collection in found), key=lambda info: info.name)
    except IndexError_:
        raise
    except Exception as error:
        raise IndexError_(f"Cannot list the collections at {location}: {_one_line(error)}") from error
    finally:
        _disconnect(client, lock_dir)


def _collection_info(collection) -> CollectionInfo:
    metadata = collection.metadata or {}
    papers = metadata.get(PAPERS_KEY)
    return CollectionInfo(
        name=collection.name,
        chunks=int(collection.count()),
        papers=int(papers) if isinstance(papers, int) else None,
        embedding_model=metadata.get("embedding_model"),
    )


def _connect(settings: Settings):
    """(client, lock folder or None, location for messages): the server's client, or the embedded store's
    with this process's lock on it. Close with `_disconnect`."""
    if settings.index.chroma_host:
        location = f"Chroma server {settings.index.chroma_host}:{settings.index.chroma_port}"
        return _server_client(settings), None, location
    lock_dir = _acquire_lock(settings.index_dir)
    try:
        return _embedded_client(settings.index_dir), lock_dir, str(settings.index_dir)
    except BaseException:
        _release_lock(lock_dir)
        raise


def _disconnect(client, lock_dir: Path | None) -> None:
    """Close a client of `_connect` (other clients of the same store in this process keep theirs) and drop
    this user of the lock."""
    close = getattr(client, "close", None)
    try:
        if close is not None:
            close()
    except Exception as error:  # closing is best effort; the lock must still go
        log.debug("closing the Chroma client failed: %s", error)
    finally:
        if lock_dir is not None:
            _release_lock(lock_dir)


def derived_dir(settings: Settings) -> Path:
    """The folder of a collection's derived files: beside the embedded store, or under the data folder for a
    collection on a server (one per host, port and collection)."""
    host, port = settings.index.chroma_host, settings.index.chroma_port
    if host:
        return settings.data_dir / DERIVED_DIR / f"{host}-{port}-{settings.collection}"
    return settings.index_dir / DERIVED_DIR / settings.collection


def _chroma_settings():
    from chromadb.config import Settings as ChromaSettings

    return ChromaSettings(anonymized_telemetry=False)


def _embedded_client(index_dir: Path):
    import chromadb

    try:
        return chromadb.PersistentClient(path=str(index_dir), settings=_chroma_settings())
    except Exception as error:
        raise IndexError_(
            f"Cannot open the index at {index_dir} ({_one_line(error)}); it may be corrupt or from another "
            "Chroma version: move the folder away and run `rag ingest` to rebuild it."
        ) from error


def _server_client(settings: Settings):
    import chromadb
    import httpx

    host, port = settings.index.chroma_host, settings.index.chroma_port
    try:  # Chroma's own HTTP client waits forever; probe with a timeout first
        httpx.get(f"http://{host}:{port}/api/v2/heartbeat", timeout=settings.index.chroma_connect_timeout_s)
        return chromadb.HttpClient(host=host, port=port, settings=_chroma_settings())
    except Exception as error:
        raise IndexError_(
            f"Cannot reach the Chroma server at {host}:{port} ({_one_line(error)}): start it with "
            f"`chroma run --path <folder> --host {host} --port {port}`, or unset RAG_CHROMA_HOST to use the "
            "embedded index."
        ) from error


def hnsw_configuration(settings: Settings) -> dict[str, Any]:
    """Chroma's HNSW configuration of a new collection: cosine space and the recall settings."""
    return {
        "space": "cosine",
        "ef_construction": settings.index.hnsw_ef_construction,
        "max_neighbors": settings.index.hnsw_max_neighbors,
        "ef_search": settings.index.hnsw_ef_search,
    }


def _tune_search(collection, settings: Settings) -> None:
    """Set ef_search on an existing collection (the one HNSW setting Chroma lets change after creation), so
    collections made before the setting, or with another value, search as configured."""
    try:
        current = (getattr(collection, "configuration", None) or {}).get("hnsw") or {}
        if current.get("ef_search") != settings.index.hnsw_ef_search:
            collection.modify(configuration={"hnsw": {"ef_search": settings.index.hnsw_ef_search}})
    except Exception as error:  # an older server without configuration updates searches with its own value
        log.warning("could not set ef_search on collection %s: %s", settings.collection, _one_line(error))


def _open_collection(client, settings: Settings, embedder: EmbedderLike, location: str):
    """The collection for `embedder`, dropped and recreated when it was built with another model."""
    from chromadb.errors import NotFoundError

    name = settings.collection
    wanted = {"embedding_model": embedder.name, "embedding_dimension": int(embedder.dimension)}
    wanted["rag_schema"] = SCHEMA_VERSION
    try:
        try:
            existing = client.get_collection(name, embedding_function=None)
        except NotFoundError:
            existing = None
        rebuilt = None
        if existing is not None:
            found = existing.metadata or {}
            if all(found.get(key) == value for key, value in wanted.items()):
                _tune_search(existing, settings)
                return existing, None
            if "embedding_model" not in found and existing.count() > 0:
                raise IndexError_(
                    f"Collection {name!r} at {location} was not made by this bot; set RAG_COLLECTION to another name."
                )
            if "embedding_model" in found:
                rebuilt = (
                    f"Rebuilt the index at {location}: it was built with {found.get('embedding_model')} "
                    f"({found.get('embedding_dimension')}-d), now {wanted['embedding_model']} "
                    f"({wanted['embedding_dimension']}-d); run ingest to fill it."
                )
            client.delete_collection(name)
        collection = client.create_collection(
            name,
            configuration={"hnsw": hnsw_configuration(settings)},
            metadata=wanted,
            embedding_function=None,
            get_or_create=True,
        )
        return collection, rebuilt
    except IndexError_:
        raise
    except Exception as error:
        raise IndexError_(f"Cannot open collection {name!r} at {location}: {_one_line(error)}") from error


# --- one process per embedded store ------------------------------------------------------------------------

_locks: dict[Path, tuple[int, int]] = {}  # folder -> (file descriptor, users in this process)
_locks_guard = threading.Lock()


def _acquire_lock(index_dir: Path) -> Path:
    """Take (or share, within this process) the exclusive lock on an embedded index folder."""
    try:
        index_dir.mkdir(parents=True, exist_ok=True)
        index_dir = index_dir.resolve()
    except OSError as error:
        raise IndexError_(
            f"Cannot create the index folder {index_dir}: {_one_line(error)}. Set RAG_DATA_DIR to a writable folder."
        ) from error
    with _locks_guard:
        if index_dir in _locks:
            fd, users = _locks[index_dir]
            _locks[index_dir] = (fd, users + 1)
            return index_dir
        path = index_dir / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise IndexError_(
                f"The index folder {index_dir} is not writable ({_one_line(error)}). Set RAG_DATA_DIR to a "
                "writable folder."
            ) from error
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = _lock_holder(fd)
            os.close(fd)
            raise IndexError_(
                f"The index at {index_dir} is in use by another process{holder}; the embedded store serves "
                "one process at a time. Stop that process, or share the index through a Chroma server: "
                f"`chroma run --path {index_dir}` and set RAG_CHROMA_HOST=127.0.0.1."
            ) from error
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _locks[index_dir] = (fd, 1)
        return index_dir


def _release_lock(index_dir: Path) -> None:
    with _locks_guard:
        fd, users = _locks.get(index_dir, (-1, 0))
        if users > 1:
            _locks[index_dir] = (fd, users - 1)
        elif users == 1:
            del _locks[index_dir]
            os.close(fd)  # closing the descriptor drops the flock


def _lock_holder(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode().strip()
    except OSError:
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""
