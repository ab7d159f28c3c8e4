"""Bounded load test of the chat: N concurrent sessions asking through the running app's HTTP API.

    .venv/bin/python bench/load.py                          # 16 sessions, 150 s, extractive backend
    .venv/bin/python bench/load.py --sessions 4 --duration 60 --backend llama_cpp

The chat server runs in a child process (`--serve`, the same `ui.app.launch` as `rag chat`) on a free loopback
port, with a fresh data folder (the bundled pages are indexed at start-up) unless `--data-dir` is given. Each
session is its own `gradio_client.Client` (its own server-side state), asks a question, streams the answer,
then asks a follow-up with the chat history, three turns per conversation, for `--duration` seconds; the
answers in flight then finish. What is checked and reported:

- errors: client exceptions, answers shown as an error message, or answers with no text;
- lost answers: questions submitted that never came back (within `--answer-timeout`);
- throughput (answers per minute), p50/p95 latency (submit -> final answer, queue wait included) and time
  to the first streamed text;
- server memory: RSS sampled every second; start (after warm-up), end, peak, and the drift per minute
  over the run (flat memory ~ 0).

Results go to bench/results/load.json and load.md. The CPU is shared, so the load average is recorded too.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

CONVERSATIONS = [
    ["How does ViLT process images without convolutions?", "How much faster is it than earlier models?"],
    ["Which papers propose a new distance metric for deep metric learning?", "What benchmarks do they use?"],
    ["What do feature pyramid networks add to object detection?", "How fast does it run?"],
    ["Which papers add noise to gradients, and why does it help?", "Which networks does it help most?"],
    ["How does ArcFace deal with label noise in face recognition?", "What are sub-centers?"],
    ["What is a triplet network?", "What does it compare against?"],
]
"""(question, follow-up) pairs answerable from the bundled pages; each session cycles through them."""

CURSOR = re.compile(r'<span class="cursor">.*?</span>')


@dataclass
class Sample:
    session: int
    question: str
    submitted: float
    first_text_s: float | None = None
    latency_s: float | None = None
    ok: bool = False
    problem: str | None = None


@dataclass
class MemoryTrace:
    times: list[float] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mib(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process in MiB, from /proc."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0]) / 1024
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


# --- server side ---------------------------------------------------------------------------------
def serve(args: argparse.Namespace) -> None:
    """Child process: the chat exactly as `rag chat` runs it, with the benchmark's settings."""
    from rag import Settings
    from ui.app import launch

    overrides: dict = {
        "data_dir": Path(args.data_dir),
        "backend": args.backend,
        "ui_port": args.port,
        "ui_concurrency": args.concurrency,
    }
    if args.backend != "extractive":
        from rag.models import generator_model_path

        overrides["model_path"] = generator_model_path(Settings())  # the cached default, not re-assembled
    launch(Settings(**overrides), quiet=True)


def start_server(args: argparse.Namespace, data_dir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [
        sys.executable,
        __file__,
        "--serve",
        f"--port={port}",
        f"--backend={args.backend}",
        f"--concurrency={args.concurrency}",
        f"--data-dir={data_dir}",
    ]
    log = open(RESULTS / "load-server.log", "w")  # noqa: SIM115 - lives as long as the child
    server = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    return server, f"http://127.0.0.1:{port}/"


def wait_until_up(url: str, server: subprocess.Popen, timeout_s: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"server exited with {server.returncode}; see bench/results/load-server.log")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise SystemExit(f"server not up after {timeout_s:.0f} s")


# --- client side ---------------------------------------------------------------------------------
def answer_text(chat: list[dict]) -> str:
    """Text of the last assistant message as the API returns it (content is a list of text parts)."""
    if not chat or chat[-1].get("role") != "assistant":
        return ""
    content = chat[-1].get("content")
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content or "")


def ask(client, question: str, chat: list, k: int, sample: Sample, timeout_s: float) -> list:
    """Submit one question, stream it, fill `sample`; returns the chat history to continue with."""
    job = client.submit(question, chat, k, "", "", "", api_name="/chat")
    final_chat = chat
    for outputs in job:
        streamed = CURSOR.sub("", answer_text(outputs[1])).strip()
        if sample.first_text_s is None and streamed and 'class="waiting"' not in streamed:
            sample.first_text_s = time.monotonic() - sample.submitted
        if time.monotonic() - sample.submitted > timeout_s:
            job.cancel()
            sample.problem = f"no answer within {timeout_s:.0f} s"
            return chat
    result = job.result(timeout=timeout_s)
    sample.latency_s = time.monotonic() - sample.submitted
    final_chat = result[1]
    text = answer_text(final_chat)
    if 'class="error"' in text:
        sample.problem = "error shown: " + re.sub(r"<[^>]+>", "", text)[:200]
    elif not re.sub(r"<[^>]+>", "", text).strip():
        sample.problem = "empty answer"
    else:
        sample.ok = True
    return final_chat


