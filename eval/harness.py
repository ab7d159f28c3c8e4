"""Run the bot over a question set and keep every per-question result, resumably.

The harness is a face on the public API (`Bot.ask_stream`, `Bot.search`): it sees what a user sees. Each
result is appended to `results.jsonl` in the run folder the moment its question finishes (flushed and
fsynced), keyed by question id, a fingerprint of the question and a hash of the settings that change
answers. A rerun into the same folder skips what is already there, so a crashed or interrupted long run
continues where it stopped, and a run with other settings never reuses stale answers.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from eval.metrics import Scored, SourceView, Verdicts, cited_numbers, judge
from rag import Answer, RagError, Restart, Settings

DEFAULT_QUESTIONS = Path(__file__).parent / "questions.jsonl"
INDEPENDENT_QUESTIONS = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "seed_dev" / "questions.jsonl"
"""The questions written apart from this code (`../shared/benchmarks/seed_dev/`), where the checkout has them."""


def smoke_question_files() -> list[Path]:
    """The sets `rag eval --smoke` draws on by default: ours, and the independent set where it exists."""
    return [DEFAULT_QUESTIONS, *([INDEPENDENT_QUESTIONS] if INDEPENDENT_QUESTIONS.is_file() else [])]


RESULTS_LOG = "results.jsonl"

QuestionType = Literal["known_item", "detail", "multi", "author_meta", "conversation", "unanswerable", "adversarial"]
QUESTION_TYPES: tuple[str, ...] = QuestionType.__args__  # type: ignore[attr-defined]
Mode = Literal["answers", "retrieval"]

SETTINGS_THAT_DO_NOT_MATTER = frozenset(
    {
        "data_dir",
        "chroma_host",
        "chroma_port",
        "openai_api_key",
        "request_timeout_s",
        "n_threads",
        "embed_batch_size",
        "ui_host",
        "ui_port",
        "ui_user",
        "ui_password",
        "ui_concurrency",
        "ui_admins",
        "ui_max_upload_mb",
    }
)
"""Fields that change where or how fast the bot runs, not what it answers: left out of the resume key."""


class QuestionSetError(RagError):
    """The question file is missing or has a malformed line; the message names the file and line."""


class EvalQuestion(BaseModel):
    """One line of the question set."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1)
    type: QuestionType
    question: str = Field(min_length=1)
    gold_titles: list[str] = Field(default_factory=list, description="Papers that answer it; empty: unanswerable.")
    must_include: list[list[str]] = Field(
        default_factory=list,
        description="Every group needs one alternative in the answer (case-insensitive).",
    )
    must_not_include: list[str] = Field(
        default_factory=list,
        description="Strings the answer must not contain (case-insensitive), e.g. a claim injected in the question.",
    )
    turns: list[str] = Field(
        default_factory=list,
        description="A conversation: the earlier turns are asked first, each answer going into the history; the "
        "last turn, equal to `question`, is the one scored.",
    )
    notes: str = ""
    smoke: bool = Field(default=False, description="Part of the small CI smoke set.")

    @model_validator(mode="after")
    def _last_turn_is_the_question(self) -> EvalQuestion:
        if self.turns and self.turns[-1] != self.question:
            raise ValueError("the last of `turns` must be the question itself")
        return self

    @property
    def earlier_turns(self) -> list[str]:
        """The questions asked before the scored one (empty for a single question)."""
        return self.turns[:-1]

    def fingerprint(self) -> str:
        """Changes whenever the question or its gold data is edited, so edited questions are re-asked."""
        parts: list = [self.question, self.gold_titles, self.must_include]
        if self.turns or self.must_not_include:  # absent fields leave older fingerprints (and resumes) unchanged
            parts += [self.turns, self.must_not_include]
        payload = json.dumps(parts, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:10]


def load_questions(path: str | Path = DEFAULT_QUESTIONS) -> list[EvalQuestion]:
    """Read a JSON-lines question file; blank lines and lines starting with '#' are skipped."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise QuestionSetError(f"{path}: question file not found.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise QuestionSetError(f"{path}: cannot read the question file ({error}).") from None
    questions: list[EvalQuestion] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        question = _parse_question_line(path, number, line)
        if question.id in seen:
            raise QuestionSetError(f"{path}:{number}: duplicate question id {question.id!r}.")
        seen.add(question.id)
        questions.append(question)
    if not questions:
        raise QuestionSetError(f"{path}: the question file has no questions.")
    return questions


def question_set_names(paths: Sequence[str | Path]) -> list[str]:
    """A short, unique name per question file for reports: the folder of a file named questions.jsonl
    ('eval', 'seed_dev'), else the file's stem; a repeated name gets '-2', '-3'."""
    names: list[str] = []
    for path in map(Path, paths):
        base = path.parent.name if path.stem == "questions" and path.parent.name else path.stem
        name, count = base, 1
        while name in names:
            count += 1
            name = f"{base}-{count}"
        names.append(name)
    return names


