"""Ingest benchmark: cold ingest of a corpus into a fresh embedded index with the real embedder, then re-runs.

    .venv/bin/python bench/ingest.py                 # the bundled seed pages
    .venv/bin/python bench/ingest.py --paths a.jsonl # any corpus files

Builds the index in a temporary data folder (the user's index is never touched) and writes
bench/results/ingest.json: parse, model-load, cold-ingest, warm re-ingest (same process) and
re-open + re-ingest times, with paper and chunk counts. Settings come from `Settings()` (so `RAG_*`
variables apply) except data_dir.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rag.corpus import load_corpus  # noqa: E402
from rag.embeddings import get_embedder  # noqa: E402
from rag.index import open_index  # noqa: E402
from rag.settings import Settings  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def timed(action):
    started = time.perf_counter()
    value = action()
    return value, round(time.perf_counter() - started, 3)


def cpu_timed(action):
    """Wall and CPU seconds: on a shared machine the CPU time is the figure that compares across runs."""
    started = time.process_time()
    value, wall = timed(action)
    return value, wall, round(time.process_time() - started, 3)


def run(paths: list[Path] | None, out: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="rag-ingest-bench-") as data_dir:
        settings = Settings(data_dir=Path(data_dir))
        corpus, parse_s = timed(lambda: load_corpus(paths or settings.corpus_paths))
        embedder = get_embedder(settings)
        _, model_s = timed(lambda: embedder.embed(["warm-up"]))  # import + load + first forward pass
        index = open_index(settings, embedder)
        load_before = os.getloadavg()[0]
        cold, cold_s, cold_cpu_s = cpu_timed(lambda: index.ingest(corpus.papers))
        warm, warm_s = timed(lambda: index.ingest(corpus.papers))
        index.close()
        reopened, reopen_s = timed(lambda: open_index(settings, embedder))
        again, again_s = timed(lambda: reopened.ingest(corpus.papers))
        chunks, papers = reopened.count(), reopened.paper_count()
        reopened.close()
    figures = {
        "corpus": [str(path) for path in (paths or settings.corpus_paths)],
        "papers": papers,
        "chunks": chunks,
        "parse_s": parse_s,
        "model_load_s": model_s,
        "cold_ingest_s": cold_s,
        "cold_chunks_added": cold.chunks_added,
        "cold_ingest_cpu_s": cold_cpu_s,
        "chunks_per_s": round(cold.chunks_added / cold_s, 1) if cold_s else None,
        "load_average_before_cold": round(load_before, 2),
        "reingest_same_process_s": warm_s,
        "reingest_skipped": warm.papers_skipped,
        "reopen_s": reopen_s,
        "reingest_after_reopen_s": again_s,
        "reingest_after_reopen_added": again.chunks_added,
        "embedding_model": settings.index.embedding_model,
        "chunk_chars": settings.index.chunk_chars,
        "embed_batch_size": settings.index.embed_batch_size,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared), Python {platform.python_version()}",
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", type=Path, nargs="*", default=None, help="corpus files or folders")
    parser.add_argument("--out", type=Path, default=RESULTS / "ingest.json", help="where the figures go")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.paths, args.out), indent=2))


if __name__ == "__main__":
    main()
