"""The `rag` command: ingest, ask, search, chat, eval.

A face on the public API only. Heavy modules load inside the subcommand that needs them, so `rag --help` is
instant. Every error a user can cause prints one line (`rag: error: ...`) and exits non-zero.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130

EXAMPLES = """examples:
  rag ingest                                  index the bundled corpus (also done on first ask/chat)
  rag ingest my_papers.jsonl --collection mine
  rag ingest zotero.bib arxiv-metadata.json    BibTeX, CSL-JSON, arXiv snapshot: told apart by content
                                              (progress on stderr: papers done, rate, ETA; rerun to resume)
  rag search "diffusion models" --year-from 2021 --category cs.LG
  rag ask "Which papers make metric learning robust to noise, and how?"
  rag ask "When were the talks on graph neural networks presented?" --json
  rag search "feature pyramids for detection" --k 5
  rag check "Residual connections slow down training" --json
  rag chat                                    open the chat on http://127.0.0.1:7860
  rag eval --smoke                            score the bot on the question set
environment: every setting can be set as RAG_<NAME> or by its group as RAG_<GROUP>__<NAME>, e.g. RAG_BACKEND=extractive,
  RAG_RETRIEVAL__TOP_K=8, RAG_CHROMA_HOST=localhost (README: Settings).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rag",
        description="Ask questions over machine-learning paper abstracts; every claim cited.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--collection",
        help="Chroma collection to use (default: papers). Only `ingest` creates one; the other commands refuse "
        "a collection that holds no papers.",
    )
    common.add_argument("--data-dir", help="Where the index and models live (default: the user data dir).")
    common.add_argument(
        "--backend",
        choices=["auto", "llama_cpp", "transformers", "openai", "extractive"],
        help="Generator backend (default: auto = llama.cpp if installed, else transformers).",
    )
    filters = argparse.ArgumentParser(add_help=False)
    filters.add_argument("--k", type=int, help="Number of papers to retrieve.")
    filters.add_argument("--source", help="Only papers from source files whose name contains this.")
    filters.add_argument("--session", help="Only papers from sessions whose name contains this.")
    filters.add_argument("--author", help="Only papers with an author whose name contains this.")
    filters.add_argument("--year", type=int, help="Only papers from this year (where known).")
    filters.add_argument("--year-from", type=int, help="Only papers from this year or later (year known).")
    filters.add_argument("--year-to", type=int, help="Only papers from this year or earlier (year known).")
    filters.add_argument("--category", help="Only papers whose arXiv category or venue contains this, e.g. cs.LG.")
    filters.add_argument("--json", action="store_true", help="Print the full result as JSON.")

    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    ingest = commands.add_parser("ingest", parents=[common], help="Parse corpus files and index them.")
    ingest.add_argument(
        "paths",
        nargs="*",
        help="Files or folders: arXiv metadata (JSON lines), BibTeX, CSL-JSON, JSONL, CSV, .txt pages; the format "
        "is read from the content. Default: the bundled pages.",
    )
    ingest.add_argument("--json", action="store_true", help="Print the report as JSON (progress stays on stderr).")
    ask = commands.add_parser("ask", parents=[common, filters], help="Answer a question with citations.")
    ask.add_argument("question")
    check = commands.add_parser(
        "check", parents=[common, filters], help="Which papers support or contradict a claim, with the sentence."
    )
    check.add_argument("claim", help="The claim, as a sentence: 'Strided convolutions can replace max-pooling'.")
    search = commands.add_parser("search", parents=[common, filters], help="Show the most relevant papers.")
    search.add_argument("query")
    chat = commands.add_parser("chat", parents=[common], help="Start the Gradio chat (127.0.0.1 by default).")
    chat.add_argument("--host", help="Address to bind (default 127.0.0.1).")
    chat.add_argument("--port", type=int, help="Port (default 7860).")
    commands.add_parser("eval", help="Score the bot against a question set (see `rag eval --help`).", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "eval":  # the eval face owns its own options
        return _run(lambda: _eval(argv[1:]))
    args = build_parser().parse_args(argv)
    handlers = {"ingest": _ingest, "ask": _ask, "check": _check, "search": _search, "chat": _chat}
    return _run(lambda: handlers[args.command](args))


def _run(command) -> int:
    from pydantic import ValidationError

    from rag import RagError

    try:
        return command() or 0
    except RagError as error:
        print(f"rag: error: {error}", file=sys.stderr)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "settings"
        print(f"rag: error: invalid setting {where}: {first['msg']}", file=sys.stderr)
    except KeyboardInterrupt:
        print("rag: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader stopped early (`rag search ... --json | head`): nothing went wrong here
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush does not fail again
        return 0
    return EXIT_USER_ERROR


def _settings(args: argparse.Namespace):
    from rag import Settings

    overrides = {
        name: value
        for name, value in {
            "collection": getattr(args, "collection", None),
            "data_dir": getattr(args, "data_dir", None),
            "backend": getattr(args, "backend", None),
            "ui_host": getattr(args, "host", None),
            "ui_port": getattr(args, "port", None),
        }.items()
        if value is not None
    }
    return Settings(**overrides)


def _filters(args: argparse.Namespace):
    from rag import Filters

    return Filters(
        source=args.source,
        session=args.session,
        author=args.author,
        year=args.year,
        year_from=args.year_from,
        year_to=args.year_to,
        category=args.category,
    )


def _bot(args: argparse.Namespace):
    """The bot a command runs on: `ingest` may create its collection, the others read an existing one."""
    from rag import Bot

    return Bot(_settings(args) if args.command == "ingest" else _existing_collection(args))


def _existing_collection(args: argparse.Namespace):
    """The settings, checked that a `--collection` other than the default holds papers (`Bot.require_papers`):
    only the default collection fills itself from the bundled corpus."""
    from rag import Bot, Settings

    settings = _settings(args)
    if getattr(args, "collection", None) not in (None, Settings.model_fields["collection"].default):
        Bot(settings).require_papers()
    return settings


class ProgressLine:
    """Ingest progress on stderr: one line redrawn in place on a terminal, else a line every tenth of the way
    (a log file gets ten lines, not thousands). Stdout keeps only the report, so `--json` stays parseable."""

    def __init__(self, stream):
        self.stream = stream
        self.tty = stream.isatty()
        self.tenths = 0
        self.open = False  # a redrawn line waits for its newline

    def __call__(self, progress) -> None:
        if not progress.total:
            return  # nothing to write: the report says so
        if self.tty:
            self.stream.write(f"\r{progress.summary()}\x1b[K")
            self.open = progress.done < progress.total
            self.stream.write("" if self.open else "\n")
            self.stream.flush()
            return
        tenths = progress.done * 10 // progress.total
        if tenths > self.tenths:
            self.tenths = tenths
            print(progress.summary(), file=self.stream, flush=True)

    def close(self) -> None:
        """End a line left open by an interrupted ingest, so the error that follows starts on its own line."""
        if self.open:
            self.stream.write("\n")
            self.open = False


def _ingest(args: argparse.Namespace) -> int:
    line = ProgressLine(sys.stderr)
    try:
        report = _bot(args).ingest(args.paths or None, progress=line)
    finally:
        line.close()
    unreadable = not report.papers and bool(report.problems)
    if args.json:
        print(report.model_dump_json(indent=2))
        return EXIT_USER_ERROR if unreadable else 0
    print(
        f"files {report.files} · entries parsed {report.entries} · unique papers {report.papers} · "
        f"chunks added {report.chunks_added} · papers skipped (unchanged) {report.papers_skipped} · "
        f"replaced {report.papers_replaced} · without abstract {report.missing_abstracts} · {report.seconds:.1f} s"
    )
    for problem in report.problems:
        print(f"warning: {problem}", file=sys.stderr)
    if unreadable:
        print("rag: error: no paper could be read from the files given (see the warnings above).", file=sys.stderr)
        return EXIT_USER_ERROR
    return 0


def _ask(args: argparse.Namespace) -> int:
    from rag import Answer, Restart

    bot = _bot(args)
    stream_tokens = not args.json and sys.stdout.isatty()
    answer = None
    for item in bot.ask_stream(args.question, k=args.k, filters=_filters(args)):
        if isinstance(item, Answer):
            answer = item
        elif not stream_tokens:
            continue
        elif isinstance(item, Restart):
            print(f"\n({item.reason})\n", flush=True)
        else:
            print(item, end="", flush=True)
    if args.json:
        print(answer.model_dump_json(indent=2))
        return 0
    if stream_tokens:
        print("\n")  # the streamed draft stays visible; the verified answer follows
        print("Verified answer:")
    print(answer.text)
    print()
    print(format_sources(answer))
    return 0


def format_sources(answer) -> str:
    """Cited papers first, then the other retrieved ones, one line each."""
    cited = {citation.number for citation in answer.citations}
    heading = "Closest papers:" if answer.declined else "Sources:"
    lines = [heading]
    for source in answer.sources:
        marker = "*" if source.number in cited else " "
        authors = ", ".join(source.paper.authors[:3]) + (" et al." if len(source.paper.authors) > 3 else "")
        lines.append(f" {marker}[{source.number}] {source.paper.title}" + (f" — {authors}" if authors else ""))
    timings = answer.timings
    if timings:
        first, total = timings.get("first_token", 0.0), timings.get("total", 0.0)
        lines.append(f"({answer.backend}; first token {first:.1f} s, total {total:.1f} s)")
    return "\n".join(lines)


def _check(args: argparse.Namespace) -> int:
    result = _bot(args).check(args.claim, k=args.k, filters=_filters(args))
    if args.json:
        print(json.dumps(result.as_json(), indent=2, ensure_ascii=False))
        return 0
    print(format_check(result))
    return 0


def format_check(result) -> str:
    """The verdict, then the papers grouped by what they say, each with its deciding sentence quoted."""
    lines = [result.summary()]
    if not result.papers:
        lines.append("No paper in the collection is about this claim.")
    for heading, papers in result.groups():
        lines.append(f"\n{heading}:")
        lines += [f" [{paper.number}] {paper.title}\n      “{paper.sentence}”" for paper in papers]
    return "\n".join(lines)


def _search(args: argparse.Namespace) -> int:
    sources = _bot(args).search(args.query, k=args.k, filters=_filters(args))
    if args.json:
        print(json.dumps([source.model_dump(mode="json") for source in sources], indent=2))
        return 0
    if not sources:
        print("No papers match.")
    for source in sources:
        print(f"[{source.number}] {source.score:.3f}  {source.paper.title}")
        if source.paper.authors:
            print(f"      {', '.join(source.paper.authors)}")
    return 0


def _chat(args: argparse.Namespace) -> int:
    from ui.app import launch

    launch(_existing_collection(args))
    return 0


def _eval(argv: list[str]) -> int:
    from eval.cli import main as eval_main

    return eval_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
