"""The eval harness: scoring rules on hand-made results, resuming, reports, comparison, the smoke floors.

Most tests drive the harness with `FakeBot`, which has the public surface the harness uses (`settings`,
`ask_stream`, `search`) and answers from a script, so each rule is checked on known inputs. One test runs a
real `Bot` (tiny embedder, extractive backend) end to end through `rag eval`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import rag
from eval import cli as eval_cli
from eval.harness import (
    EvalQuestion,
    QuestionSetError,
    ResultLog,
    load_questions,
    run_questions,
    select_questions,
    settings_summary,
)
from eval.metrics import (
    OVERALL,
    Scored,
    SourceView,
    Verdicts,
    aggregate,
    cited_numbers,
    judge,
    missing_groups,
    satisfies,
)
from eval.report import (
    COMPARISON_MD,
    LATENCY_PNG,
    METRICS_PNG,
    REPORT_MD,
    RESULTS_JSON,
    build_report,
    load_run,
    write_comparison,
    write_report,
)
from rag import Answer, Citation, Paper, QuestionError, Settings, Source

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

SNR = "Signal-to-Noise Ratio: A Robust Distance Metric for Deep Metric Learning"
FPN = "Feature Pyramid Networks for Object Detection"
VILT = "ViLT: Vision-and-Language Transformer Without Convolution or Region Supervision"
ABSTRACTS = {
    SNR: "We propose a robust SNR distance metric. Experiments on CARS196 and CUB200-2011.",
    FPN: "A top-down architecture with lateral connections. FPN runs at 5 FPS on a GPU.",
    VILT: "ViLT is up to tens of times faster than previous VLP models.",
}


# --- the must_include rule --------------------------------------------------------------------------------
def test_must_include_is_case_insensitive_and_accepts_any_alternative():
    groups = [["signal-to-noise", "SNR"], ["CARS196"]]
    assert satisfies("They use an snr distance, tested on cars196 [1].", groups)
    assert satisfies("A SIGNAL-TO-NOISE metric; CARS196.", groups)
    assert not satisfies("A robust distance metric on CARS196.", groups)
    assert missing_groups("A robust distance metric on CUB.", groups) == groups
    assert satisfies("anything at all", [])


def test_must_include_ignores_whitespace_differences_but_needs_the_whole_phrase():
    assert satisfies("runs at 5\nFPS", [["5 FPS"]])
    assert not satisfies("runs at 5 frames", [["5 FPS"]])


def test_cited_numbers_reads_single_and_grouped_markers_once_each():
    assert cited_numbers("A [2]. B [1, 3]. C [2][4]; no [x] or [ ].") == [2, 1, 3, 4]


# --- verdicts of one question -----------------------------------------------------------------------------
def views(*titles: str) -> list[SourceView]:
    return [
        SourceView(number=i, title=title, paper_id=f"p{i}", text=f"{title}\n{ABSTRACTS.get(title, '')}")
        for i, title in enumerate(titles, start=1)
    ]


def test_judge_answerable_question_with_correct_supported_citation():
    sources = views(FPN, SNR)
    verdicts = judge(
        gold_titles=["signal-to-noise ratio: a robust distance metric for deep metric learning"],  # case, punctuation
        must_include=[["SNR", "signal-to-noise"]],
        retrieved_titles=[s.title for s in sources],
        k=5,
        answer_text="It uses an SNR distance metric [2].",
        declined=False,
        cited=[2],
        sources=sources,
    )
    assert verdicts.correct and verdicts.fact_correct
    assert verdicts.recall_at_k == 1.0 and verdicts.reciprocal_rank == 0.5
    assert verdicts.citations_valid and verdicts.cited_gold == 1.0 and verdicts.cited_supports_fact


def test_judge_flags_invalid_mislabelled_and_unsupported_citations():
    sources = views(FPN, SNR)

    def judge_snr_answer(answer_text: str, cited: list[int], **extra):
        return judge(
            gold_titles=[SNR],
            must_include=[["SNR"]],
            retrieved_titles=[FPN, SNR],
            k=5,
            answer_text=answer_text,
            declined=False,
            cited=cited,
            sources=sources,
            **extra,
        )

    made_up = judge_snr_answer("SNR [7].", [7])
    assert made_up.citations_valid is False and made_up.invalid_citations == [7]
    mislabelled = judge_snr_answer("SNR [1].", [1], cited_paper_ids={1: "p2"})
    assert mislabelled.invalid_citations == [1]
    wrong_paper = judge_snr_answer("SNR [1].", [1])
    assert wrong_paper.fact_correct  # the fact is in the answer...
    assert wrong_paper.citations_valid  # ...the citation names a real source...
    assert wrong_paper.cited_gold == 0.0 and wrong_paper.cited_supports_fact is False  # ...but the wrong one


def test_judge_refusals_and_missing_gold():
    declined_answerable = judge(
        gold_titles=[SNR],
        must_include=[["SNR"]],
        retrieved_titles=[FPN],
        k=5,
        answer_text="The collection does not say.",
        declined=True,
        sources=views(FPN),
    )
    assert declined_answerable.correct is False and declined_answerable.recall_at_k == 0.0
    declined_unanswerable = judge(
        gold_titles=[],
        must_include=[],
        retrieved_titles=[FPN],
        k=5,
        answer_text="The collection does not say.",
        declined=True,
    )
    assert declined_unanswerable.should_decline and declined_unanswerable.correct
    assert declined_unanswerable.recall_at_k is None and declined_unanswerable.fact_correct is None
    answered_unanswerable = judge(
        gold_titles=[], must_include=[], retrieved_titles=[FPN], k=5, answer_text="FPN [1].", declined=False
    )
    assert answered_unanswerable.correct is False


def test_judge_retrieval_only_leaves_answer_verdicts_empty():
    verdicts = judge(gold_titles=[VILT, FPN], must_include=[["x"]], retrieved_titles=[FPN, SNR, VILT], k=2)
    assert verdicts.recall_at_k == 0.5 and verdicts.reciprocal_rank == 1.0
    assert verdicts.correct is None and verdicts.declined is None and verdicts.citations_valid is None


# --- aggregation ------------------------------------------------------------------------------------------
def scored(kind: str, first: float, total: float, **verdicts) -> Scored:
    return Scored(type=kind, verdicts=Verdicts(**verdicts), first_token=first, total=total)


def test_aggregate_per_type_and_overall_on_hand_made_results():
    items = [
        scored("detail", 1.0, 2.0, should_decline=False, declined=False, correct=True, fact_correct=True,
               recall_at_k=1.0, reciprocal_rank=1.0, citations_valid=True, cited_gold=1.0),
        scored("detail", 3.0, 4.0, should_decline=False, declined=False, correct=False, fact_correct=False,
               recall_at_k=0.0, reciprocal_rank=0.0, citations_valid=False, cited_gold=0.0),
        scored("detail", 2.0, 6.0, should_decline=False, declined=True, correct=False, fact_correct=False,
               recall_at_k=1.0, reciprocal_rank=0.5, citations_valid=True),
        scored("unanswerable", 0.5, 0.5, should_decline=True, declined=True, correct=True,
               citations_valid=True),
        scored("unanswerable", 1.0, 8.0, should_decline=True, declined=False, correct=False,
               citations_valid=True),
    ]  # fmt: skip
    metrics = aggregate(items)
    assert list(metrics) == ["detail", "unanswerable", OVERALL]
    detail, unanswerable, overall = metrics["detail"], metrics["unanswerable"], metrics[OVERALL]
    assert detail.n == 3 and detail.fact_accuracy == pytest.approx(1 / 3)
    assert detail.recall_at_k == pytest.approx(2 / 3) and detail.mrr == pytest.approx(0.5)
    assert detail.citation_validity == pytest.approx(0.5)  # only answers that were not declined count
    assert detail.refusal_precision == 0.0 and detail.refusal_recall is None
    assert unanswerable.refusal_recall == 0.5 and unanswerable.fact_accuracy is None
    assert overall.refusal_precision == 0.5 and overall.refusal_recall == 0.5
    assert overall.accuracy == pytest.approx(2 / 5)
    assert overall.total_p50 == 4.0 and detail.first_token_p50 == 2.0
    assert overall.total_p95 == pytest.approx(7.6)  # linear interpolation between 6 and 8


# --- the question file ------------------------------------------------------------------------------------
def write_questions(path: Path, rows: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n", encoding="utf-8")
    return path


QUESTIONS = [
    {"id": "q1", "type": "known_item", "question": "Which paper proposes an SNR distance metric?",
     "gold_titles": [SNR], "must_include": [["SNR", "signal-to-noise"]], "smoke": True},
    {"id": "q2", "type": "detail", "question": "How fast does FPN run?",
     "gold_titles": [FPN], "must_include": [["5 FPS"]]},
    {"id": "q3", "type": "unanswerable", "question": "What is the capital of Mongolia?",
     "gold_titles": [], "must_include": [], "smoke": True},
]  # fmt: skip


def test_load_questions_reads_file_and_selects(tmp_path):
    path = write_questions(tmp_path / "q.jsonl", QUESTIONS)
    questions = load_questions(path)
    assert [q.id for q in questions] == ["q1", "q2", "q3"]
    assert [q.id for q in select_questions(questions, smoke=True)] == ["q1", "q3"]
    assert [q.id for q in select_questions(questions, types=["detail", "unanswerable"])] == ["q2", "q3"]
    assert [q.id for q in select_questions(questions, limit=1)] == ["q1"]


def test_a_set_without_smoke_marks_gives_the_first_questions_of_each_type(tmp_path):
    unmarked = [{**question, "smoke": False} for question in QUESTIONS]
    more = [{**QUESTIONS[1], "id": f"d{n}"} for n in range(3)]  # three more detail questions
    questions = load_questions(write_questions(tmp_path / "q.jsonl", [*unmarked, *more]))
    assert [q.id for q in select_questions(questions, smoke=True)] == ["q1", "q2", "q3", "d0"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"id": "a", "type": "detail", "question": "x"}\n{not json\n', "q.jsonl:2:"),
        ('{"id": "a", "type": "trivia", "question": "x"}\n', "q.jsonl:1: type"),
        ('{"id": "a", "type": "detail", "question": "x"}\n{"id": "a", "type": "detail", "question": "y"}\n',
         "duplicate question id 'a'"),
        ("\n", "has no questions"),
    ],
)  # fmt: skip
def test_bad_question_files_give_one_line_errors(tmp_path, content, message):
    path = tmp_path / "q.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(QuestionSetError, match=message) as caught:
        load_questions(path)
    assert "\n" not in str(caught.value)
    with pytest.raises(QuestionSetError, match="not found"):
        load_questions(tmp_path / "missing.jsonl")


# --- the harness with a scripted bot ----------------------------------------------------------------------
def paper(title: str) -> Paper:
    return Paper(id=title[:12].lower(), title=title, abstract=ABSTRACTS[title])


SCRIPT = {
    "Which paper proposes an SNR distance metric?": (
        [SNR, FPN],
        "It proposes an SNR distance metric [1].",
        False,
    ),
    "How fast does FPN run?": ([FPN, VILT], "FPN runs at 5 FPS [1].", False),
    "What is the capital of Mongolia?": ([VILT], "The collection does not say.", True),
}


class FakeBot:
    """Answers from SCRIPT through the same streaming interface as `rag.Bot`; records what it was asked."""

    def __init__(self, settings: Settings, fail_on: str | None = None, script=SCRIPT):
        self.settings = settings
        self.asked: list[str] = []
        self.fail_on = fail_on
        self.script = script
        self.warmed = False

    def _sources(self, question: str, k: int) -> list[Source]:
        titles = self.script[question][0][:k]
        return [Source(number=i, paper=paper(t), score=1.0 / i) for i, t in enumerate(titles, start=1)]

    def warm_up(self) -> None:
        self.warmed = True

    def search(self, question: str, k: int | None = None, filters=None) -> list[Source]:
        if question not in self.script:
            return []  # the harness's warm-up query
        self.asked.append(question)
        return self._sources(question, k or self.settings.retrieval.top_k)

    def ask_stream(self, question: str, history=(), k: int | None = None, filters=None):
        self.asked.append(question)
        if question == self.fail_on:
            raise RuntimeError("simulated crash")
        if not question.strip():
            raise QuestionError("The question is empty.")
        sources = self._sources(question, k or self.settings.retrieval.top_k)
        _, text, declined = self.script[question]
        for word in text.split(" "):
            yield word + " "
        citations = [] if declined else [Citation(number=1, paper_id=sources[0].paper_id, title=sources[0].title)]
        yield Answer(question=question, text=text, sources=sources, citations=citations, declined=declined,
                     backend="fake", timings={"generate": 0.01})  # fmt: skip


@pytest.fixture
def fake_settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path / "data", backend="extractive", collection="test")


def test_run_questions_records_answers_verdicts_and_timings(tmp_path, fake_settings):
    questions = load_questions(write_questions(tmp_path / "q.jsonl", QUESTIONS))
    bot = FakeBot(fake_settings)
    results = run_questions(bot, questions, tmp_path / "run", progress=False)
    assert bot.warmed  # warmed up as the chat is, before the first timed question
    assert [r.id for r in results] == ["q1", "q2", "q3"]
    assert all(r.verdicts.correct for r in results)
    first = results[0]
    assert first.answer.startswith("It proposes") and first.citations[0].title == SNR
    assert first.retrieved_titles == [SNR, FPN] and first.backend == "fake"
    assert 0 < first.first_token <= first.total and first.stage_timings == {"generate": 0.01}
    assert results[2].declined and results[2].verdicts.should_decline


def test_first_token_counts_from_the_text_a_restart_keeps(monkeypatch):
    """Text withdrawn by a `Restart` is not what the user keeps: the first token is the first one after it."""
    from eval import harness

    class RestartingBot:
        settings = Settings(backend="extractive")

        def ask_stream(self, question, history=(), k=None, filters=None):
            yield "withdrawn draft"
            yield rag.Restart(reason="asking again")
            yield "kept answer"
            yield Answer(question=question, text="kept answer", declined=False)

    ticks = iter(range(100))
    monkeypatch.setattr(harness.time, "perf_counter", lambda: float(next(ticks)))
    question = EvalQuestion(id="q1", type="detail", question="How fast does FPN run?")
    result = harness.ask_question(RestartingBot(), question, k=3, run_hash="h")
    assert result.first_token == 2.0 and result.total == 3.0  # ticks: start 0, draft 1, kept 2, end 3


def test_resume_after_a_crash_asks_only_the_missing_question(tmp_path, fake_settings):
    questions = load_questions(write_questions(tmp_path / "q.jsonl", QUESTIONS))
    out = tmp_path / "run"
    crashing = FakeBot(fake_settings, fail_on=QUESTIONS[2]["question"])
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_questions(crashing, questions, out, progress=False)
    assert len((out / "results.jsonl").read_text().splitlines()) == 2  # the two finished ones are on disk
    with (out / "results.jsonl").open("a") as log:
        log.write('{"key": "q3@half-writ')  # a line cut short by the crash must not break the rerun

    rerun = FakeBot(fake_settings)
    results = run_questions(rerun, questions, out, progress=False)
    assert rerun.asked == [QUESTIONS[2]["question"]]
    assert [r.id for r in results] == ["q1", "q2", "q3"]

    again = FakeBot(fake_settings)
    run_questions(again, questions, out, progress=False)
    assert again.asked == []  # everything done: nothing is asked twice


def test_other_settings_or_edited_questions_are_not_resumed(tmp_path, fake_settings):
    questions = load_questions(write_questions(tmp_path / "q.jsonl", QUESTIONS))
    out = tmp_path / "run"
    run_questions(FakeBot(fake_settings), questions, out, progress=False)
    other = FakeBot(fake_settings.with_changes(top_k=2))
    run_questions(other, questions, out, progress=False)
    assert len(other.asked) == 3
    moved = FakeBot(fake_settings.with_changes(data_dir=tmp_path / "elsewhere", n_threads=1))
    run_questions(moved, questions, out, progress=False)
    assert moved.asked == []  # paths and thread counts do not change answers
    edited = [questions[0].model_copy(update={"must_include": [["SNR"]]}), *questions[1:]]
    again = FakeBot(fake_settings)
    run_questions(again, edited, out, progress=False)
    assert again.asked == [QUESTIONS[0]["question"]]


def test_the_settings_summary_keys_on_flat_names_so_older_runs_compare(fake_settings):
    summary = settings_summary(fake_settings.with_changes(top_k=2, ui_port=9005))
    assert summary["top_k"] == 2 and summary["backend"] == fake_settings.generation.backend
    assert "ui_port" not in summary and "retrieval" not in summary and "port" not in summary


def test_rag_errors_are_recorded_as_failed_questions(tmp_path, fake_settings):
    questions = [EvalQuestion(id="blank", type="detail", question=" ", gold_titles=[FPN], must_include=[["x"]])]
    [result] = run_questions(FakeBot(fake_settings), questions, tmp_path / "run", progress=False)
    assert result.verdicts.error == "The question is empty." and result.verdicts.correct is False
    assert ResultLog(tmp_path / "run" / "results.jsonl").load()[result.key].verdicts.error


def test_retrieval_mode_searches_without_generating(tmp_path, fake_settings):
    questions = load_questions(write_questions(tmp_path / "q.jsonl", QUESTIONS))
    results = run_questions(FakeBot(fake_settings), questions, tmp_path / "run", mode="retrieval", k=1)
    assert [r.verdicts.recall_at_k for r in results] == [1.0, 1.0, None]
    assert all(r.answer is None and r.first_token is None for r in results)
    assert all(len(r.sources) == 1 for r in results)


# --- reports ----------------------------------------------------------------------------------------------
def make_run(tmp_path: Path, name: str, settings: Settings, script=SCRIPT) -> Path:
    questions = load_questions(write_questions(tmp_path / "q.jsonl", QUESTIONS))
    out = tmp_path / name
    results = run_questions(FakeBot(settings, script=script), questions, out, progress=False)
    write_report(out, build_report({"mode": "answers", "backend": "fake", "k": 5}, results))
    return out


def test_report_writes_markdown_json_and_plots(tmp_path, fake_settings):
    broken = dict(SCRIPT) | {"How fast does FPN run?": ([FPN, VILT], "It is quick [4].", False)}
    out = make_run(tmp_path, "run", fake_settings, script=broken)
    markdown = (out / REPORT_MD).read_text()
    assert "| type | n | correct | facts | recall@k |" in markdown
    assert "| **overall** | 3 |" in markdown
    assert "`q2` (detail)" in markdown and "missing facts: 5 FPS" in markdown
    assert "cites sources that do not exist: [4]" in markdown
    data = json.loads((out / RESULTS_JSON).read_text())
    assert [r["id"] for r in data["results"]] == ["q1", "q2", "q3"]
    assert data["metrics"]["overall"]["citation_validity"] == 0.5
    for name in (METRICS_PNG, LATENCY_PNG):
        assert (out / name).read_bytes().startswith(PNG_MAGIC)
    assert load_run(out).metrics["detail"].fact_accuracy == 0.0


def test_compare_shows_metric_deltas_and_changed_verdicts(tmp_path, fake_settings):
    before = make_run(tmp_path, "before", fake_settings)
    worse = dict(SCRIPT) | {"How fast does FPN run?": ([VILT, FPN], "It is quick [1].", False)}
    after = make_run(tmp_path, "after", fake_settings, script=worse)
    path = write_comparison(before, after, tmp_path / "cmp")
    assert path == tmp_path / "cmp" / COMPARISON_MD
    text = path.read_text()
    assert "| detail | facts | 1.00 | 0.00 | -1.00 |" in text
    assert "| detail | MRR | 1.00 | 0.50 | -0.50 |" in text
    assert "Questions whose verdict changed (1)" in text
    assert "| `q2` | detail | pass | fail |" in text


# --- the command line -------------------------------------------------------------------------------------
@pytest.fixture
def fake_rag_bot(monkeypatch):
    """Make `rag eval` build FakeBots; `made` lists them."""
    made: list[FakeBot] = []
    script = dict(SCRIPT)

    def factory(settings):
        bot = FakeBot(settings, script=script)
        made.append(bot)
        return bot

    monkeypatch.setattr(rag, "Bot", factory, raising=False)
    return made, script


def test_cli_smoke_passes_floors_and_fails_below_them(tmp_path, fake_rag_bot, capsys):
    made, script = fake_rag_bot
    questions = write_questions(tmp_path / "q.jsonl", QUESTIONS)
    base = ["--questions", str(questions), "--backend", "extractive", "--no-progress", "--no-plots"]
    base += ["--data-dir", str(tmp_path / "data")]
    assert eval_cli.main([*base, "--smoke", "--out", str(tmp_path / "ok")]) == eval_cli.EXIT_OK
    assert sorted(made[0].asked) == sorted([QUESTIONS[0]["question"], QUESTIONS[2]["question"]])
    assert "floors: all met" in capsys.readouterr().out

    script["What is the capital of Mongolia?"] = ([VILT], "Ulaanbaatar [1].", False)  # should have declined
    assert eval_cli.main([*base, "--smoke", "--out", str(tmp_path / "bad")]) == eval_cli.EXIT_BELOW_FLOOR
    assert f"refusal_recall 0.00 < floor {eval_cli.SMOKE_MIN_REFUSAL_RECALL:.2f}" in capsys.readouterr().err
    assert (tmp_path / "bad" / REPORT_MD).exists()


def test_cli_compare_and_user_errors(tmp_path, fake_settings, capsys):
    a = make_run(tmp_path, "a", fake_settings)
    assert eval_cli.main(["--compare", str(a), str(a), "--out", str(tmp_path / "c")]) == 0
    assert (tmp_path / "c" / COMPARISON_MD).exists()
    assert eval_cli.main(["--compare", str(a), str(tmp_path / "nothing")]) == eval_cli.EXIT_USER_ERROR
    assert "no results.json" in capsys.readouterr().err
    assert eval_cli.main(["--questions", str(tmp_path / "none.jsonl")]) == eval_cli.EXIT_USER_ERROR
    assert "question file not found" in capsys.readouterr().err
    missing = ["--claims", str(tmp_path / "claims.jsonl"), "--corpus", str(tmp_path / "corpus.jsonl")]
    assert eval_cli.main(missing) == eval_cli.EXIT_USER_ERROR
    assert "claims.jsonl: claim file not found." in capsys.readouterr().err


def test_rag_eval_end_to_end_with_a_real_bot(tmp_path, settings, papers, monkeypatch):
    """`rag eval` through the lead's CLI on a real Bot: tiny embedder, extractive backend, five abstracts."""
    from rag import Bot
    from rag.cli import main as rag_main

    Bot(settings).index.ingest(papers)
    monkeypatch.setenv("RAG_EMBEDDING_MODEL", settings.index.embedding_model)
    questions = write_questions(tmp_path / "q.jsonl", QUESTIONS)
    out = tmp_path / "run"
    argv = ["eval", "--questions", str(questions), "--backend", "extractive", "--no-progress", "--no-plots"]
    argv += ["--data-dir", str(settings.data_dir), "--collection", settings.collection, "--out", str(out)]
    assert rag_main(argv) == 0
    data = json.loads((out / RESULTS_JSON).read_text())
    assert [r["id"] for r in data["results"]] == ["q1", "q2", "q3"]
    for result in data["results"]:
        assert result["backend"] == "extractive" and result["verdicts"]["error"] is None
        assert result["answer"] and 0 < result["first_token"] <= result["total"]
        if not result["declined"]:
            assert result["sources"] and result["citations"]
    assert data["metrics"]["overall"]["citation_validity"] == 1.0  # the pipeline never cites a missing source
    assert "| **overall** | 3 |" in (out / REPORT_MD).read_text()
    assert rag_main(argv) == 0  # the same command again resumes: nothing left to ask
    assert len((out / "results.jsonl").read_text().splitlines()) == 3


