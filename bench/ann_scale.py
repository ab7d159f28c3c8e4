"""ANN scaling to a million vectors: Chroma's HNSW query time, memory and recall with the index's settings.

    nice -n 15 .venv/bin/python bench/ann_scale.py --base <data dir> --base-collection <name> --work /tmp/rag-ann

bench/scale.py measures the whole retrieval path (HNSW, BM25, catalog, fusion) up to 100k documents, where
writing documents, metadata and Chroma's full-text index caps the rate at ~140 documents/s: a million would
take most of a day on two cores. This benchmark isolates the dense part, the one whose cost the issue's 1M
targets are about (query time, recall of the approximate search against exact search):

1. The chunk vectors of an embedded collection (`--base`, e.g. the SciFact abstracts that `rag eval --claims`
   indexed) are copied up to `--vectors`, each copy mixed with another chunk's vector (`--mix`) and jittered
   with Gaussian noise of norm `--noise` (renormalised; `--mix 0`: plain noisy replicas), and written
   with ids only (no documents, no metadata) into a collection made with `rag.index.hnsw_configuration`, the
   one every collection of the bot gets. The copies are generated from `--seed`, so the exact search of step 3
   regenerates them instead of reading a million vectors back. A killed run resumes where the count stands.
2. In a fresh process: the collection is opened, and RSS is read after opening and after the queries.
3. Queries are real text: `--queries` claims or queries embedded with the bot's embedder. Each is asked for
   the retriever's `candidate_chunks` and for 10 neighbours; recall@10 is the share of the exact top 10
   (cosine over every vector) that HNSW returns.

Writes bench/results/<--out>.json and .md (default ann-scale).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.scale import rss_mb, run_context  # noqa: E402
from rag.settings import Settings  # noqa: E402

RESULTS = ROOT / "bench" / "results"
COLLECTION = "ann-scale"
BATCH = 5000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required=True, help="data folder of an embedded collection")
    parser.add_argument("--base-collection", required=True, help="its collection name")
    parser.add_argument("--work", type=Path, required=True, help="folder for the replicated collection (big)")
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument(
        "--query-file",
        type=Path,
        default=Path("/work/shared/benchmarks/scifact/claims_train.jsonl"),
        help="JSON lines with a 'claim' or 'query' field: the query texts",
    )
    parser.add_argument("--noise", type=float, default=0.2)
    parser.add_argument(
        "--mix",
        type=float,
        default=0.5,
        help="weight of a second, random base vector added to each copy (0: plain noisy replicas, which put "
        "dozens of near-duplicates of every chunk in the graph)",
    )
    parser.add_argument("--out", default="ann-scale", help="result file stem under bench/results")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)  # internal: step 2-3
    return parser.parse_args(argv)


def base_vectors(base: Path, collection: str) -> np.ndarray:
    """Every chunk vector of the base collection, unit length."""
    import chromadb

    client = chromadb.PersistentClient(path=str(base / "index"))
    stored = client.get_collection(collection, embedding_function=None)
    vectors = np.asarray(stored.get(include=["embeddings"])["embeddings"], dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def replica(base: np.ndarray, copy: int, noise: float, mix: float, seed: int) -> np.ndarray:
    """Copy `copy` of the base vectors: the originals for copy 0, else each plus `mix` times another base vector
    drawn at random, jittered by noise of norm `noise`, renormalised. With `mix` 0 the copies of a chunk are
    near-duplicates of it (cosine ~0.98), dozens of them at a million vectors, which no real collection holds and
    which fill HNSW's neighbour lists with one another; mixing spreads them between real chunks."""
    if copy == 0:
        return base
    rng = np.random.default_rng([seed, copy])
    moved = base + mix * base[rng.permutation(len(base))] if mix else base.copy()
    moved += rng.normal(scale=noise / np.sqrt(base.shape[1]), size=base.shape).astype(np.float32)
    return moved / np.linalg.norm(moved, axis=1, keepdims=True)


