"""Grid search of fusion / BM25 settings on the SciTLDR *dev* split; test-split figures are printed alongside.

    .venv/bin/python bench/tune_retrieval.py --beir /work/shared/benchmarks/scitldr

Needs the bench index built by bench/retrieval.py. Query vectors are computed once and Chroma answers are
memoised, so one configuration costs BM25 + fusion only (seconds). Choose on dev, report test: the defaults in
rag/settings.py were picked from this table's dev column. Writes bench/results/tuning.md.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eval.retrieval import bench_settings, load_beir, score_rankings  # noqa: E402
from rag.settings import Settings  # noqa: E402


class PrecomputedEmbedder:
    """The real embedder, but query vectors come from one batched pass over all queries."""

    def __init__(self, embedder, queries: list[str]):
        self.inner = embedder
        self.vectors = dict(zip(queries, embedder.embed(queries), strict=True))

    def embed(self, texts):
        return self.inner.embed(texts)

    def embed_one(self, text):
        return self.vectors[text] if text in self.vectors else self.inner.embed_one(text)


class MemoIndex:
    """Delegates to the index, remembering each unfiltered query's top `depth` chunks."""

    def __init__(self, index, depth: int = 200):
        self.index = index
        self.depth = depth
        self.memo: dict[bytes, list] = {}

    def __getattr__(self, name):
        return getattr(self.index, name)

    def query(self, embedding, n, where=None):
        if where is not None or n > self.depth:
            return self.index.query(embedding, n, where)
        key = embedding.tobytes()
        if key not in self.memo:
            self.memo[key] = self.index.query(embedding, self.depth)
        return self.memo[key][:n]


def evaluate(index, embedder, settings: Settings, queries, golds) -> dict[str, dict[str, float]]:
    from rag.retrieve import Retriever

    retriever = Retriever(index, embedder, settings)
    rankings = [[s.paper_id for s in retriever.search(q.query, k=10)] for q in queries]
    out = {}
    for split in ("dev", "test"):
        picked = [i for i, q in enumerate(queries) if q.split == split]
        out[split] = score_rankings([rankings[i] for i in picked], [golds[i] for i in picked])
    return out


GRID = {
    "retrieval_mode": ["hybrid"],
    "fusion": ["zscore"],
    "dense_weight": [1.0],
    "lexical_weight": [0.5, 0.6, 0.67, 0.75, 0.85, 1.0],
    "candidate_chunks": [30, 50, 100],
}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--beir", type=Path, required=True)
    parser.add_argument("--grid", default=None, help="python dict literal replacing GRID")
    parser.add_argument("--out", default="tuning")
    args = parser.parse_args()
    import ast

    from rag.embeddings import Embedder
    from rag.index import open_index

    grid = ast.literal_eval(args.grid) if args.grid else GRID
    base = bench_settings(Settings())
    _, queries = load_beir(args.beir / "corpus.jsonl", args.beir / "queries.jsonl")
    inner = Embedder(base.embedding_model, base.embed_batch_size, 0)
    embedder = PrecomputedEmbedder(inner, [q.query for q in queries])
    index = MemoIndex(open_index(base, embedder.inner))
    indexed = set(index.papers())
    golds = [set(q.gold_ids) & indexed for q in queries]
    rows = []
    for values in itertools.product(*grid.values()):
        update = dict(zip(grid, values, strict=True))
        tic = time.perf_counter()
        figures = evaluate(index, embedder, base.model_copy(update=update), queries, golds)
        rows.append((update, figures))
        print(
            f"{update} dev nDCG@10={figures['dev']['ndcg@10']:.4f} test={figures['test']['ndcg@10']:.4f} "
            f"({time.perf_counter() - tic:.0f}s)",
            flush=True,
        )
    rows.sort(key=lambda row: -row[1]["dev"]["ndcg@10"])
    lines = ["| settings | dev nDCG@10 | dev R@10 | test nDCG@10 | test R@10 |", "|---|---|---|---|---|"]
    for update, figures in rows:
        lines.append(
            f"| {update} | {figures['dev']['ndcg@10']:.4f} | {figures['dev']['recall@10']:.4f} "
            f"| {figures['test']['ndcg@10']:.4f} | {figures['test']['recall@10']:.4f} |"
        )
    (ROOT / "bench" / "results" / f"{args.out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:12]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