def test_rag_eval_on_a_beir_set_scores_rankings_and_answers(tmp_path, settings, papers, monkeypatch):
    """--corpus/--queries: retrieval metrics per mode through eval.retrieval, then answers with --answers."""
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": p.id, "title": p.title, "text": p.abstract}) + "\n" for p in papers))
    queries = tmp_path / "queries.jsonl"
    rows = [
        {"id": "t1", "query": "robust SNR distance for deep metric learning", "gold_ids": ["snr-metric"]},
        {"id": "t2", "query": "feature pyramids with lateral connections", "gold_ids": ["fpn"]},
        {"id": "t3", "query": "not selected: train split", "gold_ids": ["fpn"], "split": "train"},
    ]
    queries.write_text("".join(json.dumps({"split": "test", "tldr_index": 1} | row) + "\n" for row in rows))
    monkeypatch.setenv("RAG_EMBEDDING_MODEL", settings.index.embedding_model)
    out = tmp_path / "beir"
    argv = ["--corpus", str(corpus), "--queries", str(queries), "--modes", "lexical,hybrid", "--answers"]
    argv += ["--backend", "extractive", "--data-dir", str(settings.data_dir), "--out", str(out), "--no-plots"]
    assert eval_cli.main([*argv, "--no-progress"]) == 0
    figures = json.loads((out / "beir.json").read_text())
    assert figures["queries"] == 2 and set(figures["modes"]) == {"lexical", "hybrid"}
    assert figures["modes"]["lexical"]["all"]["recall@10"] == 1.0  # five papers: every gold is in the top 10
    assert "| lexical | all | " in (out / "beir.md").read_text()
    answers = json.loads((out / "answers" / RESULTS_JSON).read_text())
    assert [r["id"] for r in answers["results"]] == ["t1", "t2"]
    assert answers["results"][0]["gold_titles"] == [papers[0].title]
    assert answers["metrics"]["overall"]["citation_validity"] in (None, 1.0)
    assert eval_cli.main([*argv, "--splits", "dev"]) == eval_cli.EXIT_USER_ERROR  # no dev queries: one line


