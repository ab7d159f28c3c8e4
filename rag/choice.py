"""Which papers an answer names, chosen on evidence: the support judge (`rag.judge`) reads the question's
description of a paper against the retrieved papers' abstracts.

* "Which paper ...?" (`PaperChoice.identified`): a declined answer gets the paper that fits; a named paper that
  does not fit gives way to one that does.
* "Which papers ...?" (`PaperChoice.completed`): the papers the answer left out that fit are named; a question
  that describes its papers one by one is judged description by description (`PaperChoice.described`).

Only titles and citations are added: nothing unchecked is said of a paper. Used by the answer stage
(`rag.answer`) after verification.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from rag.attribution import named_papers
from rag.claims import format_passage, likeness, passage_sentences
from rag.context import asks_for_paper, asks_for_several
from rag.embeddings import SentenceVectors
from rag.evidence import Evidence, build_evidence
from rag.retrieve import question_content
from rag.settings import Settings
from rag.text import described_alternatives, question_parts
from rag.types import SentenceCheck, Source
from rag.verify import has_supported_claim


def describes(judgement) -> bool:
    """True when the judge reads a question's description of a paper as that paper's: "Supports" is its most
    likely label before the calibration bias. The bias is fitted on claims written to be checked, half of them
    false by design; a question's description is written to match its paper, so the model's own label order is
    the better reading here: of four described papers the model had declined, the calibrated judge named
    none and the uncalibrated label order three."""
    logprobs = judgement.logprobs
    if not logprobs:
        return judgement.verdict == "supported"
    return max(logprobs, key=logprobs.__getitem__) == "supported"


def _support(judgement) -> float:
    """The judgement's calibrated probability of "supported" (0 when it gives none)."""
    return float(judgement.probabilities.get("supported", 0.0))


def _names_paper(source: Source) -> SentenceCheck:
    text = f"The paper that fits this description is “{source.title}” [{source.number}]."
    return SentenceCheck(text=text, citations=[source.number], supported=True, composed=True, verdict="supported")


def _another_paper(source: Source) -> SentenceCheck:
    text = f"Another paper that fits: “{source.title}” [{source.number}]."
    return SentenceCheck(text=text, citations=[source.number], supported=True, composed=True, verdict="supported")


def _naming_verdict(checks: Sequence[SentenceCheck], number: int) -> str | None:
    """The judge's verdict on the first kept sentence citing paper `number` (None when it was not judged)."""
    return next((c.verdict for c in checks if not c.dropped and c.citations[:1] == [number]), None)


def _first_cited(checks: Sequence[SentenceCheck]) -> int | None:
    """The paper the answer's first kept, supported sentence cites first."""
    return next(
        (check.citations[0] for check in checks if check.supported and not check.dropped and check.citations), None
    )


