"""Claim checking: what the collection says of a claim, paper by paper (`Bot.check`, `rag check`).

retrieve the papers closest to the claim -> show the judge each paper's title and its abstract sentences most
like the claim -> a verdict per paper (supported / contradicted / not addressed) with the sentence it rests on
-> the claim's verdict: that of the most confident deciding paper, or "not_enough_info" when none decides.

The passage is a few sentences, not the whole abstract, because every token costs prefill on a CPU (about 2 s
a paper instead of 9 s), and the sentence that decides a claim is nearly always one of those most like it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

import numpy as np

from rag.evidence import Evidence, build_evidence
from rag.judge import Judge, Judgement
from rag.settings import Settings
from rag.text import figures_in, key_terms, opens_with_reference
from rag.types import ClaimCheck, Filters, Paper, PaperVerdict, Source

DECIDING = ("supported", "contradicted")

_CLAIM_PREFIX = re.compile(
    r"^\s*(?:(?:check|claim|verify|fact[- ]?check)\s*:\s*|is it (?:true|the case|correct) that\s+)", re.IGNORECASE
)


def claim_of(message: str) -> str | None:
    """The claim a chat message asks to check ("Is it true that X?", "check: X", "claim: X"), else None."""
    match = _CLAIM_PREFIX.match(message)
    if not match:
        return None
    claim = message[match.end() :].strip().rstrip("?").strip()
    return claim[:1].upper() + claim[1:] if claim else None


def passage_sentences(
    claim: str, claim_vector: np.ndarray, evidence: Evidence, count: int, lexical_weight: float = 0.0
) -> list[str]:
    """The `count` sentences of the paper most like the claim, in the paper's order, among its abstract and its
    record (authors, schedule), the title left out since the passage gets it separately. A record sentence is a
    candidate only for a claim that shares a word with it beyond the title (a name, a day, a room): "X was
    written by ..." holds the title's words, and the judge read "X proposes Y" against it as contradicted.

    "Most like" is the support score's blend (`Settings.answer.support_lexical_weight`): cosine similarity and
    the share of the claim's key terms a sentence holds. The sentence that decides a claim names what the
    claim names, and on expert-labelled claims outside this project's field the blend put it in a 3-sentence
    passage more often than cosine alone (rationale recall 0.74 -> 0.77). A sentence that holds a figure the
    claim states is added (up to `count` of them): without it the judge cannot see where the figure comes from,
    reads the claim as not addressed, and a correct figure was removed. An abstract sentence that opens by
    pointing back ("This approach ...") comes with the sentence before it: alone, the judge reads "this
    approach" as the paper's own method when the abstract meant the earlier work it had just named."""
    start = 1 if evidence.sentences and evidence.abstract_start else 0
    sentences = evidence.sentences[start:]
    if not sentences:
        return []
    similarity = _likeness(claim, claim_vector, evidence, start, lexical_weight)
    terms = key_terms(claim)
    first_of_abstract = evidence.abstract_start - start
    title_terms = key_terms(evidence.sentences[0]) if start else set()
    for index in range(first_of_abstract):  # a record sentence only for a claim about the record itself
        if not (terms & (key_terms(sentences[index]) - title_terms)):
            similarity[index] = -np.inf
    ranked = [index for index in np.argsort(-similarity, kind="stable").tolist() if similarity[index] > -np.inf]
    best = set(ranked[:count])
    if figures := figures_in(claim):  # a figure is read in its own sentence, whatever else is most alike
        holding = [index for index in ranked[count:] if figures_in(sentences[index]) & figures]
        best.update(holding[:count])
    for index in sorted(best):
        if index > first_of_abstract and opens_with_reference(sentences[index]):
            best.add(index - 1)
    return [sentences[index] for index in sorted(best)]


def likeness(claim: str, claim_vector: np.ndarray, evidence: Evidence, lexical_weight: float = 0.0) -> float:
    """How like `claim` the paper's most alike abstract sentence is, scored as `passage_sentences` ranks them
    (-inf for a paper without abstract sentences): which of several papers a description fits best."""
    scores = _likeness(claim, claim_vector, evidence, evidence.abstract_start, lexical_weight)
    return float(scores.max()) if scores.size else -np.inf