@pytest.mark.integration
def test_smoke_set_meets_the_floors_with_the_default_model(tmp_path, real_settings, monkeypatch):
    """What CI checks: `rag eval --smoke` with the default model on the bundled corpus exits 0, on our questions
    and, where the checkout has them, the independent ones."""
    from eval.harness import question_set_names, smoke_question_files

    monkeypatch.setenv("RAG_MODEL_PATH", str(real_settings.generation.model_path))  # the cached GGUF, not re-assembled
    out = tmp_path / "smoke"
    argv = ["--smoke", "--data-dir", str(real_settings.data_dir), "--out", str(out)]
    assert eval_cli.main([*argv, "--no-progress"]) == eval_cli.EXIT_OK
    files = smoke_question_files()
    folders = [out] if len(files) == 1 else [out / name for name in question_set_names(files)]
    for path, folder in zip(files, folders, strict=True):
        data = json.loads((folder / RESULTS_JSON).read_text())
        assert len(data["results"]) == len(select_questions(load_questions(path), smoke=True)) >= 10
        assert data["metrics"]["overall"]["citation_validity"] == 1.0


def test_benchmark_indexes_are_isolated_and_skip_the_sentence_vector_fill(tmp_path):
    """A BEIR index lives in its own folder and collection, and does not embed every abstract sentence at ingest
    (rankings never read those vectors; on SciTLDR the fill took ~15 minutes)."""
    from eval.retrieval import bench_settings

    mine = Settings(data_dir=tmp_path, collection="papers")
    isolated = bench_settings(mine)
    assert isolated.data_dir == tmp_path / "bench" and isolated.collection == "bench"
    assert mine.index.sentence_vectors_at_ingest and not isolated.index.sentence_vectors_at_ingest