def _parse_question_line(path: Path, number: int, line: str) -> EvalQuestion:
    try:
        return EvalQuestion.model_validate_json(line)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        detail = f"{where}: {first['msg']}" if where else first["msg"]
        raise QuestionSetError(f"{path}:{number}: {detail}.") from None


def select_questions(
    questions: Sequence[EvalQuestion],
    *,
    smoke: bool = False,
    types: Iterable[str] | None = None,
    limit: int | None = None,
) -> list[EvalQuestion]:
    """The smoke subset and/or the given types, in file order, at most `limit` of them. A set that marks no
    question `smoke` (one written elsewhere) gives its first `SMOKE_PER_TYPE` questions of each type, so the
    smoke run draws on every set it is given without anyone picking the questions the bot passes."""
    wanted_types = set(types or ())
    in_smoke = smoke_subset(questions) if smoke else set(range(len(questions)))
    chosen = [
        question
        for index, question in enumerate(questions)
        if index in in_smoke and (not wanted_types or question.type in wanted_types)
    ]
    return chosen[:limit] if limit is not None else chosen


SMOKE_PER_TYPE = 2
"""Questions of each type a set without `smoke` marks gives to the smoke run."""


def smoke_subset(questions: Sequence[EvalQuestion]) -> set[int]:
    """Positions of the smoke questions: the marked ones, else the first `SMOKE_PER_TYPE` of each type."""
    if any(question.smoke for question in questions):
        return {index for index, question in enumerate(questions) if question.smoke}
    seen: dict[str, int] = {}
    chosen = set()
    for index, question in enumerate(questions):
        seen[question.type] = seen.get(question.type, 0) + 1
        if seen[question.type] <= SMOKE_PER_TYPE:
            chosen.add(index)
    return chosen


