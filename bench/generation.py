"""Generation speed of llama.cpp on a RAG-sized prompt: load, prefill, first token, decode, memory.

    .venv/bin/python bench/generation.py                 # 1.5B and 0.5B, 3 runs each
    .venv/bin/python bench/generation.py --sizes 0.5b --runs 1

Each model is measured in its own child process, so its peak RSS is its own and not the sum of both. The
prompt is built like the answer stage builds it (SYSTEM_PROMPT, numbered sources from the bundled corpus, the
question) and filled with sources to about `--prompt-tokens` tokens. Each run starts from an empty KV cache
(`Llama.reset()`), otherwise llama.cpp would reuse the previous run's prefix and skip the prefill.

Per run:
- prefill: a 1-token completion; prompt tokens / its wall time (includes one sampling step).
- first token: time to the first streamed text piece of a full answer (what a user waits for).
- decode: (generated tokens - 1) / (time of last piece - time of first piece).

Results go to bench/results/generation.json and .md. The CPU is shared with other work, so the load average at
the start is recorded with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
QUESTION = "Which papers propose faster vision-and-language models, and how much faster are they?"


def build_messages(target_tokens: int) -> list[dict[str, str]]:
    """System + user turn shaped like the answer stage's, with sources added until ~`target_tokens`."""
    from rag.corpus import load_corpus
    from rag.prompts import ANSWER_PROMPT, SOURCE_TEMPLATE, SYSTEM_PROMPT
    from rag.settings import BUNDLED_CORPUS_DIR

    papers = load_corpus([BUNDLED_CORPUS_DIR]).papers
    blocks: list[str] = []
    chars_per_token = 5.0  # English prose in Qwen's tokenizer; the real count is measured and reported
    budget = target_tokens * chars_per_token - len(SYSTEM_PROMPT) - len(ANSWER_PROMPT) - len(QUESTION)
    for number, paper in enumerate(papers, start=1):
        sentences = paper.abstract.split(". ")
        passage = ". ".join(sentences[:2])
        authors = f" ({', '.join(paper.authors[:3])})" if paper.authors else ""
        block = SOURCE_TEMPLATE.format(number=number, title=paper.title, authors=authors, passage=passage)
        if sum(len(b) + 2 for b in blocks) + len(block) > budget:
            break
        blocks.append(block)
    user = ANSWER_PROMPT.format(sources="\n\n".join(blocks), question=QUESTION)
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def measure_one(size: str, runs: int, prompt_tokens: int, max_tokens: int, threads: int | None) -> dict:
    """All figures for one model size, measured in this process."""
    from rag.generate import load_llama
    from rag.models import generator_model_path
    from rag.settings import Settings

    date, load_average = time.strftime("%Y-%m-%d %H:%M"), os.getloadavg()[0]
    settings = Settings(model_size=size, n_threads=threads)
    path = generator_model_path(settings)
    messages = build_messages(prompt_tokens)

    started = time.perf_counter()
    llm = load_llama(path, settings)
    load_s = time.perf_counter() - started

    prefill, first_token, decode, generated, prompt_counts = [], [], [], [], []
    for _ in range(runs):
        llm.reset()
        started = time.perf_counter()
        result = llm.create_chat_completion(messages=messages, max_tokens=1, temperature=0.0)
        elapsed = time.perf_counter() - started
        prompt_counts.append(result["usage"]["prompt_tokens"])
        prefill.append(result["usage"]["prompt_tokens"] / elapsed)

        llm.reset()
        times = []
        started = time.perf_counter()
        for chunk in llm.create_chat_completion(messages=messages, max_tokens=max_tokens, temperature=0.0, stream=True):
            if chunk["choices"][0]["delta"].get("content"):
                times.append(time.perf_counter() - started)
        tokens = llm.n_tokens - prompt_counts[-1]
        generated.append(tokens)
        first_token.append(times[0])
        if tokens > 1 and times[-1] > times[0]:
            decode.append((tokens - 1) / (times[-1] - times[0]))

    return {
        "model": path.name,
        "size": size,
        "n_threads": settings.generation.n_threads or os.cpu_count(),
        "n_ctx": settings.generation.context_window,
        "runs": runs,
        "prompt_tokens": prompt_counts[0],
        "generated_tokens_median": statistics.median(generated),
        "load_s": round(load_s, 2),
        "prefill_tok_s": round(statistics.median(prefill), 1),
        "first_token_s": round(statistics.median(first_token), 2),
        "decode_tok_s": round(statistics.median(decode), 1) if decode else None,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "max_tokens": max_tokens,
        "date": date,
        "load_average_1m": round(load_average, 1),
    }


def run_child(size: str, args: argparse.Namespace) -> dict:
    """Measure one size in a fresh interpreter, so load time and peak memory are that model's alone."""
    command = [sys.executable, __file__, "--child", size, "--runs", str(args.runs)]
    command += ["--prompt-tokens", str(args.prompt_tokens), "--max-tokens", str(args.max_tokens)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    output = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return json.loads(output.strip().splitlines()[-1])


def write_results(rows: list[dict]) -> None:
    """Write both files; rows of sizes not measured this time are kept from the previous results."""
    import llama_cpp

    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "generation.json"
    previous = json.loads(path.read_text())["results"] if path.is_file() else []
    measured = {row["size"] for row in rows}
    rows = [row for row in previous if row["size"] not in measured] + rows
    rows.sort(key=lambda row: row["size"], reverse=True)  # 1.5b first
    meta = {
        "backend": "llama_cpp",
        "llama_cpp_python": llama_cpp.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "temperature": 0.0,
    }
    path.write_text(json.dumps({"meta": meta, "results": rows}, indent=2) + "\n")
    columns = ("model", "date", "load_average_1m", "n_threads", "runs", "prompt_tokens", "load_s")
    columns += ("prefill_tok_s",)
    columns += ("first_token_s", "decode_tok_s", "generated_tokens_median", "peak_rss_mib")
    header = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    lines = ["| " + " | ".join(str(row.get(column)) for column in columns) + " |" for row in rows]
    text = (
        "# Generation speed (llama.cpp, CPU)\n\n"
        f"`bench/generation.py`, llama-cpp-python {meta['llama_cpp_python']}, {meta['cpu_count']} CPU cores "
        "shared with other work (the 1-minute load average at the start of each row is given), greedy, "
        "median of `runs` runs, each from an empty KV cache.\n\n"
    )
    (RESULTS / "generation.md").write_text(text + header + "\n".join(lines) + "\n")
    print(text + header + "\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["1.5b", "0.5b"], choices=["1.5b", "0.5b"])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--prompt-tokens", type=int, default=700, help="Approximate prompt length.")
    parser.add_argument("--max-tokens", type=int, default=128, help="Cap on generated tokens per run.")
    parser.add_argument(
        "--threads", type=int, help="llama.cpp threads (default: Settings.generation.n_threads, i.e. all cores)."
    )
    parser.add_argument("--child", choices=["1.5b", "0.5b"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        row = measure_one(args.child, args.runs, args.prompt_tokens, args.max_tokens, args.threads)
        print(json.dumps(row))
        return
    for size in args.sizes:  # written after each size, so a long run that is cut short keeps what it has
        write_results([run_child(size, args)])


if __name__ == "__main__":
    main()
