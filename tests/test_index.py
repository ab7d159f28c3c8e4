"""Chunking, the embedder and the Chroma index: incremental ingest, rebuilds, persistence, errors, processes.

Everything runs on the tiny random model from conftest.py; a few tests start real subprocesses (a Chroma
server, an ingest killed with SIGKILL, a second process holding the embedded store).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from rag.embeddings import Embedder, SentenceVectors, get_embedder
from rag.errors import ConfigError, IndexError_
from rag.index import (
    SENTENCE_VECTORS_FILE,
    chunk_paper,
    content_hash,
    evidence_sentences,
    list_collections,
    open_index,
)
from rag.settings import IndexSettings, Settings, check_collection_name
from rag.text import sentences_within
from rag.types import IngestProgress, Paper

REPO_ROOT = Path(__file__).resolve().parents[1]


class CountingEmbedder:
    """Wraps an embedder and counts what it is asked to embed."""

    def __init__(self, inner):
        self.inner = inner
        self.calls = 0
        self.texts = 0

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def embed(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        self.texts += len(texts)
        return self.inner.embed(texts)


class HashEmbedder:
    """A model-free embedder (hash-seeded random unit vectors) for subprocesses that must start fast."""

    name = "hash-embedder"
    dimension = 16

    def embed(self, texts: list[str]) -> np.ndarray:
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            row = np.random.default_rng(seed).normal(size=self.dimension)
            rows.append(row / np.linalg.norm(row))
        return np.asarray(rows, dtype=np.float32).reshape(len(texts), self.dimension)


@pytest.fixture
def embedder(settings) -> CountingEmbedder:
    return CountingEmbedder(get_embedder(settings))


@pytest.fixture
def index(settings, embedder):
    opened = open_index(settings, embedder)
    yield opened
    opened.close()


def long_paper(paper_id: str = "long", sentences: int = 20, tag: str = "") -> Paper:
    body = " ".join(
        f"Sentence {number}{tag} explains a separate aspect of contrastive pretraining for retrieval models."
        for number in range(sentences)
    )
    return Paper(id=paper_id, title=f"A Long Paper {paper_id}", abstract=body, authors=["Ada Lovelace", "Alan Turing"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_child(script: str, *args: str, **popen) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{REPO_ROOT / 'tests'}"}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *args], env=env, text=True, **popen)


def wait_for_line(process: subprocess.Popen, prefix: str, timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith(prefix):
            return line
        if not line and process.poll() is not None:
            break
    process.kill()
    raise AssertionError(f"child never printed {prefix!r} (exit {process.poll()}): {process.stderr.read()[-2000:]}")


# --- chunking --------------------------------------------------------------------------------------------


def test_short_abstract_is_one_chunk_that_starts_with_title_and_authors(papers, settings):
    chunks = chunk_paper(papers[0], settings)
    assert [chunk.id for chunk in chunks] == ["snr-metric#0"]
    header, body = chunks[0].text.split("\n", 1)
    assert header == (
        "Signal-to-Noise Ratio: A Robust Distance Metric for Deep Metric Learning. "
        "Authors: Tongtong Yuan, Weihong Deng."
    )
    assert body == papers[0].abstract


def test_paper_without_authors_or_abstract_still_gets_a_titled_chunk(settings):
    chunks = chunk_paper(Paper(id="bare", title="Why Bother?", abstract=""), settings)
    assert [chunk.text for chunk in chunks] == ["Why Bother?"]


def test_long_abstract_splits_into_overlapping_chunks_that_each_stand_alone(settings):
    paper = long_paper()
    chunks = chunk_paper(paper, settings)
    assert len(chunks) > 1
    assert [chunk.id for chunk in chunks] == [f"long#{i}" for i in range(len(chunks))]
    sentences = sentences_within(paper.abstract, settings.index.chunk_chars)
    covered = []
    for chunk in chunks:
        header, body = chunk.text.split("\n", 1)
        assert header == "A Long Paper long. Authors: Ada Lovelace, Alan Turing."
        assert len(body) <= settings.index.chunk_chars + 120  # about chunk_chars: never more than one sentence over
        covered.append(body)
    assert all(sentence in " ".join(covered) for sentence in sentences)  # nothing lost
    for before, after in itertools.pairwise(chunks):  # one sentence of overlap
        last_sentence = sentences_within(before.text.split("\n", 1)[1], settings.index.chunk_chars)[-1]
        assert after.text.split("\n", 1)[1].startswith(last_sentence)


def test_no_overlap_means_every_sentence_appears_once(settings):
    settings = settings.with_changes(chunk_overlap_sentences=0)
    paper = long_paper()
    bodies = [chunk.text.split("\n", 1)[1] for chunk in chunk_paper(paper, settings)]
    assert " ".join(bodies) == paper.abstract


@pytest.mark.timeout(120)
def test_ten_megabyte_abstract_without_full_stops_chunks_in_bounded_pieces(settings):
    huge = Paper(id="huge", title="Huge", abstract="word " * 2_000_000)  # 10 MB, no sentence ends at all
    chunks = chunk_paper(huge, settings)
    assert len(chunks) > 10_000
    assert max(len(chunk.text) for chunk in chunks) <= settings.index.chunk_chars + len("Huge.\n")


def test_content_hash_follows_paper_and_chunk_settings(papers, settings):
    paper = papers[0]
    assert content_hash(paper, settings) == content_hash(paper.model_copy(), settings)
    assert content_hash(paper, settings) != content_hash(paper.model_copy(update={"year": 2021}), settings)
    assert content_hash(paper, settings) != content_hash(paper, settings.with_changes(chunk_chars=300))


# --- embedder --------------------------------------------------------------------------------------------


def test_embedder_returns_unit_float32_rows_and_caches_queries(settings, tiny_model_dir):
    embedder = get_embedder(settings)
    assert get_embedder(settings) is embedder  # one instance (and one model load) per process
    vectors = embedder.embed(["metric learning", "object detection", "gradient noise"])
    assert vectors.dtype == np.float32 and vectors.shape == (3, embedder.dimension) == (3, 32)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.embed([]).shape == (0, 32)
    assert embedder.name == str(Path(tiny_model_dir).resolve())

    fresh = Embedder(str(tiny_model_dir), cache_size=2)
    calls = []
    original = fresh.embed
    fresh.embed = lambda texts: calls.append(texts) or original(texts)
    first = fresh.embed_one("what is ViLT?")
    first[:] = 0  # callers may scribble on the result without poisoning the cache
    again = fresh.embed_one("what is ViLT?")
    assert len(calls) == 1 and np.allclose(again, embedder.embed(["what is ViLT?"])[0], atol=1e-6)
    fresh.embed_one("b")
    fresh.embed_one("c")  # evicts the oldest entry
    fresh.embed_one("what is ViLT?")
    assert len(calls) == 4


# --- ingest ----------------------------------------------------------------------------------------------


def test_ingest_then_reingest_adds_and_embeds_nothing(index, embedder, papers):
    report = index.ingest(papers)
    assert (report.papers, report.chunks_added, report.papers_skipped, report.papers_replaced) == (5, 5, 0, 0)
    assert index.count() == 5 and index.paper_count() == 5
    embedded = embedder.texts

    again = index.ingest(papers)
    assert (again.chunks_added, again.papers_skipped, again.papers_replaced) == (0, 5, 0)
    assert embedder.texts == embedded  # nothing re-embedded
    assert index.count() == 5


def test_stored_papers_round_trip_without_corpus_files(index, papers):
    dated = [paper.model_copy(update={"year": 2021, "room": "Hall A"}) for paper in papers[:2]] + papers[2:]
    index.ingest(dated)
    assert index.papers() == {paper.id: paper for paper in dated}


def test_query_finds_the_chunk_by_its_own_vector_with_cosine_similarity(index, embedder, papers):
    index.ingest(papers)
    vilt = next(chunk for chunk in index.chunks() if chunk.paper_id == "vilt")
    hits = index.query(embedder.embed([vilt.text])[0], n=3)
    assert len(hits) == 3
    assert hits[0][0] == vilt and hits[0][1] == pytest.approx(1.0, abs=1e-4)
    assert hits[0][1] >= hits[1][1] >= hits[2][1]
    assert index.query(embedder.embed([vilt.text])[0], n=50)[-1][0].id  # n above the count is fine
    only = index.query(embedder.embed([vilt.text])[0], n=5, where={"paper_id": "fpn"})
    assert [chunk.paper_id for chunk, _ in only] == ["fpn"]
    both = index.query(embedder.embed(["x"])[0], n=5, where={"paper_id": "vilt", "chunk": 0})
    assert [chunk.id for chunk, _ in both] == ["vilt#0"]


def test_changed_abstract_replaces_its_chunks_and_leaves_no_stale_one(index, embedder, papers, settings):
    long = long_paper("grow")
    index.ingest([*papers, long])
    long_chunks = len(chunk_paper(long, settings))
    assert index.count() == 5 + long_chunks

    shorter = long.model_copy(update={"abstract": "Now a single sentence about retrieval."})
    before = embedder.texts
    report = index.ingest([*papers, shorter])
    assert (report.papers_replaced, report.papers_skipped, report.chunks_added) == (1, 5, 1)
    assert embedder.texts == before + 1
    assert [chunk.id for chunk in index.chunks() if chunk.paper_id == "grow"] == ["grow#0"]
    assert index.count() == 6
    assert index.papers()["grow"].abstract == "Now a single sentence about retrieval."
    assert "Now a single sentence" in next(c.text for c in index.chunks() if c.id == "grow#0")


def test_ingest_keeps_papers_that_are_not_in_the_new_batch(index, papers):
    index.ingest(papers[:3])
    report = index.ingest(papers[3:])
    assert report.chunks_added == 2 and index.paper_count() == 5


def test_chunk_vectors_are_the_stored_unit_vectors_and_follow_ingest(index, embedder, papers):
    index.ingest(papers[:2])
    vectors = index.chunk_vectors()
    assert set(vectors) == {chunk.id for chunk in index.chunks()}
    for chunk in index.chunks():
        assert vectors[chunk.id].dtype == np.float32
        assert vectors[chunk.id] == pytest.approx(embedder.embed([chunk.text])[0], abs=1e-5)
    index.ingest(papers)
    assert set(index.chunk_vectors()) == {chunk.id for chunk in index.chunks()} and len(index.chunk_vectors()) == 5


def test_vectors_by_id_are_the_stored_ones_and_skip_unknown_ids(index, papers):
    index.ingest(papers[:2])
    stored = index.chunk_vectors()
    wanted = [*sorted(stored)[:2], "no-such-paper#0"]
    found = index.vectors(wanted)
    assert set(found) == set(wanted[:2])
    for chunk_id, vector in found.items():
        assert vector.dtype == np.float32 and vector == pytest.approx(stored[chunk_id])


def test_new_collection_gets_the_hnsw_settings_and_reopening_applies_ef_search(settings, embedder):
    tuned = settings.with_changes(hnsw_ef_construction=150, hnsw_max_neighbors=24, hnsw_ef_search=120)
    with open_index(tuned, embedder) as index:
        hnsw = index._collection.configuration["hnsw"]
        assert (hnsw["space"], hnsw["ef_construction"], hnsw["max_neighbors"], hnsw["ef_search"]) == (
            "cosine",
            150,
            24,
            120,
        )
    with open_index(tuned.with_changes(hnsw_ef_search=300), embedder) as index:
        assert index._collection.configuration["hnsw"]["ef_search"] == 300


def test_chunks_cache_is_refreshed_by_ingest(index, papers):
    index.ingest(papers[:2])
    assert len(index.chunks()) == 2
    index.ingest(papers)
    assert len(index.chunks()) == 5
    assert set(index.papers()) == {paper.id for paper in papers}


def test_large_ingest_respects_the_batch_limit(settings, embedder, monkeypatch):
    settings = settings.with_changes(ingest_batch_size=7)
    many = [long_paper(f"p{i}", sentences=6) for i in range(12)]
    with open_index(settings, embedder) as index:
        monkeypatch.setattr(index._client, "get_max_batch_size", lambda: 5)
        sizes = []
        upsert = index._collection.upsert
        monkeypatch.setattr(index._collection, "upsert", lambda **kw: sizes.append(len(kw["ids"])) or upsert(**kw))
        report = index.ingest(many)
        expected = sum(len(chunk_paper(paper, settings)) for paper in many)
        assert report.chunks_added == expected == index.count() == len(index.chunks())
        assert max(sizes) <= 5


def test_ingest_reports_progress_before_writing_and_after_each_step(settings, embedder, papers):
    one_paper_steps = settings.with_changes(ingest_batch_size=1)  # each short paper is one chunk
    seen: list[IngestProgress] = []
    with open_index(one_paper_steps, embedder) as index:
        index.ingest(papers[:2])
        index.ingest(papers, progress=seen.append)
        assert [(p.done, p.total, p.skipped) for p in seen] == [(0, 3, 2), (1, 3, 2), (2, 3, 2), (3, 3, 2)]
        assert seen[0].rate == 0 and seen[0].eta_s is None
        assert all(p.rate > 0 and p.eta_s is not None for p in seen[1:])
        assert seen[-1].eta_s == 0
        seen.clear()
        index.ingest(papers, progress=seen.append)  # nothing new: one report, nothing to write
        assert [(p.done, p.total, p.skipped) for p in seen] == [(0, 0, 5)]


def test_an_ingest_stopped_between_steps_is_resumed_by_the_next(settings, embedder, papers):
    one_paper_steps = settings.with_changes(ingest_batch_size=1)

    def stop_after_two(progress: IngestProgress) -> None:
        if progress.done == 2:
            raise KeyboardInterrupt  # Ctrl-C while the progress line is drawn

    with open_index(one_paper_steps, embedder) as index:
        with pytest.raises(KeyboardInterrupt):
            index.ingest(papers, progress=stop_after_two)
        assert index.paper_count() == 2
        assert list_collections(settings)[0].papers == 2  # the count written on the way out is the stored one
        seen: list[IngestProgress] = []
        report = index.ingest(papers, progress=seen.append)
        assert (report.papers_skipped, report.chunks_added) == (2, 3)
        assert seen[-1].done == seen[-1].total == 3 and index.count() == 5


def test_progress_summary_reads_as_one_short_line():
    line = IngestProgress(done=1200, total=10_000, skipped=0, seconds=25, rate=48, eta_s=183).summary()
    assert line == "indexed 1,200/10,000 papers · 48/s · ETA 3 min"
    assert IngestProgress(done=0, total=40).summary() == "indexed 0/40 papers"
    slow = IngestProgress(done=3, total=9000, skipped=12, rate=2.46, eta_s=3650).summary()
    assert slow == "indexed 3/9,000 papers · 2.5/s · ETA 1 h 1 min · 12 unchanged skipped"
    assert "ETA" not in IngestProgress(done=5, total=5, rate=9, eta_s=0).summary()


def test_collections_lists_each_collection_with_its_counts_and_model(settings, embedder, papers):
    other = settings.with_changes(collection="other.papers")
    with open_index(settings, embedder) as index, open_index(other, embedder) as second:
        index.ingest(papers)
        second.ingest([long_paper("long", sentences=20)])
        chunks = second.count()
        listed = list_collections(settings)
        assert index.count() == 5  # listing opened and closed a client of its own; these stay usable
    assert [(info.name, info.chunks, info.papers) for info in listed] == [("other.papers", chunks, 1), ("test", 5, 5)]
    assert chunks > 1 and {info.embedding_model for info in listed} == {embedder.name}
    assert list_collections(settings) == listed  # and the store's lock was released: it opens again


def test_collections_of_an_unreachable_server_is_a_one_line_index_error(settings):
    closed_port = free_port()
    remote = settings.with_changes(chroma_host="127.0.0.1", chroma_port=closed_port)
    with pytest.raises(IndexError_) as caught:
        list_collections(remote.model_copy(update={"chroma_connect_timeout_s": 1.0}))
    assert "Cannot reach the Chroma server" in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("name", ["papers", "my-library_2024", "a.b", "X9z"])
def test_chroma_collection_names_are_accepted(name):
    assert check_collection_name(name) == name
    assert Settings(collection=name).collection == name


@pytest.mark.parametrize(
    "name", ["ab", "x" * 64, "-papers", "papers.", "my papers", "a..b", "../etc", "über", "10.0.0.1", ""]
)
def test_unusable_collection_names_are_one_line_config_errors(name):
    with pytest.raises(ConfigError) as caught:
        check_collection_name(name)
    assert "not a usable collection name" in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(ValueError):  # the setting refuses it too (RAG_COLLECTION, --collection)
        Settings(collection=name)


# --- models, persistence -----------------------------------------------------------------------------------


def test_reopen_keeps_everything_and_reingest_skips(settings, embedder, papers):
    with open_index(settings, embedder) as index:
        index.ingest(papers)
    with open_index(settings, embedder) as reopened:
        assert reopened.count() == 5 and reopened.rebuilt is None
        assert reopened.ingest(papers).papers_skipped == 5


def test_switching_embedding_model_rebuilds_instead_of_mixing(settings, embedder, papers, tmp_path, tiny_model_dir):
    with open_index(settings, embedder) as index:
        index.ingest(papers)
    other_dir = tmp_path / "other-model"
    shutil.copytree(tiny_model_dir, other_dir)
    other_settings = settings.with_changes(embedding_model=str(other_dir))
    other = CountingEmbedder(Embedder(str(other_dir)))
    with open_index(other_settings, other) as rebuilt:
        assert rebuilt.count() == 0
        assert "Rebuilt the index" in rebuilt.rebuilt and str(other_dir.resolve()) in rebuilt.rebuilt
        report = rebuilt.ingest(papers)
        assert report.chunks_added == 5 and other.texts == 5
        assert any("Rebuilt the index" in note for note in report.notes)
        assert rebuilt.ingest(papers).notes == []  # reported once


# --- sentence vectors (the answer stage's source sentences, embedded once) ------------------------------------

SENTENCES = [
    "ViLT: Vision-and-Language Transformer Without Convolution or Region Supervision",
    "ViLT was written by Wonjae Kim, Bokyung Son, Ildoo Kim.",
    "We present a minimal vision-and-language model.",
    "It is up to tens of times faster than previous models.",
]


def test_sentence_vectors_are_the_embedders_vectors_and_survive_a_restart(settings, embedder, tmp_path):
    path = tmp_path / SENTENCE_VECTORS_FILE
    fresh = embedder.inner.embed(SENTENCES)
    first = SentenceVectors(embedder, path).embed(SENTENCES)
    assert first.dtype == np.float32 and np.array_equal(first, fresh)  # same model, same normalisation
    for text, vector in zip(SENTENCES, first, strict=True):  # batch-independent within float noise
        assert np.allclose(vector, embedder.inner.embed([text])[0], atol=1e-6)

    embedded = embedder.texts
    restarted = SentenceVectors(embedder, path)
    again = restarted.embed(list(reversed(SENTENCES)))
    assert embedder.texts == embedded  # read back from the file, nothing embedded
    assert np.array_equal(again, first[::-1]) and len(restarted) == 4


def test_sentence_vectors_embed_only_texts_not_seen_before(embedder, tmp_path):
    vectors = SentenceVectors(embedder, tmp_path / SENTENCE_VECTORS_FILE)
    vectors.embed(SENTENCES[:2])
    calls, embedded = embedder.calls, embedder.texts
    both = vectors.embed([SENTENCES[1], SENTENCES[2], SENTENCES[2]])
    assert (embedder.calls, embedder.texts) == (calls + 1, embedded + 1)  # one batch with the one new text
    assert np.array_equal(both[1], both[2])
    assert SentenceVectors(embedder, tmp_path / SENTENCE_VECTORS_FILE).fill(SENTENCES) == 1  # appended, not lost


def test_sentence_vectors_of_another_model_are_not_reused(embedder, tmp_path):
    class OtherModel(HashEmbedder):
        name = "another-model"

    path = tmp_path / SENTENCE_VECTORS_FILE
    SentenceVectors(HashEmbedder(), path).embed(SENTENCES)
    same_width = CountingEmbedder(OtherModel())
    assert np.array_equal(SentenceVectors(same_width, path).embed(SENTENCES), OtherModel().embed(SENTENCES))
    assert same_width.texts == 4  # a different model name invalidates the file even at the same dimension
    SentenceVectors(embedder, path).embed(SENTENCES)
    assert embedder.texts == 4 and path.read_bytes().startswith(b'{"dimension": 32,')  # rewritten for the new model
    SentenceVectors(embedder, path).embed(SENTENCES)
    assert embedder.texts == 4


@pytest.mark.parametrize("damage", ["garbage", "torn_tail", "nan_record", "not_a_file"])
def test_damaged_sentence_vector_file_never_fails_and_is_repaired(embedder, tmp_path, damage):
    path = tmp_path / SENTENCE_VECTORS_FILE
    expected = embedder.inner.embed(SENTENCES)
    SentenceVectors(embedder, path).embed(SENTENCES[:2])
    header = path.read_bytes().split(b"\n", 1)[0] + b"\n"
    record = (len(path.read_bytes()) - len(header)) // 2
    if damage == "garbage":
        path.write_bytes(random.Random(0).randbytes(5000))
    elif damage == "torn_tail":  # a process killed mid-append
        path.write_bytes(path.read_bytes() + b"\x01" * (record // 2))
    elif damage == "nan_record":
        data = bytearray(path.read_bytes())
        data[len(header) + 20 : len(header) + 24] = np.array([np.nan], dtype="<f4").tobytes()
        path.write_bytes(bytes(data))
    else:
        path.unlink()
        path.mkdir()  # unreadable and unwritable: vectors are still returned, from memory

    vectors = SentenceVectors(embedder, path)
    assert np.allclose(vectors.embed(SENTENCES), expected, atol=1e-6)
    if damage != "not_a_file":
        reread = CountingEmbedder(embedder.inner)
        assert np.allclose(SentenceVectors(reread, path).embed(SENTENCES), expected, atol=1e-6)
        assert reread.texts == 0  # the file was repaired: every record whole and valid
        assert (len(path.read_bytes()) - len(header)) == 4 * record


def test_ingest_fills_sentence_vectors_only_when_asked(settings, embedder, papers):
    assert IndexSettings.model_fields["sentence_vectors_at_ingest"].default is True  # the product fills them
    with open_index(settings, embedder) as index:
        index.ingest(papers)
        assert len(index.sentence_vectors) == 0
        assert not (settings.index_dir / SENTENCE_VECTORS_FILE).exists()
    eager = settings.with_changes(sentence_vectors_at_ingest=True)
    with open_index(eager, embedder) as index:
        index.ingest(papers)  # every paper is skipped, but its missing sentence vectors are filled
        wanted = set(evidence_sentences(papers))
        assert len(index.sentence_vectors) == len(wanted) > 3 * len(papers)
        embedded = embedder.texts
        index.ingest(papers)
        assert embedder.texts == embedded
    with open_index(settings, embedder) as reopened:
        reopened.sentence_vectors.embed(sorted(wanted))
        assert embedder.texts == embedded


# --- errors ----------------------------------------------------------------------------------------------


def test_unwritable_index_folder_is_a_one_line_index_error(settings, embedder, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the data folder should be")
    with pytest.raises(IndexError_) as caught:
        open_index(settings.with_changes(data_dir=blocker), embedder)
    assert "RAG_DATA_DIR" in str(caught.value) and "\n" not in str(caught.value)
    assert blocker.read_text() == "a file where the data folder should be"


def test_corrupt_store_is_an_index_error_and_stays_untouched(settings, embedder):
    settings.index_dir.mkdir(parents=True)
    garbage = random.Random(0).randbytes(100_000)
    (settings.index_dir / "chroma.sqlite3").write_bytes(garbage)
    with pytest.raises(IndexError_) as caught:
        open_index(settings, embedder)
    assert "rebuild" in str(caught.value) and "\n" not in str(caught.value)
    assert (settings.index_dir / "chroma.sqlite3").read_bytes() == garbage
    with pytest.raises(IndexError_):  # the failed open released its lock: same error, not "in use"
        open_index(settings, embedder)


def test_unreachable_server_is_an_index_error(settings, embedder):
    settings = settings.with_changes(chroma_host="127.0.0.1", chroma_port=free_port())
    with pytest.raises(IndexError_, match="Cannot reach the Chroma server"):
        open_index(settings, embedder)


# --- processes -------------------------------------------------------------------------------------------

KILLED_INGEST = """
    import json, sys, time
    from rag.embeddings import get_embedder
    from rag.index import open_index
    from rag.settings import Settings
    from rag.types import Paper

    settings = Settings.model_validate_json(sys.argv[1])
    papers = [Paper(**row) for row in json.loads(open(sys.argv[2]).read())]
    inner = get_embedder(settings)

    class Announcing:
        name, dimension, steps = inner.name, inner.dimension, 0

        def embed(self, texts):
            Announcing.steps += 1
            print(f"step {Announcing.steps}", flush=True)
            time.sleep(0.1)  # gives the parent time to kill it mid-ingest on a busy machine
            return inner.embed(texts)

    index = open_index(settings, Announcing())
    index.ingest(papers)
    print("finished", flush=True)