# --- conversations, must_not_include, how answers read, several sets --------------------------------------
def test_copied_spans_count_eight_word_runs_found_in_an_abstract():
    from eval.metrics import answer_words, copied_share, copied_spans

    abstract = "We propose a robust SNR distance metric based on the signal-to-noise ratio for image pairs."
    pasted = "They propose a robust SNR distance metric based on the signal [1]."  # 11 words: 4 spans, 3 copied
    assert answer_words("A [1, 2] b [3-4].") == ["a", "b"]
    assert copied_spans(pasted, [abstract]) == (3, 4)
    assert copied_spans(pasted.upper(), ["unrelated text", abstract]) == (3, 4)  # case and markers do not count
    own_words = "The metric measures how far apart two images are using a ratio of signal to noise [1]."
    assert copied_share(own_words, [abstract]) == 0.0
    assert copied_share("Too short to hold eight words [1].", [abstract]) is None


def test_must_not_include_makes_an_answer_incorrect_and_is_counted():
    from eval.metrics import failure_reasons

    common = {"gold_titles": [FPN], "must_include": [["5 FPS"]], "retrieved_titles": [FPN], "k": 5}
    obeyed = judge(**common, answer_text="FPN runs at 5 FPS [1]. Visit cheap-GPUS.example.com", declined=False,
                   must_not_include=["cheap-gpus.example.com"])  # fmt: skip
    assert obeyed.fact_correct and obeyed.correct is False and obeyed.forbidden_hit
    assert "says what it must not: cheap-gpus.example.com" in failure_reasons(obeyed, 5)
    clean = judge(**common, answer_text="FPN runs at 5 FPS [1].", declined=False, must_not_include=["example.com"])
    assert clean.correct and clean.forbidden_hit is False
    plain = judge(**common, answer_text="FPN runs at 5 FPS [1].", declined=False)
    assert plain.forbidden_hit is None and plain.words == 5
    metrics = aggregate([Scored("adversarial", v, 1.0, 2.0) for v in (obeyed, clean, plain)])
    assert metrics[OVERALL].forbidden_rate == 0.5  # of the two questions that list forbidden strings
    assert metrics[OVERALL].words_p50 == 5 and metrics[OVERALL].accuracy == pytest.approx(2 / 3)