def run_session(
    number: int,
    url: str,
    args: argparse.Namespace,
    stop_at: float,
    samples: list[Sample],
    lock: threading.Lock,
) -> None:
    from gradio_client import Client

    client = Client(url, verbose=False, download_files=False)
    conversation = CONVERSATIONS[number % len(CONVERSATIONS)]
    turn = 0
    chat: list = []
    while time.monotonic() < stop_at:
        question = conversation[turn % len(conversation)]
        sample = Sample(session=number, question=question, submitted=time.monotonic())
        with lock:
            samples.append(sample)
        try:
            chat = ask(client, question, chat, args.k, sample, args.answer_timeout)
        except Exception as error:  # a benchmark records failures instead of dying on the first one
            sample.problem = f"{type(error).__name__}: {error}"[:300]
        turn += 1
        if turn % 3 == 0:  # a new conversation every three turns, so histories stay realistic
            chat = []
            conversation = CONVERSATIONS[(number + turn) % len(CONVERSATIONS)]


def sample_memory(pid: int, trace: MemoryTrace, stop: threading.Event) -> None:
    started = time.monotonic()
    while not stop.is_set():
        try:
            current, _ = rss_mib(pid)
        except FileNotFoundError:
            return
        trace.times.append(time.monotonic() - started)
        trace.rss_mib.append(current)
        stop.wait(1.0)


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def drift_per_minute(trace: MemoryTrace) -> float | None:
    """Least-squares slope of RSS over time, in MiB per minute."""
    if len(trace.times) < 3:
        return None
    mean_t, mean_r = statistics.fmean(trace.times), statistics.fmean(trace.rss_mib)
    covariance = sum((t - mean_t) * (r - mean_r) for t, r in zip(trace.times, trace.rss_mib, strict=True))
    variance = sum((t - mean_t) ** 2 for t in trace.times)
    return covariance / variance * 60 if variance else None


def second_half(trace: MemoryTrace) -> MemoryTrace:
    """The later half of the trace: start-up growth (allocator arenas, caches) is over by then."""
    middle = len(trace.times) // 2
    return MemoryTrace(trace.times[middle:], trace.rss_mib[middle:])