def _likeness(claim: str, claim_vector: np.ndarray, evidence: Evidence, start: int, weight: float) -> np.ndarray:
    """Each sentence's (from `start`) cosine to the claim, blended with the share of its key terms it holds."""
    similarity = evidence.vectors[start:] @ claim_vector
    terms = key_terms(claim)
    if weight and terms:
        overlap = np.array([len(terms & key_terms(sentence)) / len(terms) for sentence in evidence.sentences[start:]])
        similarity = (1 - weight) * similarity + weight * overlap
    return similarity


def format_passage(title: str, sentences: Sequence[str]) -> str:
    return f"{title}\n{' '.join(sentences)}".strip()


def overall_verdict(papers: Sequence[PaperVerdict]) -> str:
    """The claim's verdict: the most confident paper that decides it, else not_enough_info."""
    deciding = [paper for paper in papers if paper.verdict in DECIDING]
    if not deciding:
        return "not_enough_info"
    return max(deciding, key=lambda paper: paper.confidence).verdict


def order_papers(papers: Sequence[PaperVerdict]) -> list[PaperVerdict]:
    """Deciding papers first, most confident first; then the silent ones in retrieval order."""
    deciding = sorted((p for p in papers if p.verdict in DECIDING), key=lambda p: -p.confidence)
    return deciding + [paper for paper in papers if paper.verdict not in DECIDING]


class ClaimChecker:
    """Judges a claim against the best retrieved papers."""

    def __init__(self, judge: Judge, embedder, settings: Settings, sentence_vectors=None):
        self.judge = judge
        self.embedder = embedder
        self.settings = settings
        self.sentence_vectors = sentence_vectors if sentence_vectors is not None else embedder

    def check(self, claim: str, retriever, k: int | None = None, filters: Filters | None = None) -> ClaimCheck:
        started = time.perf_counter()
        sources = retriever.search(claim, k=k or self.settings.answer.check_papers, filters=filters)
        retrieved = time.perf_counter()
        papers = self.judge_sources(claim, sources) if sources and retriever.is_relevant(sources) else []
        papers = order_papers(papers)
        timings = {"retrieve": retrieved - started, "judge": time.perf_counter() - retrieved}
        timings["total"] = time.perf_counter() - started
        return ClaimCheck(
            claim=claim,
            verdict=overall_verdict(papers),
            papers=papers,
            timings={key: round(value, 3) for key, value in timings.items()},
        )

    def judge_sources(self, claim: str, sources: Sequence[Source]) -> list[PaperVerdict]:
        evidence = build_evidence(sources, self.sentence_vectors)
        claim_vector = np.asarray(self.embedder.embed([claim])[0], dtype=np.float32)
        count = self.settings.answer.judge_passage_sentences
        weight = self.settings.answer.support_lexical_weight
        shown = [
            (source, passage_sentences(claim, claim_vector, evidence[source.number], count, weight))
            for source in sources
        ]
        shown = [(source, sentences) for source, sentences in shown if sentences]
        passages = [format_passage(source.title, sentences) for source, sentences in shown]
        judgements = self.judge.judge_many([(claim, passage) for passage in passages])
        verdicts = []
        for (source, sentences), passage, judgement in zip(shown, passages, judgements, strict=True):
            verdict = self.paper_verdict(source, judgement, sentences, claim_vector, evidence[source.number])
            verdicts.append(verdict.model_copy(update={"passage": passage, "logprobs": dict(judgement.logprobs)}))
        return verdicts

    def check_paper(self, claim: str, paper: Paper) -> PaperVerdict | None:
        """`claim` judged against one given paper, shown as `check` shows it (None: the paper has no text)."""
        verdicts = self.judge_sources(claim, [Source(number=1, paper=paper, score=1.0)])
        return verdicts[0] if verdicts else None

    @staticmethod
    def paper_verdict(
        source: Source, judgement: Judgement, sentences: Sequence[str], claim_vector: np.ndarray, evidence: Evidence
    ) -> PaperVerdict:
        """The verdict with its deciding sentence: the passage sentence most like the claim."""
        body = evidence.sentences[evidence.abstract_start :]
        vectors = evidence.vectors[evidence.abstract_start :]
        shown = [index for index, sentence in enumerate(body) if sentence in sentences]
        best = max(shown, key=lambda index: float(vectors[index] @ claim_vector))
        return PaperVerdict(
            paper_id=source.paper_id,
            title=source.title,
            verdict=judgement.verdict,
            sentence=body[best],
            number=source.number,
            confidence=round(judgement.confidence, 4),
        )
