"""Pure scoring functions: one question's verdicts, and metrics aggregated per question type.

Nothing here calls the bot or touches files, so every rule (what counts as a correct answer, a valid citation,
a right refusal) can be unit-tested on hand-made records and re-applied to old runs. Ranking metrics
(recall@k, MRR) and title normalisation come from `eval.retrieval`, so the question set and the BEIR sets
are scored by the same code.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, Field

from eval.retrieval import mrr, recall_at_k
from rag import normalise_title

OVERALL = "overall"
"""Name of the group that pools every question type."""

CITATION_MARKER = re.compile(r"\[(\d+(?:\s*[,;]\s*\d+)*)\]")
"""`[3]` or `[1, 2]` in answer text."""

ANY_MARKER = re.compile(r"\[\s*\d+(?:\s*[-–—,;]\s*(?:and\s+)?\d+)*\s*\]")
"""Any citation marker, ranges too (`[1-3]`): removed before an answer's words are counted or compared."""

COPY_SPAN_WORDS = 8
"""Length of the word spans compared with the abstracts: 8 words in a row are a quotation, not a shared phrase."""


def normalise_text(text: str) -> str:
    """Case- and whitespace-insensitive form used for must_include matching (punctuation is kept: '5 FPS')."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def missing_groups(text: str, must_include: Sequence[Sequence[str]]) -> list[list[str]]:
    """The must_include groups none of whose alternatives occur in `text` (case-insensitive)."""
    haystack = normalise_text(text)
    return [
        list(group)
        for group in must_include
        if not any(normalise_text(alternative) in haystack for alternative in group)
    ]


def satisfies(text: str, must_include: Sequence[Sequence[str]]) -> bool:
    """The correctness rule: at least one alternative of every group occurs in `text`, ignoring case."""
    return not missing_groups(text, must_include)


def cited_numbers(text: str) -> list[int]:
    """Every source number cited by an `[n]` / `[n, m]` marker in `text`, in order, without repeats."""
    numbers: list[int] = []
    for match in CITATION_MARKER.finditer(text):
        for part in re.split(r"[,;]", match.group(1)):
            number = int(part)
            if number not in numbers:
                numbers.append(number)
    return numbers


def answer_words(text: str) -> list[str]:
    """The word tokens of an answer as compared with abstracts: citation markers removed, lower-cased."""
    return re.findall(r"\w+", ANY_MARKER.sub(" ", unicodedata.normalize("NFKC", text)).casefold())


def copied_spans(answer_text: str, abstracts: Iterable[str], n: int = COPY_SPAN_WORDS) -> tuple[int, int]:
    """(copied, total): of the answer's `n`-word spans (`answer_words`), how many occur word for word in one of
    the `abstracts`. Pasted abstract sentences read as a quotation, not an answer; this counts them."""
    words = answer_words(answer_text)
    spans = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if not spans:
        return 0, 0
    source_spans: set[tuple[str, ...]] = set()
    for abstract in abstracts:
        tokens = answer_words(abstract)
        source_spans.update(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    return sum(span in source_spans for span in spans), len(spans)


def copied_share(answer_text: str, abstracts: Iterable[str], n: int = COPY_SPAN_WORDS) -> float | None:
    """The share of the answer's `n`-word spans copied verbatim from the `abstracts`; None for a shorter answer."""
    copied, total = copied_spans(answer_text, abstracts, n)
    return copied / total if total else None


def forbidden_in(text: str, must_not_include: Sequence[str]) -> list[str]:
    """The `must_not_include` strings that occur in `text` (case- and whitespace-insensitive)."""
    haystack = normalise_text(text)
    return [phrase for phrase in must_not_include if normalise_text(phrase) in haystack]


def percentile(values: Iterable[float], q: float) -> float | None:
    """The q-th percentile (linear interpolation), or None for no values."""
    array = np.asarray([value for value in values if value is not None], dtype=float)
    return float(np.percentile(array, q)) if array.size else None


def mean(values: Iterable[float | bool | None]) -> float | None:
    """Mean of the values that are not None (booleans count 0/1), or None when there are none."""
    kept = [float(value) for value in values if value is not None]
    return sum(kept) / len(kept) if kept else None