"""


def version(paper_id: str, grows: bool, second: bool) -> Paper:
    """Papers whose chunk count changes between the two versions, so stale chunks exist to be deleted."""
    long_now = grows == second
    return long_paper(paper_id, sentences=9 if long_now else 1, tag="b" if second else "a")


@pytest.mark.timeout(600)
def test_sigkill_mid_ingest_leaves_an_index_that_the_next_ingest_completes(settings, embedder, tmp_path):
    settings = settings.with_changes(ingest_batch_size=8, chunk_chars=200)
    first = [version(f"p{i:03}", grows=i % 2 == 0, second=False) for i in range(60)]
    second = [version(f"p{i:03}", grows=i % 2 == 0, second=True) for i in range(60)]
    second += [long_paper(f"new{i}", sentences=3) for i in range(20)]
    with open_index(settings, embedder) as index:
        index.ingest(first)

    papers_file = tmp_path / "second.json"
    papers_file.write_text(json.dumps([paper.model_dump(mode="json") for paper in second]))
    child = run_child(
        KILLED_INGEST,
        settings.model_dump_json(),
        str(papers_file),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    wait_for_line(child, "step 4")
    time.sleep(random.Random(os.getpid()).uniform(0, 0.15))  # land anywhere in embed, upsert or delete
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    expected = {chunk.id: chunk.text for paper in second for chunk in chunk_paper(paper, settings)}
    with open_index(settings, embedder) as index:
        stored = {chunk.id: chunk.text for chunk in index.chunks()}
        assert stored != expected  # the kill really landed mid-ingest
        report = index.ingest(second)
        assert 0 < report.papers_skipped < len(second)  # the child's finished steps are kept
        final = index.chunks()
        assert {chunk.id: chunk.text for chunk in final} == expected  # no stale, duplicate or missing chunk
        assert len(final) == index.count() == len(expected)
        assert index.papers() == {paper.id: paper for paper in second}


HOLDER = """
    import sys, time
    from pathlib import Path
    from test_index import HashEmbedder, long_paper
    from rag.index import open_index
    from rag.settings import Settings

    settings = Settings.model_validate_json(sys.argv[1])
    stop = Path(sys.argv[2])
    index = open_index(settings, HashEmbedder())
    round = 0
    while not stop.exists():
        index.ingest([long_paper(f"p{i}", sentences=4, tag=str(round)) for i in range(10)])
        print("ingesting", flush=True)
        round += 1
    index.close()
