"""First-token latency of two settings, interleaved question by question, so host drift hits both alike.

    .venv/bin/python bench/first_token.py --b weak_source_margin=off          # defaults (A) against B
    .venv/bin/python bench/first_token.py --a context_words=60 --b context_words=90 --n 20

On this shared 2-core host the same code's first token p50 moved from 4.4 s to 3.4 s between two full eval runs
an hour apart, so two eval reports cannot show a 10% change. Here every question is asked under A and B in turn
(alternating which goes first), with one llama.cpp model serving both and its cache reset to the system prompt
before each; the figure that counts is the median per-question ratio B/A. Questions: every len/n-th line of the
eval set. Writes bench/results/first_token.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from eval.harness import load_questions
from rag.api import Bot
from rag.settings import Settings
from rag.types import Answer, Restart

RESULTS = Path(__file__).parent / "results" / "first_token.md"


def timed(bot: Bot, question: str) -> tuple[float, float, bool]:
    """(first token kept, total, restarted) in seconds, as the eval harness measures them."""
    started = time.perf_counter()
    first, restarted = None, False
    for item in bot.ask_stream(question):
        if isinstance(item, Restart):
            first, restarted = None, True
        elif not isinstance(item, Answer) and first is None and item:
            first = time.perf_counter() - started
    total = time.perf_counter() - started
    return (total if first is None else first), total, restarted


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) > 1 else values[0]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", action="append", default=[], help="a setting override for A, name=value")
    parser.add_argument("--b", action="append", default=[], help="a setting override for B, name=value")
    parser.add_argument("--n", type=int, default=30, help="questions (default 30)")
    args = parser.parse_args(argv)
    overrides = {name: dict(item.split("=", 1) for item in items) for name, items in (("A", args.a), ("B", args.b))}
    bot_a = Bot(Settings(**overrides["A"]))
    bot_a.warm_up()
    bot_b = Bot(Settings(**overrides["B"]), embedder=bot_a.embedder, generator=bot_a.generator)
    bot_b.warm_up()
    questions = load_questions()
    questions = questions[:: max(1, len(questions) // args.n)][: args.n]
    rows: dict[str, list[tuple[float, float, bool]]] = {"A": [], "B": []}
    for number, question in enumerate(questions):
        order = [("A", bot_a), ("B", bot_b)] if number % 2 == 0 else [("B", bot_b), ("A", bot_a)]
        for name, bot in order:
            bot.answerer.warm_up()  # the KV cache back to the system prompt, so B does not reuse A's prompt
            rows[name].append(timed(bot, question.question))
        print(f"{question.id}: A {rows['A'][-1][0]:.2f} s, B {rows['B'][-1][0]:.2f} s", flush=True)
    ratios = [b[0] / a[0] for a, b in zip(rows["A"], rows["B"], strict=True)]
    lines = [
        f"First token, A against B interleaved, {len(questions)} eval questions, {time.strftime('%Y-%m-%d %H:%M')}",
        "",
        f"- A: {overrides['A'] or 'defaults'}; B: {overrides['B'] or 'defaults'}",
        f"- median per-question ratio B/A of first token: {statistics.median(ratios):.2f}",
        "",
        "| config | first token p50 s | first token p95 s | total p50 s | total p95 s | restarted |",
        "|---|---|---|---|---|---|",
        *(
            f"| {name} | {statistics.median(r[0] for r in runs):.2f} | {p95([r[0] for r in runs]):.2f} | "
            f"{statistics.median(r[1] for r in runs):.2f} | {p95([r[1] for r in runs]):.2f} | "
            f"{sum(r[2] for r in runs)} |"
            for name, runs in rows.items()
        ),
    ]
    print("\n".join(lines))
    RESULTS.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
