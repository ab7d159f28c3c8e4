"""Retrieval quality: binary-relevance metrics, the SciTLDR/BEIR runner, scoring of the project's questions.

The metrics are pure functions over a ranked list of paper ids and a set of gold ids, so they are checked on
hand-computed examples and reused by the eval harness. `run_beir` indexes a BEIR-style corpus into its own
collection (never the user's) and measures every retrieval mode in one run, so the modes are compared on the
same index, the same queries and the same machine load.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path

from pydantic import BaseModel, Field

from rag import CorpusError, Paper, Settings, benchmark_retrieval, normalise_title
from rag import benchmark_settings as bench_settings  # noqa: F401 - eval.cli and bench/ use this name

CUTOFFS = (1, 5, 10)
"""Ranks at which recall is reported; nDCG and MRR are taken at the largest."""


# --- metrics ------------------------------------------------------------------------------------------------
def recall_at_k(ranked: Sequence[str], gold: Collection[str], k: int) -> float:
    """Share of the gold ids found in the first `k` results (0 when there is no gold)."""
    if not gold:
        return 0.0
    return len(set(ranked[:k]) & set(gold)) / len(set(gold))


def mrr(ranked: Sequence[str], gold: Collection[str], k: int | None = None) -> float:
    """Reciprocal rank of the first gold id within the first `k` results (all when k is None), else 0."""
    for rank, item in enumerate(ranked[:k] if k else ranked, start=1):
        if item in gold:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(ranked: Sequence[str], gold: Collection[str], k: int) -> float:
    """Binary-relevance nDCG@k: each gold id found at rank r earns 1/log2(r+1), normalised by the ideal."""
    gold = set(gold)
    if not gold:
        return 0.0
    dcg = sum(1.0 / math.log2(rank + 1) for rank, item in enumerate(ranked[:k], start=1) if item in gold)
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(gold), k) + 1))
    return dcg / ideal


def score_rankings(rankings: Sequence[Sequence[str]], golds: Sequence[Collection[str]]) -> dict[str, float]:
    """Mean recall@1/5/10, MRR@10 and nDCG@10 over queries (ranking i is judged against gold i)."""
    if len(rankings) != len(golds):
        raise ValueError(f"{len(rankings)} rankings but {len(golds)} gold sets")
    top = max(CUTOFFS)
    scores: dict[str, list[float]] = {f"recall@{k}": [] for k in CUTOFFS} | {"mrr@10": [], "ndcg@10": []}
    for ranked, gold in zip(rankings, golds, strict=True):
        for k in CUTOFFS:
            scores[f"recall@{k}"].append(recall_at_k(ranked, gold, k))
        scores["mrr@10"].append(mrr(ranked, gold, top))
        scores["ndcg@10"].append(ndcg_at_k(ranked, gold, top))
    return {name: round(statistics.fmean(values), 4) if values else 0.0 for name, values in scores.items()}


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """p50 and p95 in milliseconds."""
    if not seconds:
        return {"p50_ms": 0.0, "p95_ms": 0.0}
    ordered = sorted(seconds)
    p95 = ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]
    return {"p50_ms": round(statistics.median(ordered) * 1000, 2), "p95_ms": round(p95 * 1000, 2)}


# --- BEIR-style data ----------------------------------------------------------------------------------------
class BeirQuery(BaseModel):
    """One query of a BEIR-style queries.jsonl with the ids of its relevant corpus entries."""

    id: str
    query: str
    gold_ids: list[str]
    split: str = ""
    tldr_index: int = 0


def _read_jsonl(path: Path) -> Iterable[tuple[int, dict]]:
    if not path.is_file():
        raise CorpusError(str(path), "file not found")
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    yield number, json.loads(line)
                except json.JSONDecodeError as error:
                    raise CorpusError(str(path), f"invalid JSON ({error.msg})", line=number) from error


def load_beir(
    corpus_path: str | Path,
    queries_path: str | Path,
    splits: Collection[str] | None = ("dev", "test"),
    min_tldr_index: int = 1,
) -> tuple[list[Paper], list[BeirQuery]]:
    """Corpus entries as `Paper`s (ids kept) and the queries of `splits` with tldr_index >= `min_tldr_index`.

    The defaults select the SciTLDR peer-review TLDRs of dev+test (2,183 queries), the hard, meaningful ones;
    `splits=None` keeps every split.
    """
    corpus_path, queries_path = Path(corpus_path), Path(queries_path)
    papers = []
    for number, row in _read_jsonl(corpus_path):
        try:
            papers.append(
                Paper(
                    id=str(row["id"]),
                    title=row.get("title") or "",
                    abstract=row["text"],
                    sources=[corpus_path.name],
                )
            )
        except (KeyError, TypeError, ValueError) as error:
            raise CorpusError(str(corpus_path), f"bad corpus row ({error})", line=number) from error
    queries = []
    for number, row in _read_jsonl(queries_path):
        try:
            query = BeirQuery.model_validate(row)
        except ValueError as error:
            raise CorpusError(str(queries_path), f"bad query row ({error})", line=number) from error
        if (splits is None or query.split in splits) and query.tldr_index >= min_tldr_index:
            queries.append(query)
    return papers, queries


def run_beir(
    corpus: Sequence[Paper],
    queries: Sequence[BeirQuery],
    settings: Settings,
    modes: Sequence[str] = ("dense", "lexical", "hybrid"),
    k: int = 10,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Index `corpus` into a separate collection, run every mode over `queries`, return metrics per mode.

    The rankings come from `rag.benchmark_retrieval` (the collection of `bench_settings(settings)`). The result
    has, per mode, metrics over all queries and per split, plus latency p50/p95 of each search (query embedding
    included, as a user sees it). Only gold ids present in the index are counted, so corpus entries merged as
    duplicates do not make a query unanswerable.
    """
    say = progress or (lambda message: None)
    run = benchmark_retrieval(corpus, [query.query for query in queries], settings, modes=modes, k=k, progress=say)
    indexed = set(run.indexed_ids)
    golds = [set(query.gold_ids) & indexed for query in queries]
    result: dict = {
        "corpus_papers": run.corpus_papers,
        "chunks": run.chunks,
        "queries": len(queries),
        "index_seconds": run.index_seconds,
        "modes": {},
    }
    for mode, ranked in run.modes.items():
        result["modes"][mode] = _split_metrics(ranked.rankings, golds, queries) | latency_summary(ranked.seconds)
        say(f"{mode}: {result['modes'][mode]['all']}")
    return result