def all_vectors(base: np.ndarray, total: int, noise: float, mix: float, seed: int):
    """(first row, block) over the replicated vectors, `total` rows in all, in the order they are written."""
    row, copy = 0, 0
    while row < total:
        block = replica(base, copy, noise, mix, seed)[: total - row]
        yield row, block
        row += len(block)
        copy += 1


def open_collection(work: Path):
    import chromadb

    from rag.index import hnsw_configuration

    client = chromadb.PersistentClient(path=str(work / "index"))
    configuration = {"hnsw": hnsw_configuration(Settings())}
    return client.get_or_create_collection(COLLECTION, configuration=configuration, embedding_function=None)


def write(args: argparse.Namespace, base: np.ndarray) -> dict:
    """Write the replicated vectors, resuming after the ones already stored; the rate of this run's writes."""
    collection = open_collection(args.work)
    stored = collection.count()
    started, written = time.perf_counter(), 0
    for first, block in all_vectors(base, args.vectors, args.noise, args.mix, args.seed):
        for start in range(max(0, stored - first), len(block), BATCH):
            rows = block[start : start + BATCH]
            collection.add(ids=[str(first + start + i) for i in range(len(rows))], embeddings=rows)
            written += len(rows)
            if written % 100_000 < BATCH:
                print(f"{first + start + len(rows):,} vectors", flush=True)
    seconds = time.perf_counter() - started
    return {"written_now": written, "write_s": round(seconds, 1), "vectors_per_s": round(written / seconds, 1)}


def query_texts(path: Path, count: int) -> list[str]:
    texts = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            texts.append(row.get("claim") or row.get("query"))
    step = max(1, len(texts) // count)
    return texts[::step][:count]


def measure(args: argparse.Namespace) -> dict:
    """Open the collection in this (fresh) process, time the queries, then check recall against exact search."""
    from rag.embeddings import get_embedder

    settings = Settings()
    embedder = get_embedder(settings)
    queries = np.asarray(embedder.embed(query_texts(args.query_file, args.queries)), dtype=np.float32)
    rss_model = rss_mb()
    started = time.perf_counter()
    collection = open_collection(args.work)
    count = collection.count()
    collection.query(query_embeddings=[queries[0]], n_results=10)  # loads the HNSW segment
    open_s = time.perf_counter() - started
    rss_open = rss_mb()
    timings: dict[int, list[float]] = {settings.retrieval.candidate_chunks: [], 10: []}
    found: list[list[str]] = []
    cosines: list[list[float]] = []
    for vector in queries:
        for n in timings:
            began = time.perf_counter()
            result = collection.query(query_embeddings=[vector], n_results=n, include=["distances"])
            timings[n].append((time.perf_counter() - began) * 1000)
            if n == 10:
                found.append(result["ids"][0])
                cosines.append([1 - distance for distance in result["distances"][0]])
    rss_queried = rss_mb()
    by_id, by_score = exact_recall(args, queries, found, cosines, count)
    figures = {"vectors": count, "open_s": round(open_s, 2), "rss_embedder_mb": rss_model}
    figures |= {"rss_open_mb": rss_open, "rss_after_queries_mb": rss_queried}
    figures |= {"recall_at_10": round(by_id, 4), "recall_at_10_by_score": round(by_score, 4)}
    for n, values in timings.items():
        figures[f"query{n}_p50_ms"] = round(float(np.percentile(values, 50)), 2)
        figures[f"query{n}_p95_ms"] = round(float(np.percentile(values, 95)), 2)
    figures["queries"] = len(queries)
    return figures


def exact_recall(
    args: argparse.Namespace, queries: np.ndarray, found: list[list[str]], cosines: list[list[float]], count: int
) -> tuple[float, float]:
    """Recall@10 of the HNSW answers against exact search over all `count` stored vectors, two ways: the share
    of the exact top 10 ids returned, and the share of returned vectors at least as close as the exact 10th
    (less 1e-4). Replicas are near-ties (copies of one abstract's chunk a cosine ~0.98 apart), and which of
    the tied copies an approximate search returns is arbitrary: the second count does not hold that against it."""
    base = base_vectors(args.base, args.base_collection)
    best = np.full((len(queries), 10), -np.inf, dtype=np.float32)
    best_rows = np.zeros((len(queries), 10), dtype=np.int64)
    for first, block in all_vectors(base, count, args.noise, args.mix, args.seed):
        scores = queries @ block.T
        merged = np.concatenate([best, scores], axis=1)
        rows = np.concatenate([best_rows, np.arange(first, first + len(block))[None, :].repeat(len(queries), 0)], 1)
        top = np.argpartition(-merged, 10, axis=1)[:, :10]
        best = np.take_along_axis(merged, top, axis=1)
        best_rows = np.take_along_axis(rows, top, axis=1)
    hits = [len({str(row) for row in exact} & set(ann)) / 10 for exact, ann in zip(best_rows, found, strict=True)]
    tenth = best.min(axis=1)
    close = [sum(c >= bar - 1e-4 for c in ann[:10]) / 10 for ann, bar in zip(cosines, tenth, strict=True)]
    return float(np.mean(hits)), float(np.mean(close))


def disk_mb(folder: Path) -> float:
    return round(sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) / 2**20, 1)


