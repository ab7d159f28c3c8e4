"""BM25 alone on SciTLDR with our tokenizer (`rag.text.tokenize`) and with bm25s' own, to pick one on evidence.

    .venv/bin/python bench/tokenizer_choice.py --beir ../shared/benchmarks/scitldr

One document per abstract (title + text), the peer-review TLDR queries of dev and test (tldr_index >= 1),
nDCG@10. bm25s' tokenizer is its default (lower-case `\\b\\w\\w+\\b` words, its English stopwords); its stemmer
option needs PyStemmer, which is not installed. Writes bench/results/tokenizers.md.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rag.text import tokenize  # noqa: E402


def ndcg_at_10(ranked: list[str], gold: set[str]) -> float:
    dcg = sum(1 / math.log2(i + 2) for i, paper in enumerate(ranked[:10]) if paper in gold)
    return dcg / sum(1 / math.log2(i + 2) for i in range(min(len(gold), 10)))


def score(docs: list[dict], queries: list[dict], tokenizer) -> float:
    import bm25s

    ids = [doc["id"] for doc in docs]
    model = bm25s.BM25(k1=1.2, b=0.75, method="lucene")
    model.index([tokenizer(f"{doc['title']}\n{doc['text']}") for doc in docs], show_progress=False)
    total = 0.0
    for query in queries:
        tokens = model.get_tokens_ids(tokenizer(query["query"]))
        scores = model.get_scores(tokens) if tokens else np.zeros(len(ids))
        total += ndcg_at_10([ids[i] for i in np.argsort(-scores, kind="stable")[:10]], set(query["gold_ids"]))
    return total / len(queries)


def main() -> None:
    from bm25s.tokenization import STOPWORDS_EN

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--beir", type=Path, required=True, help="Folder with corpus.jsonl and queries.jsonl.")
    args = parser.parse_args()
    docs = [json.loads(line) for line in (args.beir / "corpus.jsonl").open(encoding="utf-8")]
    rows = map(json.loads, (args.beir / "queries.jsonl").open(encoding="utf-8"))
    queries = [row for row in rows if row.get("split") in ("dev", "test") and row.get("tldr_index", 0) >= 1]
    word, stopwords = re.compile(r"(?u)\b\w\w+\b"), set(STOPWORDS_EN)
    tokenizers = {
        "rag.text.tokenize (compounds kept whole and split, light stemmer)": tokenize,
        "rag.text.tokenize without stemming": lambda text: tokenize(text, stemming=False),
        "bm25s default tokenizer (no stemmer)": lambda text: [
            w for w in word.findall(text.lower()) if w not in stopwords
        ],
    }
    lines = [
        f"# BM25 alone on SciTLDR: tokenizers ({len(queries)} queries, {len(docs)} abstracts, nDCG@10)",
        "",
        "| tokenizer | nDCG@10 |",
        "| --- | ---: |",
    ]
    lines += [f"| {name} | {score(docs, queries, tokenizer):.4f} |" for name, tokenizer in tokenizers.items()]
    out = ROOT / "bench" / "results" / "tokenizers.md"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
