"""Hybrid retrieval: dense (Chroma) + BM25 + metadata mentions, fused, grouped to papers.

Each retriever ranks chunks; a paper is scored by its best chunk, so a paper with many chunks is not counted
several times. The candidates are the papers of either retriever's top `candidate_chunks` chunks. By default
(`fusion="zscore"`) every candidate gets both scores: its best cosine and its best BM25 score. Dense candidates
come from Chroma's HNSW index (its recall settings: `hnsw_*`, measured against exact search by bench/scale.py),
so a question costs a graph walk, not a product with every stored vector; a lexical-only candidate's cosine is
computed exactly from its stored chunk vectors, fetched by id. Each score is standardised over the candidates
and the weighted sum orders them. Scores carry more than ranks: a paper far ahead on BM25 (a rare method name)
stays ahead, where reciprocal rank fusion (`fusion="rrf"`) would flatten it to "rank 1". On a held-out
benchmark split z-score fusion ranks better than RRF (bench/results/tuning.md). The dense query is the question
without its interrogative frame ("Which method fuses ..." -> "fuses ..."): MiniLM compares it with abstract
sentences, which never ask. Both retrievers read the question with each acronym followed by the long form the
collection's abstracts define for it ("MRIs" -> "MRIs (magnetic resonance images)", `rag.text.expand_acronyms`):
an abstract that only spells the term out is found by a question that abbreviates it.

A third, small ranking lists the papers whose authors, session or moderator the query names verbatim: that is
what makes "which papers did Jane Doe co-author" work, which neither MiniLM nor a bag of words does
reliably. It joins the content ranking by weighted RRF. Then optional reranking and MMR, and the first k
papers become numbered `Source`s.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from rag.catalog import Catalog
from rag.corpus import coined_names
from rag.injection import without_instructions
from rag.lexical import BM25Index
from rag.settings import Settings
from rag.text import (
    acronym_definitions,
    acronyms_in,
    agreed_long_forms,
    as_words,
    expand_acronyms,
    split_prose,
    start_minute,
    tokenize,
)
from rag.types import Chunk, Filters, Paper, Source

log = logging.getLogger(__name__)


# --- pure pieces (tested on their own) ----------------------------------------------------------------------
def reciprocal_rank_fusion(
    rankings: Mapping[str, Sequence[str]], weights: Mapping[str, float], k: int
) -> dict[str, float]:
    """Weighted RRF: item score = sum over rankings of weight / (k + rank), rank starting at 1."""
    fused: dict[str, float] = {}
    for name, ranking in rankings.items():
        weight = weights.get(name, 1.0)
        if weight <= 0:
            continue
        for rank, item in enumerate(ranking, start=1):
            fused[item] = fused.get(item, 0.0) + weight / (k + rank)
    return fused


def zscore_fusion(
    scores: Mapping[str, Mapping[str, float]], weights: Mapping[str, float], floor: float | None = None
) -> dict[str, float]:
    """Weighted sum of per-retriever z-scores over the union of candidates.

    `scores[retriever][item]` is that retriever's raw score (cosine, BM25); an item a retriever did not score
    counts as that retriever's lowest score. Standardising per query puts cosines (~0.2-0.7) and BM25 (0-40)
    on one scale without discarding how far ahead the leaders are. A retriever whose scores are all equal
    adds nothing. With `floor`, a z-score below it counts as `floor`: a retriever that is blind to a query
    (MiniLM on "the 13:05 slot in Ballroom 1") cannot sink the other's clear winner by more than that.
    """
    items = list(dict.fromkeys(item for by_item in scores.values() for item in by_item))
    fused = dict.fromkeys(items, 0.0)
    for name, by_item in scores.items():
        weight = weights.get(name, 1.0)
        if weight <= 0 or not by_item:
            continue
        lowest = min(by_item.values())
        values = np.array([by_item.get(item, lowest) for item in items], dtype=np.float64)
        spread = float(values.std())
        if spread <= 1e-12:
            continue
        z_scores = (values - values.mean()) / spread
        if floor is not None:
            z_scores = np.maximum(z_scores, floor)
        for item, z in zip(items, z_scores, strict=True):
            fused[item] += weight * float(z)
    return fused


def papers_in_rank_order(chunk_ids: Sequence[str], paper_of: Mapping[str, str]) -> list[str]:
    """Paper ids in the order of their best (first) chunk, each paper once."""
    seen: dict[str, None] = {}
    for chunk_id in chunk_ids:
        paper_id = paper_of.get(chunk_id)
        if paper_id is not None and paper_id not in seen:
            seen[paper_id] = None
    return list(seen)


def matches_filters(paper: Paper, filters: Filters) -> bool:
    """True when every given filter holds (case-insensitive substrings; exact year or an inclusive year range,
    which a paper of unknown year never meets: a range asks for papers known to fall in it)."""

    def contains(haystack: str | None, needle: str | None) -> bool:
        return not needle or (haystack is not None and needle.casefold() in haystack.casefold())

    def in_range(year: int | None) -> bool:
        if filters.year_from is None and filters.year_to is None:
            return True
        low, high = filters.year_from, filters.year_to
        return year is not None and (low is None or year >= low) and (high is None or year <= high)

    return (
        (not filters.source or any(contains(name, filters.source) for name in paper.sources))
        and contains(paper.session, filters.session)
        and (not filters.author or any(contains(name, filters.author) for name in paper.authors))
        and (filters.year is None or paper.year == filters.year)
        and in_range(paper.year)
        and contains(paper.category, filters.category)
    )


def mmr_order(relevance: Sequence[float], vectors: np.ndarray, lambda_: float, n: int) -> list[int]:
    """Maximal marginal relevance: greedily pick the item maximising λ·rel - (1-λ)·max sim to those picked.

    `relevance` is min-max normalised first so it lives on the same 0..1 scale as the cosine similarities.
    """
    if len(relevance) == 0:
        return []
    rel = np.asarray(relevance, dtype=np.float32)
    spread = float(rel.max() - rel.min())
    rel = (rel - rel.min()) / spread if spread > 0 else np.ones_like(rel)
    similarity = vectors @ vectors.T
    picked: list[int] = []
    left = list(range(len(rel)))
    while left and len(picked) < n:
        redundancy = similarity[np.ix_(left, picked)].max(axis=1) if picked else np.zeros(len(left))
        gains = lambda_ * rel[left] - (1 - lambda_) * redundancy
        picked.append(left.pop(int(np.argmax(gains))))
    return picked


def metadata_text(paper: Paper) -> str:
    """The metadata of a paper as plain text, indexed by BM25 next to each of its chunks."""
    fields = {
        "Session": paper.session,
        "Moderator": paper.moderator,
        "Room": paper.room,
        "Day": paper.day,
        "Time": paper.time_slot,
        "Year": str(paper.year) if paper.year else None,
    }
    return " ".join(f"{name}: {value}." for name, value in fields.items() if value)


_QUESTION_WORD = r"(?:which|what|who|whom|whose|when|where|why|how(?:\s+(?:many|much))?)"
_AUXILIARY = r"(?:is|are|was|were|do|does|did|has|have|had|can|could|would|should|will|may|might)"
_WORK = r"(?:papers?|works?|stud(?:y|ies)|methods?|approach(?:es)?|talks?|articles?|manuscripts?|publications?|one)"
_QUESTION_FRAME = re.compile(
    rf"^\s*(?:{_QUESTION_WORD}(?:'s)?(?:\s+{_WORK})?(?:\s+{_AUXILIARY})?"
    rf"|(?:is|are)\s+there\s+(?:(?:a|an|any|some)\s+)?(?:{_WORK}\s+)?(?:that|which)?)\b\s*",
    re.IGNORECASE,
)


def question_content(query: str) -> str:
    """The query without a leading question frame, for the dense retriever; statements come back unchanged.

    "Which method fuses two networks ...?" -> "fuses two networks ...", "Is there a study that tries to ..." ->
    "tries to ...", "Why was XNet trained on ...?" -> "XNet trained on ...". The frame (question word, a
    generic 'paper/work/method/study', the auxiliary verb) says what kind of answer is wanted, not what it is
    about, yet MiniLM gives it weight: it pulls the query towards every abstract that says "method". BM25
    needs no such step (its stopwords drop the frame words, and 'method' is common enough to weigh little).
    """
    match = _QUESTION_FRAME.match(query)
    if not match or not match.group().strip():
        return query
    content = query[match.end() :].strip().rstrip("?").strip()
    return content if re.search(r"\w", content) else query


_TITLE_WORD = re.compile(r"[A-Za-z0-9]+(?:[-.+][A-Za-z0-9]+)*")


def is_name_like(word: str, before_colon: bool = False) -> bool:
    """A method/model name rather than a common word: 'XNet', 'abc2vec', 'XNet-50', 'XPN', or 'Name: ...'.

    Ordinary title words ('best', 'rules', 'string') are rare in a small corpus too, so rarity alone would
    make "What is the best pizza recipe?" look relevant; only name-like words count.
    """
    parts = re.split(r"[-.+]", word)
    inner_capital = any(char.isupper() for part in parts for char in part[1:])  # 'Large-Scale' has none
    has_digit = any(any(c.isdigit() for c in part) and any(c.isalpha() for c in part) for part in parts)
    return inner_capital or has_digit or (before_colon and word[:1].isupper())


def title_names(title: str) -> list[str]:
    """The name-like words of a title, as BM25 terms ('XNet: A Subtitle...' -> ['xnet'])."""
    head, colon, _ = title.partition(":")
    single_head = bool(colon) and len(head.split()) == 1
    names = []
    for match in _TITLE_WORD.finditer(title):
        word = match.group()
        if is_name_like(word, before_colon=single_head and match.start() == title.find(head.strip())):
            names.extend(tokenize(word)[:1])
    return [name for name in names if len(name) >= 3]


def name_terms(paper: Paper) -> set[str]:
    """A paper's names as BM25 terms: name-like title words and the one-word, name-like names its abstract coins
    ("XPN", "YNet"; not "Shuffle", which queries use as a word)."""
    coined = [name for name in coined_names(paper.abstract) if " " not in name and is_name_like(name)]
    return {*title_names(paper.title), *(term for name in coined for term in tokenize(name)[:1] if len(term) >= 3)}


def coined_name_owners(papers: Mapping[str, Paper]) -> dict[str, str]:
    """One-word names that exactly one abstract coins, as written -> that paper ("XNet" -> the XNet paper, whose
    abstract names it only in github.com/org/XNet).

    Papers that build on a method say its name more often than the paper that made it ("YNet: XNet-level
    ...", "DenseXNet"), so BM25 and the title-word rule rank them first; the coining paper is the one a question
    about the method itself ("Why was XNet trained on ...?") is about. A name two papers coin belongs to neither.
    Names come from `coined_names(strict=True)`, and a query must write them as the abstract does
    (`owned_papers`): "named STABLE" and "called RECALL" are names, "stable" and "recall" are words.
    """
    coiners: dict[str, set[str]] = {}
    for paper_id, paper in papers.items():
        for name in coined_names(paper.abstract, strict=True):
            if " " not in name and is_name_like(name):
                coiners.setdefault(name, set()).add(paper_id)
    return {name: next(iter(ids)) for name, ids in coiners.items() if len(ids) == 1}


def owned_papers(query: str, owners: Mapping[str, str]) -> list[str]:
    """The papers that coin a name `query` writes as a whole word, in the order of `owners`."""
    return list(
        dict.fromkeys(
            paper_id
            for name, paper_id in owners.items()
            if name in query and re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", query)
        )
    )


def rare_names(papers: Mapping[str, Paper], max_papers: int) -> dict[str, set[str]]:
    """Names of at most `max_papers` papers -> the ids of those papers: name-like title words ("XNet",
    "abc2vec") and the one-word names abstracts coin ("XPN", "YNet" from github.com/org/YNet).

    A query naming such a word points at its paper even when MiniLM scores the question low ("Which paper
    proposes XPN?" reaches a cosine of ~0.3).
    """
    papers_with: dict[str, set[str]] = {}
    for paper_id, paper in papers.items():
        for word in name_terms(paper):
            papers_with.setdefault(word, set()).add(paper_id)
    return {word: ids for word, ids in papers_with.items() if len(ids) <= max_papers}


class MetadataMentions:
    """Finds the papers whose full author name, moderator or session name a query contains as whole words.

    Names are normalised once when the corpus is loaded, so a query costs one pass over the distinct names
    (hundreds), not over every paper.
    """

    def __init__(self, papers: Mapping[str, Paper]):
        self.papers_by_name: dict[str, list[str]] = {}
        for paper_id, paper in papers.items():
            for name in {*paper.authors, paper.moderator or "", paper.session or "", paper.room or ""}:
                key = as_words(name, fold_accents=False)
                if len(key) > 6:  # ' ab c ' and shorter would match by accident
                    self.papers_by_name.setdefault(key, []).append(paper_id)

    def find(self, query: str) -> list[str]:
        words = as_words(query, fold_accents=False)
        hits: dict[str, None] = {}
        for name, paper_ids in self.papers_by_name.items():
            if name in words:
                hits.update(dict.fromkeys(paper_ids))
        return list(hits)


_SCHEDULE_QUESTION = re.compile(
    r"\b(?:after|before|next|previous|preceding|following|followed|same session|earlier|later)\b", re.IGNORECASE
)
_EARLIER = re.compile(r"\b(?:before|previous|preceding|earlier)\b", re.IGNORECASE)
_LATER = re.compile(r"\b(?:after|next|following|followed|later)\b", re.IGNORECASE)


def schedule_neighbours(query: str, anchors: Sequence[str], papers: Mapping[str, Paper]) -> list[str]:
    """For "which paper was presented right after XNet": the anchors' session-mates, nearest in time first.

    Only for queries with a schedule word (after, before, next, same session, ...). Session-mates share the
    anchor's session, day and room. Talks in the asked direction (after/next: later; before/previous:
    earlier) come first, each side nearest first. Neither retriever can see "after": it relates two papers.
    """
    if not anchors or not _SCHEDULE_QUESTION.search(query):
        return []
    later, earlier = bool(_LATER.search(query)), bool(_EARLIER.search(query))
    found: dict[str, float] = {}
    for anchor_id in anchors:
        anchor = papers.get(anchor_id)
        start = start_minute(anchor.time_slot) if anchor else None
        if anchor is None or not anchor.session or start is None:
            continue
        for paper_id, paper in papers.items():
            minute = start_minute(paper.time_slot)
            same = (paper.session, paper.day, paper.room) == (anchor.session, anchor.day, anchor.room)
            if paper_id == anchor_id or not same or minute is None:
                continue
            delta = minute - start
            wrong_side = (later and not earlier and delta < 0) or (earlier and not later and delta > 0)
            order = abs(delta) + (10_000 if wrong_side else 0)
            found[paper_id] = min(found.get(paper_id, order), order)
    return sorted(found, key=found.__getitem__)


def mentioned_papers(query: str, papers: Mapping[str, Paper]) -> list[str]:
    """Papers whose full author name, moderator or session name the query contains as whole words."""
    return MetadataMentions(papers).find(query)


def _best(scores: np.ndarray, rows: range) -> float:
    """The highest of `scores` over a run of rows (0 for none)."""
    return float(scores[rows.start : rows.stop].max()) if rows else 0.0


DERIVED_FORMAT = 3
"""Bumped when the layout of the derived files changes, or what goes into them (which names an abstract coins,
`name_terms`), so old ones are rebuilt rather than misread."""


def read_stamp(folder: Path) -> dict | None:
    """The stamp saved with a derived folder, or None when it is missing or unreadable."""
    try:
        return json.loads((folder / STAMP_FILE).read_text())
    except (OSError, ValueError):
        return None


def write_stamp(folder: Path, stamp: dict | None) -> None:
    """Written last, after the files are complete (and removed first, with None): a crash in between leaves no
    stamp, so a rebuild."""
    path = folder / STAMP_FILE
    if stamp is None:
        path.unlink(missing_ok=True)
        return
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(stamp))


STAMP_FILE = "stamp.json"


# --- reranking hook -----------------------------------------------------------------------------------------
class Reranker(Protocol):
    """Reorders (and may re-score) the fused papers for a query; gets more candidates than it must return."""

    def rerank(self, query: str, sources: list[Source]) -> list[Source]: ...


class SentenceMaxSimReranker:
    """Scores each paper by its best single sentence's cosine to the query, using the same MiniLM embedder.

    A chunk embedding averages several sentences; a question is usually about one of them. The max-sim order
    is fused with the retrieval order by RRF (weight `rerank_weight`), so it nudges rather than replaces.
    Sentence vectors are cached per paper, so only the first query touching a paper pays for them.
    """

    def __init__(self, embedder, settings: Settings):
        self.embedder = embedder
        self.settings = settings
        self._cache: dict[str, np.ndarray] = {}

    def sentence_vectors(self, paper: Paper) -> np.ndarray:
        vectors = self._cache.get(paper.id)
        if vectors is None:
            sentences = [paper.title, *split_prose(paper.abstract, next_start="[A-Z0-9(]")]
            vectors = self.embedder.embed(sentences)
            self._cache[paper.id] = vectors
        return vectors

    def rerank(self, query: str, sources: list[Source]) -> list[Source]:
        if not sources:
            return sources
        query_vector = self.embedder.embed_one(query)
        best = [float((self.sentence_vectors(source.paper) @ query_vector).max()) for source in sources]
        by_maxsim = [source.paper_id for _, source in sorted(zip(best, sources, strict=True), key=lambda x: -x[0])]
        fused = reciprocal_rank_fusion(
            {"retrieval": [source.paper_id for source in sources], "maxsim": by_maxsim},
            {"retrieval": 1.0, "maxsim": self.settings.retrieval.rerank_weight},
            self.settings.retrieval.rrf_k,
        )
        rescored = [source.model_copy(update={"score": fused[source.paper_id]}) for source in sources]
        return sorted(rescored, key=lambda source: -source.score)


# --- the retriever ------------------------------------------------------------------------------------------
@dataclass
class _Corpus:
    """What the retriever keeps between questions: the BM25 index (memory-mapped) and the paper catalog (sqlite),
    both persisted beside the collection; reloaded when the chunk count changes."""

    count: int
    bm25: BM25Index
    catalog: Catalog


@dataclass
class _Candidates:
    """Per-query working set: rankings of papers, best chunk per paper, best cosine / BM25 per paper."""

    rankings: dict[str, list[str]] = field(default_factory=dict)
    paper_scores: dict[str, dict[str, float]] = field(default_factory=dict)  # retriever -> paper -> best score
    chunk_score: dict[str, float] = field(default_factory=dict)
    dense_score: dict[str, float] = field(default_factory=dict)
    best_chunk: dict[str, str] = field(default_factory=dict)
    named: set[str] = field(default_factory=set)
    texts: dict[str, str] = field(default_factory=dict)  # chunk id -> text, for the chunks Chroma returned

    def pick_best_chunks(self) -> None:
        """The passage of each paper: its chunk with the highest fused chunk score."""
        for chunk_id in sorted(self.chunk_score, key=self.chunk_score.__getitem__, reverse=True):
            self.best_chunk.setdefault(paper_of_chunk(chunk_id), chunk_id)


def paper_of_chunk(chunk_id: str) -> str:
    """The paper id of a chunk id ('<paper_id>#<index>')."""
    return chunk_id.rsplit("#", 1)[0]


def catalog_keys(paper: Paper) -> Iterator[tuple[str, str, str, int]]:
    """The look-up rows of one paper: (kind, key, paper id, position).

    mention: its normalised author, moderator, session and room names (`MetadataMentions`); name: its names as
    BM25 terms (`name_terms`; rare ones point at their papers); coined: the one-word names its abstract coins
    strictly (`coined_name_owners`), in the order the abstract coins them.
    """
    for name in sorted({*paper.authors, paper.moderator or "", paper.session or "", paper.room or ""}):
        key = as_words(name, fold_accents=False)
        if len(key) > 6:
            yield ("mention", key, paper.id, 0)
    for term in sorted(name_terms(paper)):
        yield ("name", term, paper.id, 0)
    coined = [name for name in coined_names(paper.abstract, strict=True) if " " not in name and is_name_like(name)]
    for position, name in enumerate(dict.fromkeys(coined)):
        yield ("coined", name, paper.id, position)


def word_ngrams(text: str, longest: int) -> list[str]:
    """Every run of 1..`longest` consecutive words of `text`, normalised as `MetadataMentions` keys are, so a key
    is in the list exactly when `MetadataMentions.find` would see it in `text`."""
    words = as_words(text, fold_accents=False).split()
    return [
        " " + " ".join(words[start : start + size]) + " "
        for size in range(1, min(longest, len(words)) + 1)
        for start in range(len(words) - size + 1)
    ]


def whole_word_spans(query: str) -> set[str]:
    """Every substring of `query` bounded on both sides by a character that is not a word character or '-': the
    strings `owned_papers` could match as a whole word (candidates for the coined-name look-up)."""
    spans: set[str] = set()
    for token in query.split():
        starts = [i for i in range(len(token)) if i == 0 or not re.match(r"[\w-]", token[i - 1])]
        ends = [j for j in range(1, len(token) + 1) if j == len(token) or not re.match(r"[\w-]", token[j])]
        spans.update(token[i:j] for i in starts for j in ends if j > i)
    return spans


class Retriever:
    """Finds the papers for a question. Safe to share between threads (loading the derived files is locked)."""

    def __init__(self, index, embedder, settings: Settings, reranker: Reranker | None = None):
        self.index = index
        self.embedder = embedder
        self.settings = settings
        self.reranker = reranker or (SentenceMaxSimReranker(embedder, settings) if settings.retrieval.rerank else None)
        self._corpus: _Corpus | None = None
        self._lock = threading.Lock()
        self._passage_vectors: dict[str, np.ndarray] = {}

    # --- corpus state ---------------------------------------------------------------------------------------
    def corpus(self) -> _Corpus:
        """The BM25 index and catalog, loaded on first use and again whenever the index has grown."""
        count = self.index.count()
        with self._lock:
            if self._corpus is None or self._corpus.count != count:
                bm25, catalog = self._derived(count)
                self._corpus = _Corpus(count, bm25, catalog)
            return self._corpus

    def _derived(self, count: int) -> tuple[BM25Index, Catalog]:
        """BM25 and catalog: opened from the index's derived folder when they were saved for this revision of the
        collection and these settings (BM25 memory-mapped), else built from one pass over the store and saved."""
        folder = getattr(self.index, "derived_dir", None)
        stamp = self._stamp(count)
        if folder is not None and read_stamp(folder) == stamp:
            try:
                return BM25Index.load(folder / "bm25", mmap=True), Catalog.open(folder / "catalog.sqlite")
            except (OSError, ValueError, KeyError, sqlite3.Error) as error:  # damaged files are rebuilt
                log.warning("rebuilding the derived retrieval files: %s", error)
        records, keys, extra, definitions = [], [], {}, []
        for paper in self._every_paper():
            records.append(paper.model_copy(update={"abstract": ""}))
            keys.extend(catalog_keys(paper))
            extra[paper.id] = metadata_text(paper)
            definitions.append(acronym_definitions(paper.abstract))
        long_forms = agreed_long_forms(definitions)
        retrieval = self.settings.retrieval
        bm25 = BM25Index(
            self._every_chunk(), extra, k1=retrieval.bm25_k1, b=retrieval.bm25_b, stemming=retrieval.bm25_stemming
        )
        if folder is None:
            return bm25, Catalog.build(records, keys, long_forms=long_forms)
        try:
            write_stamp(folder, None)  # the old stamp goes first: a crash mid-way leaves files that are rebuilt
            bm25.save(folder / "bm25")
            catalog = Catalog.build(records, keys, folder / "catalog.sqlite", long_forms)
            write_stamp(folder, stamp)
            return bm25, catalog
        except OSError as error:  # a read-only data folder still answers, rebuilding per process
            log.warning("could not save the derived retrieval files in %s: %s", folder, error)
            return bm25, Catalog.build(records, keys, long_forms=long_forms)

    def _every_paper(self) -> Iterable[Paper]:
        stream = getattr(self.index, "stream_papers", None)
        return stream() if callable(stream) else self.index.papers().values()

    def _every_chunk(self) -> list[Chunk]:
        stream = getattr(self.index, "stream_chunks", None)
        return list(stream()) if callable(stream) else self.index.chunks()

    def _stamp(self, count: int) -> dict:
        """What derived files must have been built from: this revision and size of the collection, these
        settings."""
        revision = getattr(self.index, "revision", None)
        retrieval = self.settings.retrieval
        return {
            "format": DERIVED_FORMAT,
            "revision": revision() if callable(revision) else None,
            "chunks": count,
            "bm25": [retrieval.bm25_k1, retrieval.bm25_b, retrieval.bm25_stemming],
        }

    def papers(self) -> dict[str, Paper]:
        """Every paper of the collection, read from the store (for callers that list them all; search does not)."""
        return self.index.papers()

    # --- search ---------------------------------------------------------------------------------------------
    def search(self, query: str, k: int | None = None, filters: Filters | None = None) -> list[Source]:
        """The k most relevant papers, best first, numbered 1..k, each paper once."""
        k = k or self.settings.retrieval.top_k
        query = without_instructions(query)
        corpus = self.corpus()
        allowed = None
        if filters is not None and not filters.is_empty():
            allowed = {paper.id for paper in corpus.catalog.every_paper() if matches_filters(paper, filters)}
            if not allowed:
                return []
        found = self._candidates(query, corpus, allowed)
        fused = self._fuse(found)
        ranked = sorted(fused, key=lambda paper_id: -fused[paper_id])
        retrieval = self.settings.retrieval
        pool = max(k, retrieval.rerank_candidates) if self.reranker or retrieval.mmr_lambda else k
        sources = self._sources(ranked[:pool], fused, found)
        if self.reranker is not None:
            sources = self.reranker.rerank(query, sources)
        if self.settings.retrieval.mmr_lambda is not None:
            sources = self._mmr(sources, k)
        return [source.model_copy(update={"number": n}) for n, source in enumerate(sources[:k], start=1)]

    def is_relevant(self, sources: Sequence[Source]) -> bool:
        """Whether the collection can answer: the best dense cosine reaches `settings.retrieval.min_relevance`, or the
        query names a retrieved paper verbatim (a rare name, author, session, moderator or room).

        Metadata questions ("who moderated the session where XNet was presented") score 0.1-0.3 with
        MiniLM, below off-topic chatter, so the named-paper evidence is what keeps them answerable. With no
        dense scores (lexical mode) any BM25 match counts. Calibration: bench/results/relevance.md.
        """
        if not sources:
            return False
        if any(source.named for source in sources):
            return True
        dense = [source.dense_score for source in sources if source.dense_score is not None]
        if not dense:
            return True
        return max(dense) >= self.settings.retrieval.min_relevance

    # --- steps ----------------------------------------------------------------------------------------------
    def _fuse(self, found: _Candidates) -> dict[str, float]:
        """Paper scores: dense + lexical by z-score (or RRF) fusion, then RRF with the metadata ranking."""
        retrieval = self.settings.retrieval
        weights = {"dense": retrieval.dense_weight, "lexical": retrieval.lexical_weight}
        content_weight = sum(weights.values())
        if retrieval.fusion == "rrf":
            rankings = dict(found.rankings)
        else:
            content = zscore_fusion(found.paper_scores, weights, retrieval.zscore_floor)
            rankings = {"content": sorted(content, key=lambda paper_id: -content[paper_id])}
            rankings |= {
                name: found.rankings[name] for name in ("metadata", "schedule", "coined") if name in found.rankings
            }
            # The content ranking stands for both retrievers, so a named paper is promoted as much as before.
            weights = {"content": content_weight}
        weights["metadata"] = retrieval.metadata_weight
        weights["coined"] = retrieval.coined_name_weight
        # "Presented right after XNet": the session-mates are the answer, as strong as the content ranking.
        weights["schedule"] = content_weight
        return reciprocal_rank_fusion(rankings, weights, retrieval.rrf_k)

    def _candidates(self, query: str, corpus: _Corpus, allowed: set[str] | None) -> _Candidates:
        found = _Candidates()
        mode = self.settings.retrieval.retrieval_mode
        n = self.settings.retrieval.candidate_chunks
        vector = None
        content = self._expanded(query, corpus.catalog)  # names, authors and sessions are matched as written
        if mode in ("hybrid", "dense"):
            dense_query = question_content(content) if self.settings.retrieval.dense_without_question_frame else content
            vector = self.embedder.embed_one(dense_query)
            hits = self._dense(vector, n, allowed)
            for rank, (chunk, cosine) in enumerate(hits, start=1):
                found.dense_score[chunk.paper_id] = max(found.dense_score.get(chunk.paper_id, -1.0), cosine)
                found.chunk_score[chunk.id] = found.chunk_score.get(chunk.id, 0.0) + self._rrf(rank, "dense")
                found.texts[chunk.id] = chunk.text
            paper_of = {chunk.id: chunk.paper_id for chunk, _ in hits}
            found.rankings["dense"] = papers_in_rank_order([chunk.id for chunk, _ in hits], paper_of)
            found.paper_scores["dense"] = dict(found.dense_score)
        if mode in ("hybrid", "lexical"):
            scores = corpus.bm25.scores(content)
            hits = corpus.bm25.top(scores, n, allowed)
            for rank, (chunk_id, _) in enumerate(hits, start=1):
                found.chunk_score[chunk_id] = found.chunk_score.get(chunk_id, 0.0) + self._rrf(rank, "lexical")
            chunk_ids = [chunk_id for chunk_id, _ in hits]
            found.rankings["lexical"] = papers_in_rank_order(chunk_ids, {cid: paper_of_chunk(cid) for cid in chunk_ids})
            found.paper_scores["lexical"] = {
                paper_id: _best(scores, corpus.bm25.rows(paper_id)) for paper_id in found.rankings["lexical"]
            }
            mentioned = self._mentioned(query, corpus.catalog)
            found.rankings["metadata"] = [pid for pid in mentioned if allowed is None or pid in allowed]
            found.named.update(mentioned)
        if mode == "hybrid":
            self._complete_scores(found, corpus, scores, vector)
        titled = self._titled(query, corpus.catalog)
        found.named.update(titled)
        owned = [pid for pid in self._owned(query, corpus.catalog) if allowed is None or pid in allowed]
        found.named.update(owned)
        if owned and mode != "dense":  # an exact-name signal, like BM25: dense-only stays MiniLM alone
            found.rankings["coined"] = owned
        neighbours = self._neighbours(query, titled, corpus.catalog)
        if neighbours and mode != "dense":
            found.rankings["schedule"] = [pid for pid in [*titled, *neighbours] if allowed is None or pid in allowed]
        found.pick_best_chunks()
        return found

    def _expanded(self, query: str, catalog: Catalog) -> str:
        """The query with its acronyms' long forms (`expand_acronyms`), as the collection defines them."""
        if not self.settings.retrieval.expand_acronyms:
            return query
        return expand_acronyms(query, catalog.long_forms(acronyms_in(query)))

    # --- catalog look-ups: what `MetadataMentions`, `rare_names` and `owned_papers` do, over the stored rows ---
    @staticmethod
    def _mentioned(query: str, catalog: Catalog) -> list[str]:
        """Papers whose full author name, moderator, session or room the query contains as whole words; those
        that match more of the named people and sessions first ("by A and B in session S": the paper of all
        three before the session's other talks), then by id."""
        rows = catalog.lookup("mention", word_ngrams(query, catalog.longest("mention")))
        matches: dict[str, set[str]] = {}
        for key, paper_id, _ in rows:
            matches.setdefault(paper_id, set()).add(key)
        return sorted(matches, key=lambda paper_id: (-len(matches[paper_id]), paper_id))

    def _titled(self, query: str, catalog: Catalog) -> list[str]:
        """Papers a rare name the query writes points at (a name of at most `rare_title_word_papers` papers)."""
        papers_with: dict[str, set[str]] = {}
        for term, paper_id, _ in catalog.lookup("name", set(tokenize(query))):
            papers_with.setdefault(term, set()).add(paper_id)
        limit = self.settings.retrieval.rare_title_word_papers
        return sorted({pid for ids in papers_with.values() if len(ids) <= limit for pid in ids})

    @staticmethod
    def _owned(query: str, catalog: Catalog) -> list[str]:
        """The papers that alone coin a name the query writes as a whole word, as `owned_papers` orders them."""
        coiners: dict[str, list[str]] = {}
        for name, paper_id, _ in catalog.lookup("coined", whole_word_spans(query)):
            coiners.setdefault(name, []).append(paper_id)
        owners = {name: ids[0] for name, ids in coiners.items() if len(set(ids)) == 1}
        return owned_papers(query, owners)

    @staticmethod
    def _neighbours(query: str, titled: list[str], catalog: Catalog) -> list[str]:
        """`schedule_neighbours` over the anchors and their session-mates only, read from the catalog."""
        if not titled or not _SCHEDULE_QUESTION.search(query):
            return []
        anchors = catalog.papers(titled)
        nearby = dict(anchors)
        for anchor in anchors.values():
            if anchor.session:
                nearby.update(catalog.session_mates(anchor))
        return schedule_neighbours(query, titled, nearby)

    def _complete_scores(self, found: _Candidates, corpus: _Corpus, bm25_scores: np.ndarray, vector) -> None:
        """Give every candidate both scores: a dense candidate its best chunk's BM25 score (from the full BM25
        array), a lexical-only candidate its best chunk's exact cosine (its stored vectors, fetched by id)."""
        dense, lexical = found.paper_scores["dense"], found.paper_scores["lexical"]
        for paper_id in found.rankings["dense"]:
            rows = corpus.bm25.rows(paper_id)
            if paper_id not in lexical and rows:
                lexical[paper_id] = _best(bm25_scores, rows)
        missing = [pid for pid in found.rankings["lexical"] if pid not in dense]
        if vector is None or not missing:
            return
        chunk_ids = {pid: [corpus.bm25.chunk_id(row) for row in corpus.bm25.rows(pid)] for pid in missing}
        stored = self.index.vectors(chunk_id for ids in chunk_ids.values() for chunk_id in ids)
        for paper_id, ids in chunk_ids.items():
            cosines = [float(np.dot(stored[chunk_id], vector)) for chunk_id in ids if chunk_id in stored]
            if cosines:
                dense[paper_id] = found.dense_score[paper_id] = max(cosines)

    def _rrf(self, rank: int, retriever: str) -> float:
        retrieval = self.settings.retrieval
        weight = retrieval.dense_weight if retriever == "dense" else retrieval.lexical_weight
        return weight / (retrieval.rrf_k + rank)

    def _dense(self, vector: np.ndarray, n: int, allowed: set[str] | None) -> list[tuple[Chunk, float]]:
        """Nearest chunks by cosine from Chroma's HNSW index (each hit's cosine is exact, the set approximate:
        bench/scale.py measures its recall against exact search); with a filter, only the allowed papers'."""
        if allowed is None:
            return self.index.query(vector, n)
        return self.index.query(vector, n, where={"paper_id": {"$in": sorted(allowed)}})

    def _sources(self, paper_ids: list[str], fused: Mapping[str, float], found: _Candidates) -> list[Source]:
        """`Source`s of `paper_ids`, their records and best passages read from the store for these papers only."""
        papers = self._papers_by_id(paper_ids)
        wanted = [found.best_chunk.get(pid, f"{pid}#0") for pid in paper_ids]
        texts = {**found.texts, **self._chunk_texts([cid for cid in wanted if cid not in found.texts])}
        sources = []
        for paper_id, chunk_id in zip(paper_ids, wanted, strict=True):
            paper = papers.get(paper_id)
            if paper is None:  # removed by another client since the derived files were built
                continue
            sources.append(
                Source(
                    number=1,
                    paper=paper,
                    score=fused[paper_id],
                    dense_score=found.dense_score.get(paper_id),
                    passage=texts.get(chunk_id) or paper.abstract,
                    named=paper_id in found.named,
                )
            )
        return sources

    def _papers_by_id(self, paper_ids: list[str]) -> dict[str, Paper]:
        reader = getattr(self.index, "papers_by_id", None)
        if callable(reader):
            return reader(paper_ids)
        every = self.index.papers()
        return {pid: every[pid] for pid in paper_ids if pid in every}

    def _chunk_texts(self, chunk_ids: list[str]) -> dict[str, str]:
        if not chunk_ids:
            return {}
        reader = getattr(self.index, "chunk_texts", None)
        if callable(reader):
            return reader(chunk_ids)
        wanted = set(chunk_ids)
        return {chunk.id: chunk.text for chunk in self.index.chunks() if chunk.id in wanted}

    def _mmr(self, sources: list[Source], k: int) -> list[Source]:
        missing = [s.passage for s in sources if s.passage not in self._passage_vectors]
        if missing:
            self._passage_vectors.update(zip(missing, self.embedder.embed(missing), strict=True))
        vectors = np.stack([self._passage_vectors[s.passage] for s in sources])
        order = mmr_order([s.score for s in sources], vectors, self.settings.retrieval.mmr_lambda, k)
        return [sources[i] for i in order]
