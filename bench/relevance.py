"""Calibrate `min_relevance` and the named-paper evidence: on-topic vs off-topic questions, bundled corpus.

    .venv/bin/python bench/relevance.py

Each score is the best dense cosine, or 1.0 when the query names a retrieved paper (a rare title word,
an author, session, moderator or room), since `Retriever.is_relevant` then accepts it whatever the cosine. The
question lists below are written for calibration only (the eval set is used afterwards as a check). On-topic
questions paraphrase what a bundled paper does, mostly avoiding its title words; off-topic ones are general
knowledge, other sciences, chores and programming. Writes bench/results/relevance.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eval.retrieval import bench_settings  # noqa: E402
from rag.settings import Settings  # noqa: E402

ON_TOPIC = [
    "Which loss adds an angular margin to improve face recognition embeddings?",
    "How can attention be computed from inverse distances between queries and keys?",
    "Is there work predicting the parameters of networks whose architectures were never seen in training?",
    "What does depthwise separable convolution buy over Inception modules?",
    "How can a fixed-length representation be pooled from images of any size?",
    "Which papers improve contrastive learning by picking harder negative samples?",
    "Can hypernetworks be used to search neural architectures in one shot?",
    "What is a discrete key-value bottleneck and why does it help continual learning?",
    "Give me a survey of graph neural networks.",
    "What is known about how well graph neural networks generalise?",
    "How does atrous convolution help semantic segmentation in an encoder-decoder?",
    "How can neural collapse be induced for long-tailed classification?",
    "Do we need large soft labels when distilling a dataset at scale?",
    "Does adding noise to gradients help train very deep networks?",
    "Can text be encoded efficiently with a purely convolutional network?",
    "How can interpretable explanations separate labelled from unlabelled features?",
    "How are recurrent convolutional networks used for speaker diarization?",
    "How deep can convolutional networks for large-scale image recognition go with small 3x3 filters?",
    "How can an object classifier learn new classes continually without rehearsal?",
    "Can convolutional networks on graphs learn molecular fingerprints?",
    "How well do off-the-shelf CNN features work as a baseline for recognition?",
    "What is instance-level discrimination for unsupervised feature learning?",
    "What are deeply supervised nets?",
    "How does EfficientDet scale object detectors efficiently?",
    "Which work uses learning curves to evaluate design choices such as pretraining?",
    "How can the maximum common subgraph of two graphs be found with reinforcement learning?",
    "What vision-and-language transformer works without convolution or region supervision?",
    "Who wrote ViLT?",
    "Which papers did Derek Hoiem co-author?",
    "Who moderated the session where GLSearch was presented?",
    "How does signal-to-noise ratio serve as a distance metric in deep metric learning?",
    "What are feature pyramid networks?",
    "Which methods attribute a deep network's prediction to its input features?",
    "What is a good way to do zero-shot learning by generating features?",
    "How can backpropagation exploit sparsity to train faster?",
]

OFF_TOPIC = [
    "What is the capital of France?",
    "What is the best pizza recipe?",
    "How long should I boil an egg?",
    "Who won the 2014 football world cup?",
    "What is the boiling point of water at high altitude?",
    "How do I change a flat tyre on my bicycle?",
    "When did the Roman Empire fall?",
    "How do vaccines trigger an immune response?",
    "What causes the northern lights?",
    "Recommend a good science fiction novel.",
    "How do I file my taxes in Germany?",
    "What is the plot of Hamlet?",
    "How do I reverse a string in JavaScript?",
    "Explain how a mortgage interest rate is computed.",
    "What is the population of Tokyo?",
    "How do plants perform photosynthesis?",
    "What are the rules of chess castling?",
    "How many moons does Jupiter have?",
    "How do I train for a marathon?",
    "What is quantum entanglement?",
    "What's the weather like tomorrow?",
    "Translate 'good morning' into Spanish.",
    "How do I fix a leaking kitchen tap?",
    "Which wine goes with salmon?",
    "Write a haiku about autumn.",
    "What is the GDP of Brazil?",
    "How does the stock market work?",
    "What is the tallest building in the world?",
    "How do I set up a Kubernetes cluster?",
    "Who painted the Mona Lisa?",
]


def best_scores(retriever, questions: list[str]) -> list[float]:
    """Best dense cosine per question, or 1.0 when the query names a retrieved paper (always relevant)."""
    scores = []
    for question in questions:
        sources = retriever.search(question, k=5)
        best = max((s.dense_score or 0.0) for s in sources) if sources else 0.0
        scores.append(1.0 if any(s.named for s in sources) else best)
    return scores


def main() -> int:
    from rag.corpus import load_corpus
    from rag.embeddings import get_embedder
    from rag.index import open_index
    from rag.retrieve import Retriever

    settings = bench_settings(Settings(), "bench-bundled")
    embedder = get_embedder(settings)
    index = open_index(settings, embedder)
    index.ingest(load_corpus(Settings().corpus_paths).papers)
    retriever = Retriever(index, embedder, settings)
    on, off = best_scores(retriever, ON_TOPIC), best_scores(retriever, OFF_TOPIC)
    lines = [
        f"on-topic ({len(on)}): min {min(on):.3f}, max {max(on):.3f}; "
        f"off-topic ({len(off)}): min {min(off):.3f}, max {max(off):.3f}",
        "",
        "| threshold | on-topic kept | off-topic declined | balanced accuracy |",
        "|---|---|---|---|",
    ]
    for step in range(15, 46, 1):
        t = step / 100
        kept = sum(s >= t for s in on) / len(on)
        declined = sum(s < t for s in off) / len(off)
        lines.append(f"| {t:.2f} | {kept:.3f} | {declined:.3f} | {(kept + declined) / 2:.3f} |")
    lines += ["", "lowest on-topic:"]
    lines += [f"- {s:.3f} {q}" for s, q in sorted(zip(on, ON_TOPIC, strict=True))[:6]]
    lines += ["", "highest off-topic:"]
    lines += [f"- {s:.3f} {q}" for s, q in sorted(zip(off, OFF_TOPIC, strict=True), reverse=True)[:6]]
    eval_path = ROOT / "eval" / "questions.jsonl"
    if eval_path.is_file():
        rows = [json.loads(line) for line in eval_path.read_text().splitlines() if line.strip()]
        scores = best_scores(retriever, [row["question"] for row in rows])
        lines += ["", f"eval/questions.jsonl at min_relevance={settings.retrieval.min_relevance}:", ""]
        lines += ["| type | questions | judged relevant | lowest score |", "|---|---|---|---|"]
        for kind in sorted({row["type"] for row in rows}):
            picked = [s for s, row in zip(scores, rows, strict=True) if row["type"] == kind]
            share = sum(s >= settings.retrieval.min_relevance for s in picked) / len(picked)
            lines.append(f"| {kind} | {len(picked)} | {share:.3f} | {min(picked):.3f} |")
        lines += ["", "eval questions below threshold that have gold papers:"]
        lines += [
            f"- {s:.3f} [{row['type']}] {row['question']}"
            for s, row in zip(scores, rows, strict=True)
            if s < settings.retrieval.min_relevance and row.get("gold_titles")
        ]
        lines += ["", "eval unanswerable questions above threshold:"]
        lines += [
            f"- {s:.3f} {row['question']}"
            for s, row in zip(scores, rows, strict=True)
            if s >= settings.retrieval.min_relevance and row["type"] == "unanswerable"
        ]
    text = "\n".join(lines) + "\n"
    (ROOT / "bench" / "results" / "relevance.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