def to_markdown(result: dict) -> str:
    row, hnsw = result["figures"], result["hnsw"]
    n = result["candidate_chunks"]
    return "\n".join(
        [
            f"ANN scaling ({result['machine']}; load average {result['load_avg']:.1f} at the end). HNSW "
            f"ef_construction {hnsw['ef_construction']}, max_neighbors {hnsw['max_neighbors']}, ef_search "
            f"{hnsw['ef_search']}, cosine: the configuration every collection of the bot gets.",
            "",
            "| vectors | how built | write vectors/s | disk MB | open s | "
            f"RSS open MB (embedder {row['rss_embedder_mb']} MB of it) | RSS after queries MB | "
            f"query {n} p50 / p95 ms | query 10 p50 / p95 ms | recall@10 by id | recall@10 by score |",
            "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            f"| {row['vectors']:,} | {result['how']} | {result['write']['vectors_per_s']} | {result['disk_mb']} | "
            f"{row['open_s']} | {row['rss_open_mb']} | {row['rss_after_queries_mb']} | "
            f"{row[f'query{n}_p50_ms']} / {row[f'query{n}_p95_ms']} | {row['query10_p50_ms']} / "
            f"{row['query10_p95_ms']} | {row['recall_at_10']} | "
            f"{row['recall_at_10_by_score']} |",
            "",
            f"Queries: {row['queries']} real texts ({result['query_file']}) embedded with the bot's embedder; "
            f"{n} neighbours is what the retriever asks for (`candidate_chunks`). Recall: the HNSW top 10 against "
            "the exact top 10 by cosine over every stored vector, by id and by score (returned vectors at least "
            "as close as the exact 10th: the replicas of one chunk are near-ties, so which of them comes back is "
            "arbitrary). Vectors only: no documents or metadata, so the "
            "disk figure is the HNSW index and Chroma's log, not a collection's full size (bench/scale.md has "
            "that up to 100k documents). Write rate: of the last run that wrote (a resumed run counts its own "
            "writes).",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args)))
        return
    args.work.mkdir(parents=True, exist_ok=True)
    base = base_vectors(args.base, args.base_collection)
    written = write(args, base)
    log = args.work / "write.json"
    if written["written_now"] or not log.exists():
        log.write_text(json.dumps(written))
    command = [sys.executable, __file__, "--measure", *(sys.argv[1:] if argv is None else argv)]
    child = subprocess.run(command, capture_output=True, text=True, check=False)
    if child.returncode != 0:
        raise SystemExit(f"measuring failed:\n{child.stderr[-3000:]}")
    result = run_context() | {
        "how": f"{len(base):,} chunk vectors of {args.base_collection}, copies "
        + (f"mixed with another at weight {args.mix} and " if args.mix else "")
        + f"jittered by noise of norm {args.noise}",
        "query_file": args.query_file.name,
        "write": json.loads(log.read_text()),
        "disk_mb": disk_mb(args.work / "index"),
        "figures": json.loads(child.stdout.strip().splitlines()[-1]),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{args.out}.md").write_text(to_markdown(result))
    print(to_markdown(result))


if __name__ == "__main__":
    main()
