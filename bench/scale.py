"""Scale benchmark: ingest, disk, memory, retrieval latency and ANN recall as the collection grows.

    nice -n 15 .venv/bin/python bench/scale.py --work /tmp/rag-scale              # 10k embedded + 100k replicated
    nice -n 15 .venv/bin/python bench/scale.py --work /tmp/rag-scale --sizes 10000,100000,1000000

Steps, each resumed from its result file under --work when it already ran:
1. A synthetic corpus in the arXiv metadata format (the format `rag ingest` reads): every document takes the
   sentence count of a real abstract and that many real sentences drawn from SciFact and SciTLDR abstracts, a
   real title, invented authors, a year and arXiv categories. So lengths, vocabulary and the embedding
   distribution are those of real abstracts, while the documents themselves are new.
2. The smallest size (10k) is ingested for real: parsing, chunking, MiniLM embedding and Chroma writes, through
   `Bot.ingest` as `rag ingest` does (source-sentence vectors off: that is the answer stage's cost, measured by
   bench/ingest.py, not retrieval's).
3. Larger sizes replicate the 10k chunk vectors with small Gaussian noise (renormalised) and their texts under
   new ids straight into a collection with the same HNSW settings: index and query scaling without hours of
   embedding. Their "ingest" rate is Chroma's write rate with vectors given.
4. Per size, in a fresh process: open the collection as the chat does (`Bot`: embedder, index, retriever with
   its persisted BM25 and catalog), RSS after opening and after the queries, full `Retriever.search` p50/p95
   and Chroma's nearest-neighbour query alone over 100 queries (a sentence of a random document), and
   recall@10 of the ANN answer against exact search over every stored vector (loaded after the RSS reading).

Writes bench/results/scale.json and bench/results/scale.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rag.settings import Settings  # noqa: E402

RESULTS = ROOT / "bench" / "results"
BENCHMARKS = Path("/work/shared/benchmarks")
COLLECTION = "scale"
FIRST = ["Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald", "Frances", "John", "Margaret", "Tim", "Radia", "Ken"]
LAST = ["Lovelace", "Turing", "Hopper", "Dijkstra", "Liskov", "Knuth", "Allen", "Backus", "Hamilton", "Lee", "Perlman"]
CATEGORIES = ["cs.LG", "cs.CL", "cs.CV", "stat.ML", "cs.AI", "q-bio.QM", "cs.IR", "cs.NE"]
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(])")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="folder for corpora and collections (big)")
    parser.add_argument("--sizes", default="10000,100000", help="document counts, comma-separated; first embedded")
    parser.add_argument("--queries", type=int, default=100, help="timed queries and recall sample per size")
    parser.add_argument(
        "--base",
        type=Path,
        help="replicate every size from this data folder's collection (already embedded) instead of embedding the "
        "synthetic corpus first: for a machine too busy to embed 10k abstracts",
    )
    parser.add_argument("--base-collection", default=None, help="collection of --base (default: scale)")
    parser.add_argument("--noise", type=float, default=0.2, help="norm of the noise added to replicated vectors")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # internal: measure one data dir
    parser.add_argument("--out", default="scale", help="result file stem under bench/results")
    return parser.parse_args(argv)


# --- step 1: the synthetic corpus ----------------------------------------------------------------------------
def real_abstracts() -> tuple[list[str], list[list[str]]]:
    """Titles and sentence lists of the SciFact and SciTLDR abstracts."""
    titles, abstracts = [], []
    for name in ("scifact", "scitldr"):
        with (BENCHMARKS / name / "corpus.jsonl").open() as handle:
            for line in handle:
                record = json.loads(line)
                sentences = record.get("sentences") or _SENTENCE.split(record.get("text", ""))
                sentences = [" ".join(s.split()) for s in sentences if len(s.split()) >= 3]
                if sentences:
                    titles.append(" ".join(record["title"].split()))
                    abstracts.append(sentences)
    return titles, abstracts


def make_corpus(path: Path, docs: int, seed: int) -> None:
    """`docs` arXiv metadata records, each with a real abstract's sentence count of real sentences."""
    rng = random.Random(seed)
    titles, abstracts = real_abstracts()
    pool = [sentence for sentences in abstracts for sentence in sentences]
    path.parent.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    with path.open("w") as handle:
        for number in range(docs):
            title = new_title(titles, used, rng)
            count = len(rng.choice(abstracts))
            year = rng.randint(2015, 2024)
            record = {
                "id": f"{year % 100:02d}{rng.randint(1, 12):02d}.{number:05d}",
                "title": title,
                "abstract": " ".join(rng.choice(pool) for _ in range(count)),
                "authors": ", ".join(f"{rng.choice(FIRST)} {rng.choice(LAST)}" for _ in range(rng.randint(1, 5))),
                "categories": " ".join(rng.sample(CATEGORIES, rng.randint(1, 3))),
                "versions": [{"version": "v1", "created": f"Mon, 1 Jan {year} 00:00:00 GMT"}],
                "update_date": f"{year}-01-01",
            }
            handle.write(json.dumps(record) + "\n")