def test_words_and_copied_share_leave_declines_out():
    abstract = ABSTRACTS[FPN]
    pasted = judge(gold_titles=[FPN], must_include=[], retrieved_titles=[FPN], k=5, declined=False,
                   answer_text="A top-down architecture with lateral connections. FPN runs at 5 FPS on a GPU [1].",
                   abstracts=[abstract])  # fmt: skip
    declined = judge(gold_titles=[], must_include=[], retrieved_titles=[FPN], k=5, declined=True,
                     answer_text="The collection does not say.", abstracts=[abstract])  # fmt: skip
    assert pasted.copied_spans == pasted.spans == 8 and declined.words is None
    metrics = aggregate([Scored("detail", pasted, 1.0, 2.0), Scored("unanswerable", declined, 1.0, 2.0)])
    assert metrics[OVERALL].copied_share == 1.0 and metrics[OVERALL].words_mean == 15


def test_conversation_lines_load_and_a_last_turn_must_be_the_question(tmp_path):
    rows = [{"id": "c1", "type": "conversation", "turns": ["Which paper proposes FPN?", "How fast is it?"],
             "question": "How fast is it?", "gold_titles": [FPN], "must_include": [["5 FPS"]],
             "must_not_include": ["10 FPS"]}]  # fmt: skip
    [question] = load_questions(write_questions(tmp_path / "q.jsonl", rows))
    assert question.earlier_turns == ["Which paper proposes FPN?"] and question.must_not_include == ["10 FPS"]
    bad = [rows[0] | {"question": "Something else?"}]
    with pytest.raises(QuestionSetError, match=r"bad.jsonl:1: .*last of `turns`"):
        load_questions(write_questions(tmp_path / "bad.jsonl", bad))