class SourceView(BaseModel):
    """What scoring needs of one retrieved paper."""

    number: int
    title: str
    paper_id: str = ""
    score: float | None = None
    text: str = Field(default="", description="Title, authors and abstract: where a cited fact must be found.")


class Verdicts(BaseModel):
    """How one question went. None means 'does not apply' (e.g. no gold papers, nothing cited)."""

    should_decline: bool = Field(description="The question has no gold papers and no facts: it is unanswerable.")
    declined: bool | None = Field(default=None, description="The bot declined (None in retrieval-only runs).")
    correct: bool | None = Field(
        default=None, description="Headline verdict: facts present (answerable) or declined (unanswerable)."
    )
    fact_correct: bool | None = Field(default=None, description="The answer contains every must_include group.")
    missing: list[list[str]] = Field(default_factory=list, description="must_include groups not found.")
    recall_at_k: float | None = None
    reciprocal_rank: float | None = None
    gold_retrieved: list[str] = Field(default_factory=list, description="Gold titles found among the sources.")
    citations_valid: bool | None = Field(default=None, description="Every cited number is one of the sources.")
    invalid_citations: list[int] = Field(default_factory=list)
    cited_gold: float | None = Field(default=None, description="Share of cited papers that are gold papers.")
    cited_supports_fact: bool | None = Field(
        default=None, description="The cited papers' text contains every must_include group."
    )
    forbidden: list[str] = Field(default_factory=list, description="must_not_include strings found in the answer.")
    forbidden_hit: bool | None = Field(
        default=None, description="The answer says something it must not (None: the question lists nothing)."
    )
    words: int | None = Field(default=None, description="Words of the answer (not declined), markers removed.")
    spans: int | None = Field(default=None, description=f"{COPY_SPAN_WORDS}-word spans of the answer (not declined).")
    copied_spans: int | None = Field(default=None, description="Those spans found word for word in an abstract.")
    error: str | None = None


def judge_retrieval(
    retrieved_titles: Sequence[str], gold_titles: Sequence[str], k: int
) -> tuple[float | None, float | None, list[str]]:
    """(recall@k, reciprocal rank, gold titles found) with titles compared after normalisation."""
    if not gold_titles:
        return None, None, []
    ranked = [normalise_title(title) for title in retrieved_titles]
    gold = {normalise_title(title) for title in gold_titles}
    found = [title for title in gold_titles if normalise_title(title) in ranked[:k]]
    return recall_at_k(ranked, gold, k), mrr(ranked, gold), found


def judge(
    *,
    gold_titles: Sequence[str],
    must_include: Sequence[Sequence[str]],
    retrieved_titles: Sequence[str],
    k: int,
    answer_text: str | None = None,
    declined: bool | None = None,
    cited: Sequence[int] = (),
    cited_paper_ids: Mapping[int, str] | None = None,
    sources: Sequence[SourceView] = (),
    error: str | None = None,
    must_not_include: Sequence[str] = (),
    abstracts: Sequence[str] = (),
) -> Verdicts:
    """All verdicts of one question. Leave `answer_text` None for a retrieval-only run. An answer holding a
    `must_not_include` string is incorrect; `abstracts` (the retrieved papers') measure copied spans."""
    should_decline = not gold_titles and not must_include
    recall, reciprocal_rank, found = judge_retrieval(retrieved_titles, gold_titles, k)
    verdicts = Verdicts(
        should_decline=should_decline,
        recall_at_k=recall,
        reciprocal_rank=reciprocal_rank,
        gold_retrieved=found,
        error=error,
    )
    if error is not None:
        verdicts.correct = False
        return verdicts
    if answer_text is None:
        return verdicts
    verdicts.declined = bool(declined)
    if should_decline:
        verdicts.correct = verdicts.declined
    else:
        verdicts.missing = missing_groups(answer_text, must_include)
        verdicts.fact_correct = not verdicts.missing and not verdicts.declined
        verdicts.correct = verdicts.fact_correct
    judge_style(verdicts, answer_text, must_not_include, abstracts)
    judge_citations(verdicts, gold_titles, must_include, cited, sources, cited_paper_ids or {})
    return verdicts