def new_title(titles: list[str], used: set[str], rng: random.Random) -> str:
    """The first half of one real title and the second half of another, never one used before: ingest merges
    records with equal titles into one paper, so drawing whole titles would shrink the corpus."""
    while True:
        head, tail = rng.choice(titles).split(), rng.choice(titles).split()
        title = " ".join(head[: max(1, len(head) // 2)] + tail[len(tail) // 2 :])
        if title.casefold() not in used:
            used.add(title.casefold())
            return title


# --- step 2: real ingest -------------------------------------------------------------------------------------
def scale_settings(data_dir: Path, collection: str = COLLECTION) -> Settings:
    return Settings(data_dir=data_dir, collection=collection, sentence_vectors_at_ingest=False)


def ingest(corpus: Path, data_dir: Path) -> dict:
    from rag.api import Bot

    bot = Bot(scale_settings(data_dir))
    bot.embedder.embed(["warm-up"])  # model load is not ingest
    started, cpu = time.perf_counter(), time.process_time()
    report = bot.ingest([corpus])
    seconds = time.perf_counter() - started
    bot.index.close()
    return {
        "docs": report.papers,
        "chunks": report.chunks_added,
        "ingest_s": round(seconds, 1),
        "ingest_cpu_s": round(time.process_time() - cpu, 1),
        "docs_per_s": round(report.papers / seconds, 1),
        "how": "embedded for real (MiniLM), Bot.ingest",
    }


# --- step 3: replication -------------------------------------------------------------------------------------
def replicate(source: Path, data_dir: Path, docs: int, noise: float, seed: int, collection: str = COLLECTION) -> dict:
    """Copies of the source collection's chunks under new paper ids, vectors jittered by `noise` (norm)."""
    from rag.embeddings import get_embedder
    from rag.index import open_index

    settings = scale_settings(source, collection)
    embedder = get_embedder(settings)
    with open_index(settings, embedder) as index:
        records = index._collection.get(include=["embeddings", "documents", "metadatas"])
    ids, vectors = records["ids"], np.asarray(records["embeddings"], dtype=np.float32)
    documents, metadatas = records["documents"], records["metadatas"]
    originals = len({meta["paper_id"] for meta in metadatas})
    copies = max(1, round(docs / originals))
    rng = np.random.default_rng(seed)
    target = scale_settings(data_dir)
    with open_index(target, embedder) as index:
        batch = index._max_batch()
        started = time.perf_counter()
        written = 0
        for copy in range(copies):
            jitter = rng.normal(scale=noise / np.sqrt(vectors.shape[1]), size=vectors.shape).astype(np.float32)
            moved = vectors + (jitter if copy else 0)
            moved /= np.linalg.norm(moved, axis=1, keepdims=True)
            suffix = f"~{copy}" if copy else ""
            new_ids = [f"{chunk_id.rsplit('#', 1)[0]}{suffix}#{chunk_id.rsplit('#', 1)[1]}" for chunk_id in ids]
            new_meta = [{**meta, "paper_id": f"{meta['paper_id']}{suffix}"} for meta in metadatas]
            for start in range(0, len(ids), batch):
                end = start + batch
                index._collection.add(
                    ids=new_ids[start:end], embeddings=moved[start:end], documents=documents[start:end],
                    metadatas=new_meta[start:end],
                )  # fmt: skip
            written += len(ids)
        seconds = time.perf_counter() - started
        derived_s = build_derived(index, embedder, target)
    return {
        "docs": originals * copies,
        "chunks": written,
        "ingest_s": round(seconds, 1),
        "docs_per_s": round(originals * copies / seconds, 1),
        "derived_build_s": derived_s,
        "how": f"{copies} copies of {originals:,} embedded abstracts ({source.name}), {copies - 1} of them "
        f"with noise of norm {noise}, written with vectors given",
    }


def build_derived(index, embedder, settings: Settings) -> float:
    """Build and save the BM25 index and catalog, as `Bot.ingest` does after writing; returns the seconds."""
    from rag.retrieve import Retriever

    started = time.perf_counter()
    Retriever(index, embedder, settings).corpus()
    return round(time.perf_counter() - started, 1)


# --- step 4: measuring one collection, in a fresh process ----------------------------------------------------
def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def measure(data_dir: Path, queries: int, seed: int) -> dict:
    from rag.api import Bot
    from rag.retrieve import question_content

    settings = scale_settings(data_dir)
    started = time.perf_counter()
    bot = Bot(settings)
    bot.embedder.embed(["warm-up"])
    retriever = bot.retriever
    corpus_started = time.perf_counter()
    retriever.corpus()  # loads the persisted BM25 index and catalog (builds them if missing or stale)
    open_s, corpus_s = time.perf_counter() - started, time.perf_counter() - corpus_started
    rss_open = rss_mb()
    rng = random.Random(seed)
    total = bot.index.count()
    sample = bot.index._collection.get(
        include=["documents"], limit=queries, offset=rng.randint(0, max(0, total - queries))
    )  # fmt: skip
    texts = [_query_from(document, rng) for document in sample["documents"]]
    retriever.search(texts[0], k=5)  # first query pays one-off costs
    search_ms, embed_ms, ann_ms, ann_ids = [], [], [], []
    for text in texts:
        began = time.perf_counter()
        vector = bot.embedder.embed_one(question_content(text))  # cached: search below reuses it
        embed_ms.append((time.perf_counter() - began) * 1000)
        began = time.perf_counter()
        retriever.search(text, k=5)
        search_ms.append((time.perf_counter() - began) * 1000 + embed_ms[-1])
        began = time.perf_counter()
        hits = bot.index.query(vector, 10)
        ann_ms.append((time.perf_counter() - began) * 1000)
        ann_ids.append([chunk.id for chunk, _ in hits])
    rss_queried = rss_mb()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    recall = ann_recall(bot, texts, ann_ids)
    return {
        "chunks": total,
        "open_s": round(open_s, 2),
        "lexical_and_catalog_load_s": round(corpus_s, 2),
        "rss_open_mb": rss_open,
        "rss_after_queries_mb": rss_queried,
        "peak_rss_before_exact_mb": round(peak, 1),
        "embed_p50_ms": round(float(np.percentile(embed_ms, 50)), 1),
        "retrieval_without_embedding_p50_ms": round(float(np.percentile(np.subtract(search_ms, embed_ms), 50)), 1),
        "retrieval_without_embedding_p95_ms": round(float(np.percentile(np.subtract(search_ms, embed_ms), 95)), 1),
        "search_p50_ms": round(float(np.percentile(search_ms, 50)), 1),
        "search_p95_ms": round(float(np.percentile(search_ms, 95)), 1),
        "ann_p50_ms": round(float(np.percentile(ann_ms, 50)), 2),
        "ann_p95_ms": round(float(np.percentile(ann_ms, 95)), 2),
        "ann_recall_at_10": round(recall, 4),
        "queries": len(texts),
    }


def _query_from(document: str, rng: random.Random) -> str:
    """One abstract sentence of a stored chunk, cut to at most 25 words: a question-length query."""
    body = document.split("\n", 1)[-1]
    sentences = [s for s in _SENTENCE.split(body) if len(s.split()) >= 5] or [body]
    return " ".join(rng.choice(sentences).split()[:25])


def ann_recall(bot, texts: list[str], ann_ids: list[list[str]]) -> float:
    """Mean share of the exact top 10 (cosine over every stored vector) that the ANN top 10 holds."""
    ids: list[str] = []
    blocks = []
    for chunk_id, vector in bot.index._scan_vectors():
        ids.append(chunk_id)
        blocks.append(vector)
    matrix = np.stack(blocks)
    found = 0.0
    for text, ann in zip(texts, ann_ids, strict=True):
        cosines = matrix @ bot.embedder.embed_one(text)
        exact = {ids[row] for row in np.argpartition(-cosines, 10)[:10]}
        found += len(exact & set(ann)) / 10
    return found / len(texts)


def measured(data_dir: Path, queries: int, seed: int) -> dict:
    """`measure` in a child process, so its RSS is that of a process that only opened this collection."""
    command = [sys.executable, __file__, "--work", str(data_dir), "--measure", str(data_dir)]
    command += ["--queries", str(queries), "--seed", str(seed)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"measuring {data_dir} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def disk_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


# --- the run -------------------------------------------------------------------------------------------------
def cached(path: Path, compute) -> dict:
    if path.exists():
        return json.loads(path.read_text())
    value = compute()
    path.write_text(json.dumps(value, indent=2))
    return value


def run(args: argparse.Namespace) -> dict:
    sizes = [int(size) for size in args.sizes.split(",")]
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    base = args.base or work / f"data-{sizes[0]}"
    base_collection = args.base_collection or COLLECTION
    for size in sizes:
        data_dir = work / f"data-{size}"
        if size == sizes[0] and args.base is None:
            corpus = work / f"corpus-{size}.jsonl"
            if not corpus.exists():
                make_corpus(corpus, size, args.seed)
            built = cached(work / f"ingest-{size}.json", lambda c=corpus, d=data_dir: ingest(c, d))
        else:
            built = cached(
                work / f"ingest-{size}.json",
                lambda s=size, d=data_dir: replicate(base, d, s, args.noise, args.seed, base_collection),
            )
        figures = cached(work / f"measure-{size}.json", lambda d=data_dir: measured(d, args.queries, args.seed))
        index_bytes = disk_bytes(data_dir / "index")
        rows.append(
            {
                "size": size,
                **built,
                **figures,
                "disk_mb": round(index_bytes / 2**20, 1),
                "disk_kb_per_doc": round(index_bytes / 1024 / built["docs"], 2),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return run_context() | {"rows": rows}


def run_context() -> dict:
    """The machine, its load and the index's HNSW and candidate settings a scale result was measured with."""
    settings = Settings()
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "load_avg": os.getloadavg()[0],
        "hnsw": {
            "ef_construction": settings.index.hnsw_ef_construction,
            "max_neighbors": settings.index.hnsw_max_neighbors,
            "ef_search": settings.index.hnsw_ef_search,
        },
        "candidate_chunks": settings.retrieval.candidate_chunks,
    }


def to_markdown(result: dict) -> str:
    hnsw = result["hnsw"]
    lines = [
        f"Scale benchmark ({result['machine']}; load average {result['load_avg']:.1f} at the end: other jobs shared "
        f"the CPU). HNSW ef_construction {hnsw['ef_construction']}, max_neighbors {hnsw['max_neighbors']}, "
        f"ef_search {hnsw['ef_search']}; {result['candidate_chunks']} dense candidates a question.",
        "",
        "| docs | chunks | how built | ingest docs/s | disk MB | disk KB/doc | open s | RSS open MB | "
        "RSS after queries MB | search p50 ms | search p95 ms | of which query embedding p50 ms | "
        "without embedding p50 / p95 ms | ANN p50 ms | ANN p95 ms | ANN recall@10 |",
        "| ---: | ---: | --- " + "| ---: " * 13 + "|",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['docs']:,} | {row['chunks']:,} | {row['how']} | {row['docs_per_s']} | {row['disk_mb']} | "
            f"{row['disk_kb_per_doc']} | {row['open_s']} | {row['rss_open_mb']} | {row['rss_after_queries_mb']} | "
            f"{row['search_p50_ms']} | {row['search_p95_ms']} | {row.get('embed_p50_ms', '–')} | "
            f"{row.get('retrieval_without_embedding_p50_ms', '–')} / "
            f"{row.get('retrieval_without_embedding_p95_ms', '–')} | "
            f"{row['ann_p50_ms']} | {row['ann_p95_ms']} | "
            f"{row['ann_recall_at_10']} |"
        )
    lines += [""] + [
        f"- {row['docs']:,} docs: BM25 index and catalog built in {row.get('derived_build_s', '–')} s after the "
        f"writes; peak RSS of the measuring process before the exact-search check {row['peak_rss_before_exact_mb']} MB."
        for row in result["rows"]
    ]
    lines += [
        "",
        "search: `Retriever.search(query, k=5)` end to end (query embedding, HNSW candidates, BM25, catalog "
        "look-ups, fusion, the top papers read from the store). ANN: Chroma's nearest-neighbour query alone. "
        "RSS: a fresh process that loaded the embedder, opened the collection and its persisted BM25 index and "
        "catalog. Recall: the ANN top 10 against exact cosine search over every stored vector.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.measure is not None:
        print(json.dumps(measure(args.measure, args.queries, args.seed)))
        return
    result = run(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{args.out}.md").write_text(to_markdown(result))
    print(to_markdown(result))


if __name__ == "__main__":
    main()