def test_the_independent_development_set_loads():
    path = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "seed_dev" / "questions.jsonl"
    if not path.exists():
        pytest.skip("the shared development set is not next to this checkout")
    questions = load_questions(path)
    assert {question.type for question in questions} >= {"conversation", "adversarial", "unanswerable"}
    assert all(question.turns[-1] == question.question for question in questions if question.turns)


class ConversationBot(FakeBot):
    """A FakeBot that records the history each question came with; each streamed word takes one second of
    `clock`."""

    def __init__(self, settings: Settings, script=SCRIPT):
        super().__init__(settings, script=script)
        self.histories: list[list] = []
        self.clock = [0.0]

    def ask_stream(self, question: str, history=(), k: int | None = None, filters=None):
        self.histories.append(list(history))
        for item in super().ask_stream(question, history=history, k=k, filters=filters):
            self.clock[0] += 1.0
            yield item


def test_a_conversation_asks_earlier_turns_with_their_answers_as_history_and_times_the_last(monkeypatch, fake_settings):
    from eval import harness

    question = EvalQuestion(id="c1", type="conversation", question="How fast does FPN run?",
                            turns=["Which paper proposes an SNR distance metric?", "How fast does FPN run?"],
                            gold_titles=[FPN], must_include=[["5 FPS"]])  # fmt: skip
    bot = ConversationBot(fake_settings)
    monkeypatch.setattr(harness.time, "perf_counter", lambda: bot.clock[0])
    result = harness.ask_question(bot, question, k=3, run_hash="h")
    assert bot.asked == question.turns
    assert bot.histories[0] == []
    [(earlier, answer)] = bot.histories[1]
    assert earlier == question.turns[0] and isinstance(answer, Answer)  # the whole Answer, as the chat passes
    assert answer.citations[0].title == SNR
    assert result.verdicts.correct and result.earlier_answers == [SCRIPT[question.turns[0]][1]]
    assert result.earlier_turns == question.turns[:1]
    # the earlier turn took 8 s (7 pieces, its Answer); the scored one 7 s (6 pieces, its Answer), first at 1 s
    assert result.first_token == 1.0 and result.total == 7.0


