"""The `rag` command: one-line errors with a non-zero exit, JSON output carrying the Answer's fields."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from rag.cli import main


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run `python -m rag.cli` in a subprocess, as a user would, and capture what they would see."""
    return subprocess.run(
        [sys.executable, "-m", "rag.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def test_help_lists_every_command():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("ingest", "ask", "search", "chat", "eval"):
        assert command in result.stdout


@pytest.mark.parametrize("question", ["", "   \n\t  "])
def test_empty_question_is_a_one_line_error(question, capsys):
    assert main(["ask", question]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rag: error:") and "empty" in err
    assert "\n" not in err


def test_huge_question_is_refused_without_loading_anything(capsys):
    assert main(["ask", "x" * 100_000]) == 2
    err = capsys.readouterr().err
    assert "100000 characters" in err and "Traceback" not in err


def test_ask_on_a_terminal_says_when_the_streamed_draft_is_withdrawn(monkeypatch, capsys):
    from rag import cli
    from rag.types import Answer, Restart

    class RestartingBot:
        def ask_stream(self, question, k=None, filters=None):
            yield "withdrawn draft"
            yield Restart(reason="Asking again with every paper.")
            yield "kept answer [1]."
            yield Answer(question=question, text="kept answer.", declined=False)

    monkeypatch.setattr(cli, "_bot", lambda args: RestartingBot())
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert main(["ask", "How fast is FPN?"]) == 0
    out = capsys.readouterr().out
    assert out.index("withdrawn draft") < out.index("(Asking again with every paper.)") < out.index("kept answer [1].")
    assert "Verified answer:\nkept answer.\n" in out


def test_unknown_backend_in_environment_is_one_line():
    result = run_cli("ask", "what is FPN?", env={"RAG_BACKEND": "gpt-17"})
    assert result.returncode == 2
    assert result.stderr.startswith("rag: error: invalid setting generation.backend")  # named by its stage
    assert "Traceback" not in result.stderr


def test_missing_corpus_path_is_one_line(tmp_path, settings):
    result = run_cli(
        "ingest",
        str(tmp_path / "nope.jsonl"),
        "--data-dir",
        str(tmp_path / "data"),
        env={"RAG_EMBEDDING_MODEL": str(settings.index.embedding_model)},
    )
    assert result.returncode == 2
    assert "nope.jsonl" in result.stderr and "Traceback" not in result.stderr


def test_ingest_search_and_ask_json_over_a_small_corpus(tmp_path, settings, papers):
    corpus = tmp_path / "papers.jsonl"
    corpus.write_text(
        "\n".join(
            json.dumps({"id": paper.id, "title": paper.title, "text": paper.abstract, "authors": paper.authors})
            for paper in papers
        )
    )
    env = {
        "RAG_EMBEDDING_MODEL": str(settings.index.embedding_model),
        "RAG_DATA_DIR": str(tmp_path / "data"),
        "RAG_RETRIEVAL_MODE": "lexical",  # the tiny test embedder is random; BM25 decides the ranking here
    }
    ingest = run_cli("ingest", str(corpus), env=env)
    assert ingest.returncode == 0, ingest.stderr
    assert "unique papers 5" in ingest.stdout
    assert "indexed 5/5 papers" in ingest.stderr  # not a terminal: progress lines, on stderr only

    again = run_cli("ingest", str(corpus), env=env)
    assert "chunks added 0" in again.stdout and "papers skipped (unchanged) 5" in again.stdout

    search = run_cli("search", "signal-to-noise ratio distance metric", "--json", "--k", "3", env=env)
    assert search.returncode == 0, search.stderr
    hits = json.loads(search.stdout)
    assert hits[0]["paper"]["id"] == "snr-metric"

    ask = run_cli(
        "ask",
        "Which distance metric is based on the signal-to-noise ratio?",
        "--json",
        "--backend",
        "extractive",
        env=env,
    )
    assert ask.returncode == 0, ask.stderr
    answer = json.loads(ask.stdout)
    for field in ("text", "citations", "sources", "declined", "timings", "sentences"):
        assert field in answer
    assert not answer["declined"]
    assert answer["citations"] and answer["citations"][0]["paper_id"] == "snr-metric"
    numbers = {source["number"] for source in answer["sources"]}
    assert all(citation["number"] in numbers for citation in answer["citations"])


def test_a_named_collection_that_holds_no_papers_is_a_one_line_error_and_is_not_created(
    tmp_path, settings, capsys, monkeypatch
):
    """A mistyped name would otherwise be filled from the default corpus and answered from it."""
    from rag import collections

    common = ["--data-dir", str(tmp_path / "data")]
    monkeypatch.setenv("RAG_EMBEDDING_MODEL", str(settings.index.embedding_model))
    for command in (["ask", "What is FPN?"], ["search", "FPN"], ["check", "FPN is fast."]):
        assert main([*command, "--collection", "mistyped", *common]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("rag: error: The collection 'mistyped' does not exist") and "rag ingest" in err
        assert "\n" not in err
    assert all(info.name != "mistyped" for info in collections(settings.with_changes(data_dir=tmp_path / "data")))


def test_an_ingest_that_reads_no_paper_fails_and_creates_no_collection(tmp_path, settings, capsys, monkeypatch):
    from rag import collections

    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"title": "cut off"\n')
    monkeypatch.setenv("RAG_EMBEDDING_MODEL", str(settings.index.embedding_model))
    data = ["--data-dir", str(tmp_path / "data")]
    assert main(["ingest", str(broken), "--collection", "broken-one", *data]) == 2
    err = capsys.readouterr().err
    assert f"{broken}:1: invalid JSON" in err and "rag: error: no paper could be read" in err
    assert "Traceback" not in err
    assert all(info.name != "broken-one" for info in collections(settings.with_changes(data_dir=tmp_path / "data")))


class ProgressBot:
    """Stands in for `Bot.ingest`: reports 0..total papers in steps, as the index does, then its report."""

    def __init__(self, total: int, step: int):
        self.total, self.step = total, step

    def ingest(self, paths, progress=None):
        from rag import IngestProgress, IngestReport

        for done in [0, *range(self.step, self.total, self.step), self.total]:
            eta = (self.total - done) / 50 if done else None
            progress(IngestProgress(done=done, total=self.total, seconds=done / 50, rate=50 if done else 0, eta_s=eta))
        return IngestReport(papers=self.total, chunks_added=self.total)


def test_ingest_progress_is_one_redrawn_line_on_a_terminal(monkeypatch, capsys):
    from rag import cli

    monkeypatch.setattr(cli, "_bot", lambda args: ProgressBot(total=10_000, step=1_200))
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(["ingest", "lib.bib"]) == 0
    captured = capsys.readouterr()
    assert "\rindexed 1,200/10,000 papers · 50/s · ETA 3 min\x1b[K" in captured.err
    assert captured.err.endswith("\rindexed 10,000/10,000 papers · 50/s\x1b[K\n")
    assert captured.err.count("\n") == 1  # one line, redrawn
    assert "indexed" not in captured.out and "unique papers 10000" in captured.out


def test_ingest_progress_off_a_terminal_is_a_line_every_tenth_and_json_stays_clean(monkeypatch, capsys):
    from rag import cli

    monkeypatch.setattr(cli, "_bot", lambda args: ProgressBot(total=1_000, step=7))
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert main(["ingest", "lib.bib", "--json"]) == 0
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 10 and "\r" not in captured.err
    assert lines[0].startswith("indexed 105/1,000 papers") and lines[-1] == "indexed 1,000/1,000 papers · 50/s"
    assert json.loads(captured.out)["papers"] == 1_000  # stdout holds the report only


def test_a_reader_that_stops_early_is_not_an_error():
    """`rag search ... --json | head`: the closed pipe ends the command quietly, without a traceback."""
    import subprocess
    import sys

    code = "import sys; from rag.cli import _run\ndef command():\n    raise BrokenPipeError\nsys.exit(_run(command))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    assert done.stderr == ""
