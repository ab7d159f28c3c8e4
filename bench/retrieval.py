"""Retrieval benchmark on SciTLDR (TLDR -> its paper): every retrieval mode on the same index, one run.

    .venv/bin/python bench/retrieval.py --beir /work/shared/benchmarks/scitldr

Indexes the BEIR corpus into its own collection under `<data_dir>/bench` (reused by later runs), then writes
bench/results/retrieval.json (all figures, per split) and bench/results/retrieval.md (the table). Settings
come from `Settings()` (so `RAG_*` variables apply) plus `--set name=value` overrides.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eval.retrieval import load_beir, run_beir  # noqa: E402
from rag.settings import Settings  # noqa: E402

RESULTS = ROOT / "bench" / "results"
TUNED_SETTINGS = (
    "fusion", "dense_weight", "lexical_weight", "zscore_floor", "metadata_weight", "coined_name_weight", "rrf_k",
    "candidate_chunks", "chunk_chars", "bm25_k1", "bm25_b", "bm25_stemming", "rerank", "mmr_lambda", "embedding_model",
)  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--beir", type=Path, required=True, help="folder with corpus.jsonl and queries.jsonl")
    parser.add_argument("--splits", default="dev,test", help="query splits, comma-separated")
    parser.add_argument("--min-tldr-index", type=int, default=1, help="1 = peer-review TLDRs only (default)")
    parser.add_argument("--modes", default="dense,lexical,hybrid", help="retrieval modes, comma-separated")
    parser.add_argument("--limit", type=int, default=None, help="first N queries only (smoke runs)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override a setting")
    parser.add_argument("--out", default="retrieval", help="result file stem under bench/results")
    return parser.parse_args(argv)


def to_markdown(result: dict) -> str:
    """One row per mode: recall@1/5/10, MRR@10, nDCG@10 on all queries, nDCG@10 per split, latency."""
    splits = [name for name in next(iter(result["modes"].values())) if name not in ("all", "p50_ms", "p95_ms")]
    head = [
        "mode",
        "R@1",
        "R@5",
        "R@10",
        "MRR@10",
        "nDCG@10",
        *(f"nDCG@10 {s}" for s in splits),
        "p50 ms",
        "p95 ms",
    ]
    lines = [
        f"SciTLDR retrieval, {result['queries']} queries over {result['corpus_papers']} abstracts "
        f"({result['chunks']} chunks); {result['machine']}.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for mode, figures in result["modes"].items():
        overall = figures["all"]
        row = [
            mode,
            *(f"{overall[key]:.3f}" for key in ("recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10")),
            *(f"{figures[split]['ndcg@10']:.3f}" for split in splits),
            f"{figures['p50_ms']:.1f}",
            f"{figures['p95_ms']:.1f}",
        ]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Settings: " + ", ".join(f"{key}={value}" for key, value in result["settings"].items())]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = dict(item.split("=", 1) for item in args.set)
    settings = Settings(**overrides)
    papers, queries = load_beir(
        args.beir / "corpus.jsonl",
        args.beir / "queries.jsonl",
        splits=args.splits.split(","),
        min_tldr_index=args.min_tldr_index,
    )
    queries = queries[: args.limit] if args.limit else queries
    started = time.perf_counter()
    result = run_beir(papers, queries, settings, modes=args.modes.split(","), progress=print)
    flat = settings.flat_dump()
    result["settings"] = {name: flat[name] for name in TUNED_SETTINGS}
    result["machine"] = f"{platform.machine()}, {_cpu_count()} CPU cores (shared), load {_load()}"
    result["seconds"] = round(time.perf_counter() - started, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (RESULTS / f"{args.out}.md").write_text(to_markdown(result))
    print(to_markdown(result))
    return 0


def _load() -> str:
    """The 1-minute load average at the end: latency figures mean little when it exceeds the core count."""
    import os

    return f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "unknown"


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0


if __name__ == "__main__":
    raise SystemExit(main())