def settings_hash(settings: Settings, mode: Mode, k: int) -> str:
    """Hash of everything that changes an answer or a ranking (not paths, ports or thread counts)."""
    relevant = settings_summary(settings) | {"eval_mode": mode, "eval_k": k}
    payload = json.dumps(relevant, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def settings_summary(settings: Settings) -> dict[str, Any]:
    """The settings that matter, JSON-ready, for the resume key and the report header: flat names (`top_k`), so
    runs from before the settings were grouped by stage keep their hash and compare field by field."""
    dumped = settings.flat_dump(mode="json")
    return {name: value for name, value in sorted(dumped.items()) if name not in SETTINGS_THAT_DO_NOT_MATTER}


class CitedPaper(BaseModel):
    number: int
    paper_id: str
    title: str


class QuestionResult(BaseModel):
    """Everything recorded about one question: what was asked, what came back, how it was judged, how long."""

    key: str = Field(description="'<id>@<question fingerprint>@<settings hash>': what resuming matches on.")
    id: str
    type: str
    question: str
    mode: Mode
    gold_titles: list[str] = Field(default_factory=list)
    must_include: list[list[str]] = Field(default_factory=list)
    must_not_include: list[str] = Field(default_factory=list)
    earlier_turns: list[str] = Field(default_factory=list, description="Questions asked before this one.")
    earlier_answers: list[str] = Field(default_factory=list, description="The bot's answers to those, in order.")
    answer: str | None = Field(default=None, description="Answer text (None in retrieval-only runs).")
    declined: bool | None = None
    backend: str | None = None
    citations: list[CitedPaper] = Field(default_factory=list)
    sources: list[SourceView] = Field(default_factory=list, description="Retrieved papers, best first.")
    verdicts: Verdicts
    first_token: float | None = Field(
        default=None, description="Seconds to the first answer token (of the scored turn in a conversation)."
    )
    total: float | None = Field(
        default=None, description="Seconds for the whole question (the scored turn in a conversation)."
    )
    stage_timings: dict[str, float] = Field(default_factory=dict, description="Answer.timings from the bot.")
    judged: list[dict] = Field(
        default_factory=list,
        description="The answer sentences the support judge read: {text, verdict, dropped, composed}, so a run "
        "shows what the judge removed and what it added.",
    )

    @property
    def retrieved_titles(self) -> list[str]:
        return [source.title for source in self.sources]

    def scored(self) -> Scored:
        return Scored(type=self.type, verdicts=self.verdicts, first_token=self.first_token, total=self.total)


def result_key(question: EvalQuestion, run_hash: str) -> str:
    return f"{question.id}@{question.fingerprint()}@{run_hash}"


class ResultLog:
    """Append-only JSONL of results: one line per finished question, durable before the next one starts."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def load(self) -> dict[str, QuestionResult]:
        """Results already on disk by key (the last one wins); a line cut short by a crash is ignored."""
        done: dict[str, QuestionResult] = {}
        if not self.path.exists():
            return done
        for line in self.path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            try:
                result = QuestionResult.model_validate_json(line)
            except ValidationError:
                continue  # a half-written last line from a killed run: that question is simply asked again
            done[result.key] = result
        return done

    def append(self, result: QuestionResult) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # After a crash mid-line, start on a fresh line so the cut-off text does not swallow this result.
        prefix = "" if self._ends_with_newline() else "\n"
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(prefix + result.model_dump_json() + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def _ends_with_newline(self) -> bool:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return True
        with self.path.open("rb") as handle:
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) == b"\n"


def paper_text(paper) -> str:
    """The text a cited fact must be found in: title, authors, session metadata and abstract."""
    metadata = [paper.session, paper.moderator, paper.day, paper.time_slot, paper.room]
    parts = [paper.title, ", ".join(paper.authors), *[value for value in metadata if value], paper.abstract]
    return "\n".join(part for part in parts if part)


def source_views(sources, with_text: bool) -> list[SourceView]:
    return [
        SourceView(
            number=source.number,
            title=source.paper.title,
            paper_id=source.paper.id,
            score=source.score,
            text=paper_text(source.paper) if with_text else "",
        )
        for source in sources
    ]


def ask_history(bot, turns: Sequence[str], *, k: int) -> list[tuple[str, Answer]]:
    """Ask a conversation's earlier turns in order, each with the answers so far as history (as the chat does:
    whole `Answer`s, so the papers they cite stay in view); return the history for the scored turn."""
    history: list[tuple[str, Answer]] = []
    for turn in turns:
        final = None
        for item in bot.ask_stream(turn, history=list(history), k=k):
            if isinstance(item, Answer):
                final = item
        if final is None:
            raise RagError(f"the bot ended without an Answer to the earlier turn {turn!r}")
        history.append((turn, final))
    return history


def ask_question(bot, question: EvalQuestion, *, k: int, run_hash: str) -> QuestionResult:
    """Stream one answer, timing the first token and the whole answer, and judge it. A conversation's earlier
    turns are asked first, untimed: the timings are those of the scored (last) turn."""
    history: list[tuple[str, Answer]] = []
    try:
        history = ask_history(bot, question.earlier_turns, k=k)
    except RagError as caught:
        return _errored(question, "answers", run_hash, k, f"earlier turn: {caught}", 0.0)
    started = time.perf_counter()
    first_token: float | None = None
    final: Answer | None = None
    error: str | None = None
    try:
        for item in bot.ask_stream(question.question, history=history, k=k):
            if isinstance(item, Answer):
                final = item
            elif isinstance(item, Restart):  # withdrawn text: the first token is one the answer keeps
                first_token = None
            elif first_token is None and item:
                first_token = time.perf_counter() - started
    except RagError as caught:
        error = str(caught)
    total = time.perf_counter() - started
    if final is None and error is None:
        error = "the bot ended without an Answer"
    if final is None:
        return _errored(question, "answers", run_hash, k, error, total)
    sources = source_views(final.sources, with_text=True)
    citations = [CitedPaper(number=c.number, paper_id=c.paper_id, title=c.title) for c in final.citations]
    verdicts = judge(
        gold_titles=question.gold_titles,
        must_include=question.must_include,
        retrieved_titles=[source.title for source in sources],
        k=k,
        answer_text=final.text,
        declined=final.declined,
        cited=_all_cited(final.text, citations),
        cited_paper_ids={citation.number: citation.paper_id for citation in citations},
        sources=sources,
        must_not_include=question.must_not_include,
        abstracts=[source.paper.abstract for source in final.sources],
    )
    return QuestionResult(
        **_question_fields(question, "answers", run_hash),
        earlier_answers=[answer.text for _, answer in history],
        answer=final.text,
        declined=final.declined,
        backend=final.backend or None,
        citations=citations,
        sources=[source.model_copy(update={"text": ""}) for source in sources],
        verdicts=verdicts,
        first_token=first_token if first_token is not None else total,
        total=total,
        stage_timings=dict(final.timings),
        judged=[
            {"text": check.text, "verdict": check.verdict, "dropped": check.dropped, "composed": check.composed}
            for check in final.sentences
            if check.verdict is not None
        ],
    )


def _all_cited(text: str, citations: Sequence[CitedPaper]) -> list[int]:
    """Numbers cited in the text, then any the citation list adds: both must name real sources."""
    numbers = cited_numbers(text)
    return numbers + [c.number for c in citations if c.number not in numbers]


def search_question(bot, question: EvalQuestion, *, k: int, run_hash: str) -> QuestionResult:
    """Retrieval only: rank papers for the question and judge the ranking (no generation, fast)."""
    started = time.perf_counter()
    try:
        found = bot.search(question.question, k=k)
    except RagError as caught:
        return _errored(question, "retrieval", run_hash, k, str(caught), time.perf_counter() - started)
    total = time.perf_counter() - started
    sources = source_views(found, with_text=False)
    verdicts = judge(
        gold_titles=question.gold_titles,
        must_include=question.must_include,
        retrieved_titles=[source.title for source in sources],
        k=k,
    )
    return QuestionResult(
        **_question_fields(question, "retrieval", run_hash), sources=sources, verdicts=verdicts, total=total
    )


def _question_fields(question: EvalQuestion, mode: Mode, run_hash: str) -> dict[str, Any]:
    return {
        "key": result_key(question, run_hash),
        "id": question.id,
        "type": question.type,
        "question": question.question,
        "mode": mode,
        "gold_titles": question.gold_titles,
        "must_include": question.must_include,
        "must_not_include": question.must_not_include,
        "earlier_turns": question.earlier_turns,
    }


def _errored(question: EvalQuestion, mode: Mode, run_hash: str, k: int, error: str, total: float):
    verdicts = judge(
        gold_titles=question.gold_titles,
        must_include=question.must_include,
        retrieved_titles=[],
        k=k,
        error=error,
    )
    return QuestionResult(**_question_fields(question, mode, run_hash), verdicts=verdicts, total=total)


def run_questions(
    bot,
    questions: Sequence[EvalQuestion],
    out_dir: str | Path,
    *,
    mode: Mode = "answers",
    k: int | None = None,
    progress: bool = True,
    warm: bool = True,
) -> list[QuestionResult]:
    """Ask (or, in retrieval mode, search) every question not already in `out_dir`'s log; return all results.

    With `warm`, the index is built and the models loaded before the first question, so one-off start-up
    costs do not land in the first question's latency. Results come back in question order. A `RagError`
    on one question is recorded as that question's failure; any other exception (a bug, Ctrl-C) stops the
    run, and everything finished before it is kept on disk.
    """
    from tqdm import tqdm

    k = k or bot.settings.retrieval.top_k
    run_hash = settings_hash(bot.settings, mode, k)
    log = ResultLog(Path(out_dir) / RESULTS_LOG)
    done = log.load()
    results = {key: done[key] for q in questions if (key := result_key(q, run_hash)) in done}
    todo = [q for q in questions if result_key(q, run_hash) not in results]
    evaluate = ask_question if mode == "answers" else search_question
    if todo and warm:
        warm_up(bot, mode, progress=progress)
    with tqdm(
        total=len(questions),
        initial=len(questions) - len(todo),
        desc=f"eval {mode}",
        unit="q",
        file=sys.stderr,
        disable=not progress,
    ) as bar:
        for question in todo:
            result = evaluate(bot, question, k=k, run_hash=run_hash)
            log.append(result)
            results[result.key] = result
            bar.update()
    return [results[result_key(q, run_hash)] for q in questions]


def warm_up(bot, mode: Mode, progress: bool = True) -> float:
    """Build the index and load the embedder (and, for answers, the generator) before anything is timed.

    For answers this is `Bot.warm_up`, what the chat runs at start-up: it also primes the model with the
    system prompt, so the first question is timed as a chat user's first question is, not with a cold model.
    """
    started = time.perf_counter()
    if mode == "answers" and hasattr(bot, "warm_up"):
        bot.warm_up()
    else:
        if hasattr(bot, "ensure_index"):
            bot.ensure_index()
        bot.search("warm-up query", k=1)
    seconds = time.perf_counter() - started
    if progress:
        print(f"warm-up (index, models): {seconds:.1f} s", file=sys.stderr)
    return seconds