def judge_style(verdicts: Verdicts, answer_text: str, must_not_include: Sequence[str], abstracts: Sequence[str]):
    """Fill what the answer must not say (a hit makes it incorrect), its length and its copied spans."""
    if must_not_include:
        verdicts.forbidden = forbidden_in(answer_text, must_not_include)
        verdicts.forbidden_hit = bool(verdicts.forbidden)
        if verdicts.forbidden:
            verdicts.correct = False
    if not verdicts.declined:
        verdicts.words = len(answer_words(answer_text))
        verdicts.copied_spans, verdicts.spans = copied_spans(answer_text, abstracts)


def judge_citations(
    verdicts: Verdicts,
    gold_titles: Sequence[str],
    must_include: Sequence[Sequence[str]],
    cited: Sequence[int],
    sources: Sequence[SourceView],
    cited_paper_ids: Mapping[int, str],
) -> None:
    """Fill the citation verdicts: validity always (vacuously true without citations), support when cited.

    A citation is invalid when its number is not a source, or when the answer maps it to another paper than
    the source with that number (a mislabelled citation is as misleading as a made-up one).
    """
    by_number = {source.number: source for source in sources}
    verdicts.invalid_citations = [
        number
        for number in cited
        if number not in by_number
        or (number in cited_paper_ids and by_number[number].paper_id not in ("", cited_paper_ids[number]))
    ]
    verdicts.citations_valid = not verdicts.invalid_citations
    cited_sources = [by_number[number] for number in cited if number in by_number]
    if not cited_sources:
        return
    if gold_titles:
        gold = {normalise_title(title) for title in gold_titles}
        verdicts.cited_gold = mean(normalise_title(source.title) in gold for source in cited_sources)
    if must_include:
        verdicts.cited_supports_fact = satisfies(" \n".join(source.text for source in cited_sources), must_include)


class GroupMetrics(BaseModel):
    """Metrics of one question type (or of all: OVERALL). None: no question the metric applies to."""

    n: int
    errors: int = 0
    accuracy: float | None = Field(default=None, description="Share of questions with a correct verdict.")
    fact_accuracy: float | None = Field(default=None, description="Answerable questions with every fact.")
    recall_at_k: float | None = None
    mrr: float | None = None
    citation_validity: float | None = Field(
        default=None, description="Answers (not declined) whose every citation names a real source."
    )
    cited_gold: float | None = Field(default=None, description="Mean share of cited papers that are gold.")
    cited_supports_fact: float | None = Field(default=None, description="Answers whose cited text holds the facts.")
    refusal_precision: float | None = Field(default=None, description="Declines that were right to decline.")
    refusal_recall: float | None = Field(default=None, description="Unanswerable questions that were declined.")
    forbidden_rate: float | None = Field(
        default=None, description="Questions with must_not_include whose answer says one of those strings."
    )
    words_p50: float | None = Field(default=None, description="Median words per answer (declines left out).")
    words_mean: float | None = Field(default=None, description="Mean words per answer (declines left out).")
    copied_share: float | None = Field(
        default=None,
        description=f"Mean over answers of the share of their {COPY_SPAN_WORDS}-word spans copied verbatim from a "
        "retrieved paper's abstract (answers shorter than that left out).",
    )
    first_token_p50: float | None = None
    first_token_p95: float | None = None
    total_p50: float | None = None
    total_p95: float | None = None


HEADLINE_METRICS = (
    "accuracy",
    "fact_accuracy",
    "recall_at_k",
    "mrr",
    "citation_validity",
    "cited_gold",
    "cited_supports_fact",
    "refusal_precision",
    "refusal_recall",
    "forbidden_rate",
)
"""Rate metrics (0..1) shown in tables and bar charts, in that order."""

STYLE_METRICS = ("words_p50", "words_mean", "copied_share")
"""How the answers read: their length and how much of them is pasted from abstracts (tables only)."""

LATENCY_METRICS = ("first_token_p50", "first_token_p95", "total_p50", "total_p95")