"""


@pytest.mark.timeout(300)
def test_second_process_on_an_embedded_index_fails_fast_and_points_to_server_mode(settings, tmp_path):
    stop = tmp_path / "stop"
    child = run_child(HOLDER, settings.model_dump_json(), str(stop), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for_line(child, "ingesting", timeout=120)
        started = time.monotonic()
        with pytest.raises(IndexError_) as caught:
            open_index(settings, HashEmbedder())
        message = str(caught.value)
        assert f"pid {child.pid}" in message and "RAG_CHROMA_HOST" in message and "\n" not in message
        assert time.monotonic() - started < 30  # it failed instead of waiting for the lock
    finally:
        stop.touch()
        child.wait(timeout=60)
    assert child.returncode == 0, child.stderr.read()
    with open_index(settings, HashEmbedder()) as index:  # usable once the first process is gone
        assert index.paper_count() == 10
        chunk = index.chunks()[0]
        assert index.query(HashEmbedder().embed([chunk.text])[0], n=1)[0][0] == chunk


def test_two_indexes_in_one_process_share_the_store(settings, embedder, papers):
    with open_index(settings, embedder) as writer, open_index(settings, embedder) as reader:
        writer.ingest(papers)
        assert reader.count() == 5
    with open_index(settings, embedder) as again:  # both closed: the lock was released
        assert again.count() == 5


@pytest.mark.timeout(300)
def test_chroma_server_mode_ingests_queries_and_persists(settings, embedder, papers, tmp_path):
    chroma = Path(sys.executable).parent / "chroma"
    if not chroma.exists():
        pytest.skip(f"the chroma CLI is not installed at {chroma}")
    port = free_port()
    log_file = (tmp_path / "chroma.log").open("w")
    server = subprocess.Popen(
        [str(chroma), "run", "--path", str(tmp_path / "server"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, server, tmp_path / "chroma.log")
        remote = settings.with_changes(chroma_host="127.0.0.1", chroma_port=port)
        with open_index(remote, embedder) as index:
            report = index.ingest(papers)
            assert report.chunks_added == 5 and index.count() == 5
            fpn = next(chunk for chunk in index.chunks() if chunk.paper_id == "fpn")
            hits = index.query(embedder.embed([fpn.text])[0], n=2)
            assert hits[0][0] == fpn and hits[0][1] == pytest.approx(1.0, abs=1e-4)
            assert index.papers() == {paper.id: paper for paper in papers}
        with open_index(remote, embedder) as again:  # a second client sees the same collection
            assert again.ingest(papers).papers_skipped == 5
        assert not settings.index_dir.exists()  # nothing went to the embedded store
    finally:
        server.terminate()
        server.wait(timeout=30)
        log_file.close()


def wait_for_port(port: int, server: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"chroma run exited with {server.returncode}: {log.read_text()[-2000:]}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=2).raise_for_status()
            return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise AssertionError(f"chroma run did not answer within {timeout}s: {log.read_text()[-2000:]}")


def test_settings_json_round_trip_used_by_child_processes(settings):
    assert Settings.model_validate_json(settings.model_dump_json()).index_dir == settings.index_dir