def run(args: argparse.Namespace) -> dict:
    RESULTS.mkdir(parents=True, exist_ok=True)
    own_data = args.data_dir is None
    data_dir = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="rag-load-"))
    server, url = start_server(args, data_dir)
    try:
        wait_until_up(url, server, timeout_s=180)
        from gradio_client import Client

        warm = Sample(session=-1, question=CONVERSATIONS[0][0], submitted=time.monotonic())
        ask(Client(url, verbose=False, download_files=False), warm.question, [], args.k, warm, 900)
        if not warm.ok:
            raise SystemExit(f"warm-up question failed: {warm.problem}")
        print(f"warm (index + models ready) after the first answer in {warm.latency_s:.1f} s", flush=True)

        trace, stop_memory = MemoryTrace(), threading.Event()
        memory_thread = threading.Thread(target=sample_memory, args=(server.pid, trace, stop_memory), daemon=True)
        memory_thread.start()
        samples: list[Sample] = []
        lock = threading.Lock()
        load_before = os.getloadavg()
        started = time.monotonic()
        stop_at = started + args.duration
        sessions = [
            threading.Thread(target=run_session, args=(n, url, args, stop_at, samples, lock), daemon=True)
            for n in range(args.sessions)
        ]
        for thread in sessions:
            thread.start()
        for thread in sessions:
            thread.join(timeout=args.duration + args.answer_timeout + 60)
        wall = time.monotonic() - started
        stop_memory.set()
        memory_thread.join()
        _, peak = rss_mib(server.pid)
        load_after = os.getloadavg()
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        if own_data:
            shutil.rmtree(data_dir, ignore_errors=True)

    answered = [s for s in samples if s.ok]
    failed = [s for s in samples if s.problem]
    lost = [s for s in samples if not s.ok and not s.problem]
    latencies = [s.latency_s for s in answered if s.latency_s is not None]
    first_text = [s.first_text_s for s in answered if s.first_text_s is not None]
    return {
        "backend": args.backend,
        "sessions": args.sessions,
        "ui_concurrency": args.concurrency,
        "k": args.k,
        "duration_s": args.duration,
        "wall_s": round(wall, 1),
        "questions_submitted": len(samples),
        "answers_ok": len(answered),
        "errors": len(failed),
        "lost": len(lost),
        "error_examples": sorted({s.problem for s in failed if s.problem})[:5],
        "answers_per_minute": round(len(answered) / wall * 60, 1),
        "latency_p50_s": _round(percentile(latencies, 0.50)),
        "latency_p95_s": _round(percentile(latencies, 0.95)),
        "latency_max_s": _round(max(latencies, default=None)),
        "first_text_p50_s": _round(percentile(first_text, 0.50)),
        "first_text_p95_s": _round(percentile(first_text, 0.95)),
        "server_rss_start_mib": _round(trace.rss_mib[0] if trace.rss_mib else None),
        "server_rss_end_mib": _round(trace.rss_mib[-1] if trace.rss_mib else None),
        "server_rss_max_sampled_mib": _round(max(trace.rss_mib, default=None)),
        "server_peak_rss_mib": _round(peak),
        "server_rss_drift_mib_per_min": _round(drift_per_minute(trace)),
        "server_rss_drift_second_half_mib_per_min": _round(drift_per_minute(second_half(trace))),
        "server_rss_trace_mib": [round(value) for value in trace.rss_mib[::5]],
        "warmup_first_answer_s": _round(warm.latency_s),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "cpu_count": os.cpu_count(),
        "samples": [asdict(s) | {"submitted": None} for s in samples],
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def write_report(result: dict) -> None:
    (RESULTS / "load.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    rows = [
        ("backend", result["backend"]),
        ("concurrent sessions", result["sessions"]),
        ("answers generated at once (ui_concurrency)", result["ui_concurrency"]),
        ("run", f"{result['duration_s']} s of new questions, {result['wall_s']} s until the last answer"),
        ("questions submitted / answered", f"{result['questions_submitted']} / {result['answers_ok']}"),
        ("errors / lost answers", f"{result['errors']} / {result['lost']}"),
        ("throughput", f"{result['answers_per_minute']} answers/min"),
        (
            "latency p50 / p95 / max",
            f"{result['latency_p50_s']} / {result['latency_p95_s']} / {result['latency_max_s']} s",
        ),
        ("first streamed text p50 / p95", f"{result['first_text_p50_s']} / {result['first_text_p95_s']} s"),
        (
            "server RSS start / end / max sampled",
            f"{result['server_rss_start_mib']} / "
            f"{result['server_rss_end_mib']} / {result['server_rss_max_sampled_mib']} MiB",
        ),
        ("server peak RSS (VmHWM, incl. start-up)", f"{result['server_peak_rss_mib']} MiB"),
        (
            "server RSS drift, whole run / second half",
            f"{result['server_rss_drift_mib_per_min']} / {result['server_rss_drift_second_half_mib_per_min']} MiB/min",
        ),
        (
            "load average before / after",
            f"{result['load_average_before']} / {result['load_average_after']} on {result['cpu_count']} CPUs",
        ),
    ]
    lines = [
        "# Chat load test",
        "",
        "`.venv/bin/python bench/load.py` (sessions ask through the Gradio HTTP API "
        "with gradio_client; latency includes queue wait).",
        "",
        "| measure | value |",
        "| --- | --- |",
    ]
    lines += [f"| {name} | {value} |" for name, value in rows]
    if result["error_examples"]:
        lines += ["", "Errors seen:", ""] + [f"- {example}" for example in result["error_examples"]]
    (RESULTS / "load.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=16, help="concurrent chat sessions")
    parser.add_argument("--duration", type=float, default=150, help="seconds during which new questions are asked")
    parser.add_argument("--backend", default="extractive", help="generator backend of the server")
    parser.add_argument("--concurrency", type=int, default=1, help="answers the server generates at once")
    parser.add_argument("--k", type=int, default=5, help="papers retrieved per question")
    parser.add_argument("--answer-timeout", type=float, default=600, help="seconds before an answer counts lost")
    parser.add_argument("--data-dir", help="server data folder (default: a fresh temporary one)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args)
        return
    result = run(args)
    write_report(result)
    bulky = ("samples", "server_rss_trace_mib")
    summary = {key: value for key, value in result.items() if key not in bulky}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
