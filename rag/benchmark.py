"""Retrieval benchmark on a separate collection: the public way for eval and bench to rank a test corpus.

`benchmark_retrieval` indexes a BEIR-style corpus into its own data folder and collection (never the user's)
and ranks every query in each retrieval mode, so the modes are compared on the same index, the same queries and
the same machine load. It returns rankings and timings only: what counts as relevant, and how rankings are
scored, belongs to the caller (eval/retrieval.py computes recall, MRR and nDCG from them).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import get_args

from pydantic import BaseModel, Field

from rag.errors import ConfigError
from rag.settings import RetrievalSettings, Settings
from rag.types import Paper

RETRIEVAL_MODES: tuple[str, ...] = get_args(RetrievalSettings.model_fields["retrieval_mode"].annotation)
"""The modes a benchmark can rank with: the values `Settings.retrieval.retrieval_mode` accepts."""


class ModeRun(BaseModel):
    """One retrieval mode over every query: rankings and per-query search time."""

    rankings: list[list[str]] = Field(description="Paper ids per query, best first (query i -> rankings[i]).")
    seconds: list[float] = Field(description="Time of each query's search, its embedding included, as a user sees it.")


class RetrievalBenchmark(BaseModel):
    """What `benchmark_retrieval` measured: the index it built and each mode's rankings."""

    corpus_papers: int = Field(description="Papers handed in (before duplicates are merged).")
    chunks: int = Field(description="Chunks in the benchmark collection after ingest.")
    index_seconds: float = Field(description="Time to chunk, embed and write the corpus.")
    indexed_ids: list[str] = Field(description="Paper ids in the index (a merged duplicate keeps one id).")
    modes: dict[str, ModeRun] = Field(default_factory=dict)


def benchmark_settings(settings: Settings, name: str = "bench") -> Settings:
    """`settings` with the index in its own data folder and collection, so a benchmark never touches yours.

    Source sentence vectors are not filled at ingest: rankings never use them (answers, if asked later over the
    same collection, embed the sentences they show lazily)."""
    return settings.with_changes(data_dir=settings.data_dir / name, collection=name, sentence_vectors_at_ingest=False)


def benchmark_retrieval(
    corpus: Sequence[Paper],
    queries: Sequence[str],
    settings: Settings,
    modes: Sequence[str] = ("dense", "lexical", "hybrid"),
    k: int = 10,
    progress: Callable[[str], None] | None = None,
) -> RetrievalBenchmark:
    """Index `corpus` into the collection of `benchmark_settings(settings)`, then rank `queries` in each mode.

    Ingest is incremental, so a rerun over the same corpus reuses the index. The query-embedding cache is off:
    each mode embeds its own queries, or later modes would look faster than they are. Each mode is warmed with
    one search first (it builds BM25 and loads the model), which is not timed.
    """
    unknown = [mode for mode in modes if mode not in RETRIEVAL_MODES]
    if unknown:
        raise ConfigError(f"Unknown retrieval mode {unknown[0]!r}: use one of {', '.join(RETRIEVAL_MODES)}.")
    from rag.embeddings import Embedder
    from rag.index import open_index
    from rag.retrieve import Retriever

    say = progress or (lambda message: None)
    isolated = benchmark_settings(settings)
    embedder = Embedder(isolated.index.embedding_model, isolated.index.embed_batch_size, cache_size=0)
    index = open_index(isolated, embedder)
    started = time.perf_counter()
    index.ingest(list(corpus))
    index_seconds = time.perf_counter() - started
    say(f"indexed {len(corpus)} papers ({index.count()} chunks) in {index_seconds:.1f}s")
    result = RetrievalBenchmark(
        corpus_papers=len(corpus),
        chunks=index.count(),
        index_seconds=round(index_seconds, 1),
        indexed_ids=sorted(index.papers()),
    )
    for mode in modes:
        retriever = Retriever(index, embedder, isolated.with_changes(retrieval_mode=mode))
        result.modes[mode] = _rank_all(retriever, queries, k)
        say(f"{mode}: ranked {len(queries)} queries")
    return result


def _rank_all(retriever, queries: Sequence[str], k: int) -> ModeRun:
    """Every query through `retriever.search`, timed one by one after an untimed warm-up search."""
    if queries:
        retriever.search(queries[0], k=k)
    rankings, seconds = [], []
    for query in queries:
        tic = time.perf_counter()
        sources = retriever.search(query, k=k)
        seconds.append(time.perf_counter() - tic)
        rankings.append([source.paper_id for source in sources])
    return ModeRun(rankings=rankings, seconds=seconds)