class PaperChoice:
    """The judge's choice of papers for one answerer: `judge` reads descriptions, `question_vector` embeds
    them (cached by the embedder), `sentence_vectors` gives the evidence of papers the model was not shown."""

    def __init__(
        self,
        judge: Any,
        question_vector: Callable[[str], np.ndarray],
        sentence_vectors: SentenceVectors,
        settings: Settings,
    ):
        self.judge = judge
        self.question_vector = question_vector
        self.sentence_vectors = sentence_vectors
        self.settings = settings

    def identified(
        self,
        question: str,
        shown: Sequence[Source],
        evidence: dict[int, Evidence],
        checks: list[SentenceCheck],
        retrieved: Sequence[Source] = (),
    ) -> list[SentenceCheck]:
        """A "which paper ...?" answer whose paper is chosen on evidence. The judge reads the description in the
        question against a paper's sentences most like it (`describes`).

        * Declined: the best papers are read (`identify_paper_tries`, best first), and the first that fits is
          named, cited. The small model declines such questions when the question paraphrases the abstract,
          even with the matching paper as source [1]. A refusal stays when no paper fits, and when the question
          names a paper in view ("Which datasets does XNet use?"): the question is about that paper, and another
          paper whose abstract shares its topic would answer a question nobody asked.
        * Answered with another paper than the best-retrieved one: both are read. When the model's paper does
          not fit, its sentences about it go and the best-retrieved paper is named instead if it fits, else
          the first of the other retrieved papers most like the description that fits (as below).
        * Answered with the best-retrieved paper, but the judge found its abstract does not address the answer's
          naming sentence, nor fit the description: the other retrieved papers (`retrieved`, those the model was
          not shown included) most like the description are read (`identify_paper_tries`, best first), and the
          first that fits replaces it.
        In every other case the model's choice stands."""
        if not asks_for_paper(question) or not getattr(self.judge, "detects_contradiction", False) or not shown:
            return checks
        description = question_content(question)
        vector = self.question_vector(description)
        pool = dict(evidence)  # with the evidence of retrieved papers the model was not shown, once needed

        def fits(source: Source) -> bool:
            passage = self.description_passage(description, vector, source, pool[source.number])
            return bool(passage) and describes(self.judge.judge_many([(description, passage)])[0])

        if not has_supported_claim(checks):
            if named_papers(question, evidence):  # a question that names its paper is not asking which it is
                return checks
            tried = shown[: self.settings.answer.identify_paper_tries]
            found = next((source for source in tried if fits(source)), None)
            return checks if found is None else [*checks, _names_paper(found)]
        named = _first_cited(checks)
        lead = shown[0]
        by_number = {source.number: source for source in shown}
        tries = self.settings.answer.identify_paper_tries
        if named is None or named not in by_number or tries == 0:
            return checks

        def fitting_other(excluded: set[int]) -> Source | None:
            others = [source for source in retrieved if source.number not in excluded]
            ranked = self.most_like(description, others, pool)
            return next((source for source in ranked[:tries] if fits(source)), None)

        if named != lead.number and not fits(by_number[named]):
            found = lead if fits(lead) else fitting_other({named, lead.number})
        elif named == lead.number and _naming_verdict(checks, named) == "not_addressed" and not fits(lead):
            found = fitting_other({named})
        else:
            found = None
        if found is None:
            return checks
        kept = [
            check.model_copy(update={"dropped": True}) if named in check.citations and not check.dropped else check
            for check in checks
        ]
        return [_names_paper(found), *kept]

    def completed(
        self,
        question: str,
        shown: Sequence[Source],
        evidence: dict[int, Evidence],
        checks: list[SentenceCheck],
        retrieved: Sequence[Source] = (),
    ) -> list[SentenceCheck]:
        """A several-paper answer ("Which papers ...?") completed with the papers it left out that fit the
        question. A question that describes its papers one by one ("one that A, the other B") goes to
        `with_described_papers`. Otherwise the judge reads the question's first part, without its frame,
        against each left-out shown paper (`omitted_paper_checks` of them, best retrieved first), and one it
        finds supported with its calibrated bias (stricter than `describes`: a wrongly added paper is a false
        claim) is named, cited: "Another paper that fits: “Title” [n]." Given four papers, the 1.5B model
        writes about two or three and skips a fitting one, often the first; only the title is added, so
        nothing unchecked is said of it."""
        tries = self.settings.answer.omitted_paper_checks
        if not tries or not asks_for_several(question) or not getattr(self.judge, "detects_contradiction", False):
            return checks
        kept = [check for check in checks if not check.dropped]
        cited = {number for check in kept for number in check.citations}
        if not cited or not has_supported_claim(kept):
            return checks
        alternatives = [question_content(alternative) for alternative in described_alternatives(question)]
        if alternatives:
            return self.described(question, alternatives, retrieved or shown, evidence, checks)
        parts = question_parts(question)
        description = question_content(parts[0] if parts else question)
        vector = self.question_vector(description)
        left_out = [source for source in shown if source.number not in cited][:tries]
        passages = {
            source.number: self.description_passage(description, vector, source, evidence[source.number])
            for source in left_out
        }
        left_out = [source for source in left_out if passages[source.number]]
        if not left_out:
            return checks
        judgements = self.judge.judge_many([(description, passages[source.number]) for source in left_out])
        fitting = [source for source, judged in zip(left_out, judgements, strict=True) if judged.verdict == "supported"]
        return [*checks, *(_another_paper(source) for source in fitting)]

    def described(
        self,
        question: str,
        alternatives: Sequence[str],
        retrieved: Sequence[Source],
        evidence: dict[int, Evidence],
        checks: list[SentenceCheck],
    ) -> list[SentenceCheck]:
        """A several-paper answer to a question that describes each paper it wants (`described_alternatives`),
        checked description by description. The judge reads each description against the papers the answer
        cites and the `omitted_paper_checks` retrieved papers most like it (those the model was not shown
        included); each description goes to the paper it finds supporting it most (calibrated verdict), which
        is named when the answer left it out. Read whole, no paper fits such a question (the judge finds it
        undecided for every paper); read one by one, each description is decided by its paper. The cited papers
        are read so that a description the answer covers is not given to a left-out paper; none is dropped: the
        judge found descriptions contradicted by the very papers they describe."""
        cited = {number for check in checks if not check.dropped for number in check.citations}
        pool = dict(evidence)
        per_description = self.settings.answer.omitted_paper_checks
        candidates = set(cited)
        for alternative in alternatives:
            ranked = self.most_like(alternative, retrieved, pool)
            candidates.update(source.number for source in ranked[:per_description])
        description = question_content(question)
        vector = self.question_vector(description)
        passages = {
            source.number: self.description_passage(description, vector, source, pool[source.number])
            for source in retrieved
            if source.number in candidates
        }
        papers = [source for source in retrieved if passages.get(source.number)]
        # paper by paper, so that each passage is evaluated once and its descriptions reuse it in the KV cache
        pairs = [(alternative, passages[source.number]) for source in papers for alternative in alternatives]
        judged = iter(self.judge.judge_many(pairs))
        verdicts = {source.number: [next(judged) for _ in alternatives] for source in papers}
        chosen: list[Source] = []
        for index in range(len(alternatives)):
            supporting = [source for source in papers if verdicts[source.number][index].verdict == "supported"]
            if supporting:
                best = max(supporting, key=lambda source: _support(verdicts[source.number][index]))
                if best not in chosen:
                    chosen.append(best)
        added = [_another_paper(source) for source in chosen if source.number not in cited]
        return [*checks, *added]

    def most_like(self, description: str, sources: Sequence[Source], pool: dict[int, Evidence]) -> list[Source]:
        """`sources` ranked by how like `description` their abstracts are (`likeness`); the evidence of those
        missing from `pool` (retrieved papers the model was not shown) is built into it."""
        pool.update(build_evidence([source for source in sources if source.number not in pool], self.sentence_vectors))
        vector = self.question_vector(description)
        weight = self.settings.answer.support_lexical_weight
        return sorted(sources, key=lambda source: -likeness(description, vector, pool[source.number], weight))

    def description_passage(self, description: str, vector: np.ndarray, source: Source, evidence: Evidence) -> str:
        """What the judge reads a question's description of a paper against: the paper's title and its
        `judge_passage_sentences` sentences most like the description ("" when it has none)."""
        count = self.settings.answer.judge_passage_sentences
        sentences = passage_sentences(description, vector, evidence, count, self.settings.answer.support_lexical_weight)
        return format_passage(source.title, sentences) if sentences else ""