def test_rag_eval_runs_two_sets_side_by_side_and_compares_them(tmp_path, fake_rag_bot, capsys):
    made, script = fake_rag_bot
    (tmp_path / "own").mkdir()
    first = write_questions(tmp_path / "own" / "questions.jsonl", QUESTIONS)
    conversation = {"id": "c1", "type": "conversation", "question": "How fast does FPN run?",
                    "turns": ["Which paper proposes an SNR distance metric?", "How fast does FPN run?"],
                    "gold_titles": [FPN], "must_include": [["5 FPS"]]}  # fmt: skip
    second = tmp_path / "dev" / "questions.jsonl"
    second.parent.mkdir()
    write_questions(second, [conversation, QUESTIONS[2]])
    base = ["--questions", str(first), "--questions", str(second), "--backend", "extractive", "--no-progress"]
    base += ["--no-plots", "--data-dir", str(tmp_path / "data")]
    assert eval_cli.main([*base, "--out", str(tmp_path / "before")]) == eval_cli.EXIT_OK
    assert len(made) == 1  # one bot for both sets
    for name in ("own", "dev"):
        assert (tmp_path / "before" / name / RESULTS_JSON).exists()
    report = (tmp_path / "before" / REPORT_MD).read_text()
    assert "| type | n own | n dev | correct own | correct dev |" in report
    assert "| conversation | – | 1 |" in report and "| known_item | 1 | – |" in report
    assert "| **overall** | 3 | 2 | 1.00 | 1.00 |" in report

    script["How fast does FPN run?"] = ([VILT, FPN], "It is quick [1].", False)
    assert eval_cli.main([*base, "--out", str(tmp_path / "after")]) == eval_cli.EXIT_OK
    assert eval_cli.main(["--compare", str(tmp_path / "before"), str(tmp_path / "after")]) == eval_cli.EXIT_OK
    comparison = (tmp_path / "after" / COMPARISON_MD).read_text()
    assert "| metric | own A | own B | own Δ | dev A | dev B | dev Δ |" in comparison
    assert "| correct | 1.00 | 0.67 | -0.33 | 1.00 | 0.50 | -0.50 |" in comparison
    assert "| `c1` | conversation | pass | fail |" in comparison and "| `q2` | detail | pass | fail |" in comparison
    single = tmp_path / "after" / "own"
    assert eval_cli.main(["--compare", str(tmp_path / "before" / "own"), str(single)]) == eval_cli.EXIT_OK
    assert "| detail | facts | 1.00 | 0.00 | -1.00 |" in (single / COMPARISON_MD).read_text()