def _split_metrics(rankings, golds, queries: Sequence[BeirQuery]) -> dict:
    metrics = {"all": score_rankings(rankings, golds)}
    for split in sorted({query.split for query in queries}):
        picked = [i for i, query in enumerate(queries) if query.split == split]
        metrics[split] = score_rankings([rankings[i] for i in picked], [golds[i] for i in picked])
    return metrics


# --- the project's own question set -------------------------------------------------------------------------
class QuestionScore(BaseModel):
    """Retrieval on the project's question set: metrics per question type and off-topic detection."""

    by_type: dict[str, dict[str, float]] = Field(default_factory=dict)
    overall: dict[str, float] = Field(default_factory=dict)
    unmatched_titles: list[str] = Field(default_factory=list, description="Gold titles not found in the corpus.")
    relevance_accuracy: float | None = Field(
        default=None, description="Share of questions where is_relevant agrees with having gold papers."
    )


def score_questions(questions_path: str | Path, retriever, k: int = 10) -> QuestionScore:
    """Score `retriever` on eval/questions.jsonl lines ({"id","type","question","gold_titles":[...]}).

    Gold titles are matched to paper ids by normalised title. Questions without gold titles are the ones the
    corpus cannot answer: they only count towards `relevance_accuracy` (is_relevant should say False).
    """
    questions = [row for _, row in _read_jsonl(Path(questions_path))]
    by_title = {normalise_title(paper.title): paper.id for paper in retriever.papers().values()}
    rankings: dict[str, list[list[str]]] = {}
    golds: dict[str, list[set[str]]] = {}
    unmatched: list[str] = []
    agree = []
    for row in questions:
        sources = retriever.search(row["question"], k=k)
        titles = row.get("gold_titles") or []
        agree.append(retriever.is_relevant(sources) == bool(titles))
        if not titles:
            continue
        gold = {by_title[key] for key in map(normalise_title, titles) if key in by_title}
        unmatched += [title for title in titles if normalise_title(title) not in by_title]
        kind = row.get("type", "unknown")
        rankings.setdefault(kind, []).append([source.paper_id for source in sources])
        golds.setdefault(kind, []).append(gold)
    all_rankings = [ranking for kind in rankings for ranking in rankings[kind]]
    all_golds = [gold for kind in golds for gold in golds[kind]]
    return QuestionScore(
        by_type={kind: score_rankings(rankings[kind], golds[kind]) for kind in rankings},
        overall=score_rankings(all_rankings, all_golds),
        unmatched_titles=unmatched,
        relevance_accuracy=round(sum(agree) / len(agree), 4) if agree else None,
    )