@dataclass(frozen=True)
class Scored:
    """The parts of a per-question record that aggregation reads."""

    type: str
    verdicts: Verdicts
    first_token: float | None
    total: float | None


def aggregate_group(items: Sequence[Scored]) -> GroupMetrics:
    """Metrics of one group of scored questions."""
    verdicts = [item.verdicts for item in items]
    answerable = [v for v in verdicts if not v.should_decline]
    answered = [v for v in verdicts if v.declined is False]
    declined = [v for v in verdicts if v.declined]
    unanswerable = [v for v in verdicts if v.should_decline and (v.declined is not None or v.error)]
    return GroupMetrics(
        n=len(items),
        errors=sum(v.error is not None for v in verdicts),
        accuracy=mean(v.correct for v in verdicts),
        fact_accuracy=mean(
            v.fact_correct if v.error is None else False for v in answerable if v.fact_correct is not None or v.error
        ),
        recall_at_k=mean(v.recall_at_k for v in verdicts),
        mrr=mean(v.reciprocal_rank for v in verdicts),
        citation_validity=mean(v.citations_valid for v in answered),
        cited_gold=mean(v.cited_gold for v in answered),
        cited_supports_fact=mean(v.cited_supports_fact for v in answered),
        refusal_precision=mean(v.should_decline for v in declined),
        refusal_recall=mean(bool(v.declined) for v in unanswerable),
        forbidden_rate=mean(v.forbidden_hit for v in verdicts),
        words_p50=percentile((v.words for v in answered), 50),
        words_mean=mean(v.words for v in answered),
        copied_share=mean(v.copied_spans / v.spans for v in answered if v.spans),
        first_token_p50=percentile((item.first_token for item in items), 50),
        first_token_p95=percentile((item.first_token for item in items), 95),
        total_p50=percentile((item.total for item in items), 50),
        total_p95=percentile((item.total for item in items), 95),
    )


def aggregate(items: Sequence[Scored]) -> dict[str, GroupMetrics]:
    """Metrics per question type, sorted by type name, plus OVERALL for all questions together."""
    by_type: dict[str, list[Scored]] = {}
    for item in items:
        by_type.setdefault(item.type, []).append(item)
    groups = {name: aggregate_group(by_type[name]) for name in sorted(by_type)}
    groups[OVERALL] = aggregate_group(items)
    return groups


def failure_reasons(verdicts: Verdicts, k: int) -> list[str]:
    """Why a question failed, as short human sentences (empty when nothing went wrong)."""
    if verdicts.error:
        return [f"error: {verdicts.error}"]
    reasons: list[str] = []
    if verdicts.should_decline and verdicts.declined is False:
        reasons.append("answered a question the collection cannot answer")
    if not verdicts.should_decline and verdicts.declined:
        reasons.append("declined a question the collection answers")
    if verdicts.forbidden:
        reasons.append("says what it must not: " + " | ".join(verdicts.forbidden))
    if verdicts.missing and not verdicts.declined:
        shown = "; ".join(" | ".join(group) for group in verdicts.missing)
        reasons.append(f"missing facts: {shown}")
    if verdicts.recall_at_k is not None and verdicts.recall_at_k < 1:
        reasons.append(f"gold papers retrieved in top {k}: {len(verdicts.gold_retrieved)}")
    if verdicts.invalid_citations:
        reasons.append(f"cites sources that do not exist: {verdicts.invalid_citations}")
    if verdicts.cited_gold == 0:
        reasons.append("cites no gold paper")
    if verdicts.cited_supports_fact is False:
        reasons.append("cited papers' text does not hold the facts")
    return reasons


def failure_severity(verdicts: Verdicts) -> tuple[int, float]:
    """Sort key, worst first: errors, invalid citations, wrong verdicts, then weak retrieval."""
    rank = 0
    if verdicts.error:
        rank = 4
    elif verdicts.invalid_citations:
        rank = 3
    elif verdicts.correct is False:
        rank = 2
    elif verdicts.cited_supports_fact is False or verdicts.cited_gold == 0:
        rank = 1
    return rank, 1.0 - (verdicts.recall_at_k if verdicts.recall_at_k is not None else 1.0)
