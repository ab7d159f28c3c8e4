"""The answer stage: follow-up rewriting (`rag.rewrite`) -> retrieval -> relevance gate -> prompt
(`rag.context`) -> streamed generation -> citation verification (`rag.verify`) and the judge (`rag.judge`) ->
the question parts the answer left out, asked again alone (`rag.parts`) -> quotes (`rag.quotes`), the papers a
"which paper(s)" answer names (`rag.choice`) and records (`rag.records`) -> `Answer`.

Rules it keeps, whatever the model or the texts say:

* **No evidence, no model.** When retrieval finds nothing relevant (`Retriever.is_relevant`), the answer is
  `DECLINE_TEXT` and the model is never called; the closest papers are still listed as sources.
* **Short context, shaped by the question.** On a CPU, prefill costs ~24 ms a token, so the prompt holds only
  the best few papers and their most question-like abstract sentences (`rag.context`), and the first prompt
  leaves out papers far below the lead one (`weak_source_margin`). When that lean answer is declined, the
  model is asked again with every paper in view (the 1.5B model declines, or answers with a claim no source
  supports, some questions with one paper that it answers with three). The declined text was already
  streamed, so a `Restart` item tells the caller to withdraw it. Few questions are asked twice, answers are
  as often correct as with every paper in the first prompt, and the first token comes sooner
  (bench/first_token.py compares the two).
* **Every sentence backed.** The model's text is streamed as it comes; then `rag.verify.verify_answer` checks
  each sentence against the source it cites, fixes or removes citations, and drops unsupported sentences.
* **Refusals.** An answer is declined (`declined=True`, text `DECLINE_TEXT`) when, after verification, no
  sentence makes a claim a source supports. That covers the model's own refusal ("The collection does not
  say."), an answer made of unsupported claims, and an answer that obeys an instruction injected in a question
  or an abstract (which no source supports). When the model refuses in part but also makes supported claims,
  those claims stand: the evidence holds an answer, and the refusal sentence is kept as the model wrote it.
  A full refusal is honoured unless the evidence clearly holds the answer: a paper's record (who, when,
  where; `rag.records`) or the figure of the paper the question names (`rag.quotes.figure_quote`) then
  replaces it. The only second generation is the lean prompt's retry above, with a bigger prompt: asking
  the same prompt again would double the wait for an answer that is usually the same.
* **Injection.** Source sentences that read like instructions to a model are never shown to it nor counted as
  evidence; the question is passed as labelled data under a system prompt that says so.
"""

from __future__ import annotations

import re
import time
from collections.abc import Generator, Iterator, Sequence
from contextlib import closing

import numpy as np

from rag.choice import PaperChoice
from rag.claims import format_passage, passage_sentences
from rag.context import (
    asks_for_paper,
    asks_for_several,
    asks_metadata,
    asks_quantity,
    build_messages,
    select_passages,
)
from rag.embeddings import SentenceVectors
from rag.evidence import Evidence, build_evidence
from rag.generate import GenerationRequest
from rag.injection import without_instructions
from rag.judge import answer_verdict
from rag.markers import parse_citations, remove_citations
from rag.parts import (
    compared_paper_messages,
    compared_papers,
    crossed_comparisons,
    kept_sentences,
    part_messages,
    superseded,
    unanswered_parts,
    uncovered_papers,
    without_echo,
)
from rag.prompts import CONDENSE_PROMPT, DECLINE_TEXT, SYSTEM_PROMPT
from rag.quotes import best_sentences, expand_bare_titles, figure_quote, quoted_numbers
from rag.records import complete_from_records, with_method_names
from rag.rewrite import (
    clean_rewrite,
    format_history,
    heuristic_rewrite,
    needs_rewrite,
    papers_in_view,
    search_in_view,
)
from rag.settings import Settings
from rag.text import figures_in, is_decline, key_terms, short_name
from rag.types import Answer, Citation, Filters, History, Paper, Restart, SentenceCheck, Source
from rag.verify import answer_text, has_supported_claim, verify_answer

ANSWER_STOPS = ["\n\nQuestion:", "\nSources:"]
"""Where a model that starts a new exchange on its own is cut off."""

RESTART_REASON = "The first try found no supported answer; asking again with more papers in view."
"""What a chat shows when the lean prompt's answer is withdrawn (`Restart`)."""

_ANSWER_LABEL = re.compile(r"^\s*(?:answer|response)\s*:\s*", re.IGNORECASE)


# --- answer records ---------------------------------------------------------------------------------------


def citations_for(text: str, sources: Sequence[Source]) -> list[Citation]:
    """Citation records for the numbers in `text`, ordered by number."""
    by_number = {source.number: source for source in sources}
    return [
        Citation(number=number, paper_id=by_number[number].paper_id, title=by_number[number].title)
        for number in sorted(parse_citations(text))
        if number in by_number
    ]


def misplaced_figure(claim: str, evidence: Evidence) -> bool:
    """Whether a claim the judge found its abstract does not address states a figure that the paper's record
    (title, authors, schedule) does not hold. Such a figure was read off another result, or another paper, than
    the claim gives it to ("X reaches 81.2% on A" from "Y reaches 81.2% on B"); a figure from the record (a
    time, a room) is judged against sentences that do not read as claims, so it is kept."""
    figures = figures_in(claim)
    record = set().union(*(figures_in(sentence) for sentence in evidence.sentences[: evidence.abstract_start]))
    return bool(figures) and not figures <= record


def _says_otherwise(judgement) -> float:
    """How much the judge reads a single sentence as contradicting a claim rather than as silent on it. A
    sentence on another point leaves support unlikely, so "contradicted" gets much of the weight there too;
    the sentence that refutes the claim is the one that addresses it, so contradiction is weighed against
    silence, not alone."""
    probabilities = judgement.probabilities
    return float(probabilities.get("contradicted", 0.0)) - float(probabilities.get("not_addressed", 0.0))


def passage_focus(question: str, standalone: str) -> str:
    """The text that picks which abstract sentences the model sees. A follow-up is rewritten to name its
    subject so that retrieval finds the paper again, but the subject's words then pull that paper's topic
    sentence, which the previous answer already gave, while the follow-up's own words ask for something else
    ("which framework did they plug it into?"). So a rewritten follow-up's sentences are picked by the
    follow-up as asked, and any other question's by the question."""
    return question if standalone != question and question.strip() else standalone


def premise_correction(
    question: str, contradicted: SentenceCheck, passage: Sequence[str], source: Source
) -> SentenceCheck | None:
    """When a contradicted sentence repeats what the question assumes (at least `_PREMISE_TERMS` of the
    question's key terms, and half of them, in a question that presupposes (`_PRESUPPOSES`)), the
    answer says that the source states otherwise, quoting the passage sentence closest to the claim. A
    contradicted sentence the model added on its own is only dropped: the question did not carry that error."""
    asked = key_terms(question)
    claimed = key_terms(contradicted.text)
    shared = len(asked & claimed)
    if not passage or not _PRESUPPOSES.search(question) or shared < _PREMISE_TERMS or shared < len(asked) / 2:
        return None
    return correction(claimed, passage, source)


def correction(claimed: set[str], passage: Sequence[str], source: Source) -> SentenceCheck:
    """The sentence "The question's premise does not hold: “XNet” states that ... [n]", quoting the passage
    sentence that shares the most key terms with the false claim; the answer stage passes the one sentence the
    judge found most contradicting (`Answerer.contradicting_sentence`) when it has judged them one by one."""
    deciding = max(passage, key=lambda sentence: len(key_terms(sentence) & claimed))
    name = short_name(source.title)
    stated = deciding.strip().rstrip(".") if deciding.startswith(name) else _lowered(deciding)
    text = f"The question's premise does not hold: “{name}” states that {stated} [{source.number}]"
    return SentenceCheck(text=text, citations=[source.number], supported=True, composed=True, verdict="contradicted")


def stated_premise(question: str) -> str | None:
    """The claim a question states outright and builds on: "Given that P, why ...?", "Since P, which ...?",
    "P, right? ...". None for any other question, including "Why did X do Y?", whose premise only the answer
    repeating it can show (see `premise_correction`)."""
    match = _STATED_PREMISE.search(question)
    if not match:
        return None
    premise = (match["lead"] or match["tail"]).strip(" ,")
    return premise[:1].upper() + premise[1:] if len(premise.split()) >= 4 else None


_STATED_PREMISE = re.compile(
    r"^\W*(?:given that|since|considering that|now that|assuming that)\s+(?P<lead>[^,?]+),"
    r"|^\W*(?P<tail>[^?]+?),\s*(?:right|correct|true|isn't it|aren't they|didn't they|wasn't it)\s*\?",
    re.IGNORECASE,
)


def _lowered(sentence: str) -> str:
    """A quoted sentence continued after "states that": its first word lower-cased unless it is a name."""
    sentence = sentence.strip().rstrip(".")
    first = sentence.split(" ", 1)[0]
    if first[1:2].isupper() or any(ch.isdigit() for ch in first):
        return sentence
    return sentence[:1].lower() + sentence[1:]


_PREMISE_TERMS = 3
_PRESUPPOSES = re.compile(
    r"^\W*(?:why|how come|given that|since|considering that|now that)\b"
    r"|,?\s*(?:right|correct|true|isn't it|aren't they|didn't they|wasn't it|no)\s*\?",
    re.IGNORECASE,
)
"""Question shapes that take a claim for granted ("Why did X need Y?", "Given that X, ...", "X did Y, right?"):
only these carry a premise to correct. A sentence that merely restates another question is dropped, not
answered with "the premise does not hold"."""


# --- the stage -------------------------------------------------------------------------------------------


class Answerer:
    """Turns a question (and the conversation so far) into a streamed, verified, cited `Answer`."""

    def __init__(
        self,
        generator,
        embedder,
        settings: Settings,
        sentence_vectors: SentenceVectors | None = None,
        judge=None,
    ):
        self.generator = generator
        self.embedder = embedder
        self.settings = settings
        self.judge = judge
        """The support judge (`rag.judge`); only one that detects contradictions removes answer sentences."""
        self.sentence_vectors = SentenceVectors(embedder) if sentence_vectors is None else sentence_vectors
        """Source sentences embedded once (the index's file-backed store in a `Bot`, else one in memory)."""
        self.choice = PaperChoice(judge, self.question_vector, self.sentence_vectors, settings)
        """Which papers a "which paper(s)" answer names, chosen by the judge (`rag.choice`)."""

    @property
    def backend(self) -> str:
        return getattr(self.generator, "name", type(self.generator).__name__)

    def stream(
        self,
        question: str,
        retriever,
        history: History = (),
        k: int | None = None,
        filters: Filters | None = None,
    ) -> Iterator[str | Restart | Answer]:
        """Yield the answer's text pieces as the model writes them, then the verified `Answer`, last. A
        `Restart` in between withdraws the pieces before it: the lean first prompt's answer was declined, and
        the model is asked again with every paper."""
        started = time.perf_counter()
        timings: dict[str, float] = {}
        clock = _Clock(started, timings)

        in_view = papers_in_view(question, history, retriever, k, filters) if self.settings.answer.history_turns else []
        standalone = without_instructions(self.standalone_question(question, history, in_view))
        clock.lap("rewrite")
        sources = search_in_view(retriever, standalone, question, in_view, k=k, filters=filters)
        clock.lap("retrieve")
        answer = Answer(
            question=question,
            standalone_question=standalone if standalone != question else None,
            text=DECLINE_TEXT,
            sources=sources,
            declined=True,
            backend=self.backend,
            timings=timings,
        )
        if not sources or not retriever.is_relevant(sources):
            timings["first_token"] = clock.since_start()
            yield DECLINE_TEXT
            yield self._finish(answer, clock)
            return

        focus = passage_focus(question, standalone)
        shown, evidence = self.prepare_sources(standalone, sources, focus=focus)
        clock.lap("prepare")
        lean = len(shown) < len(sources[: self.shown_count(standalone)])  # weak papers were left out
        answer, streamed = yield from self.attempt(answer, standalone, sources, shown, evidence, clock)
        if lean and answer.declined:  # ask again with every paper in view
            if streamed:
                yield Restart(reason=RESTART_REASON)
            timings.pop("first_token", None)  # the first token that counts is one the user keeps
            for stage in ("generate", "verify"):
                timings[f"lean_{stage}"] = timings.pop(stage)
            shown, evidence = self.prepare_sources(standalone, sources, every_paper=True, focus=focus)
            answer, _ = yield from self.attempt(answer, standalone, sources, shown, evidence, clock)
        yield self._finish(answer, clock)

    def attempt(
        self,
        answer: Answer,
        question: str,
        sources: Sequence[Source],
        shown: list[Source],
        evidence: dict[int, Evidence],
        clock: _Clock,
    ) -> Generator[str, None, tuple[Answer, bool]]:
        """Generate over the `shown` sources, streaming the text, then verify and complete it; return the
        `answer` updated and whether any text was streamed."""
        pieces: list[str] = []
        request = self.request(question, shown)
        yield from self.generate(request, pieces, clock)
        clock.timings.setdefault("first_token", clock.since_start())
        clock.lap("generate")

        raw = _ANSWER_LABEL.sub("", "".join(pieces)).strip()
        text, checks = verify_answer(raw, shown, self.embedder, self.settings, evidence=evidence, question=question)
        judging = time.perf_counter()
        checks = self.judged(question, shown, evidence, checks)
        checks = self.with_premise_checked(question, shown, evidence, checks)
        clock.timings["judge"] = time.perf_counter() - judging  # a part of "verify"
        checks = self.with_compared_papers(question, shown, evidence, checks, retrieved=sources)
        checks = self.with_parts_answered(question, shown, evidence, checks, asked=answer.question)
        checks = self.with_quotes(question, shown, evidence, checks)
        checks = self.choice.identified(question, shown, evidence, checks, retrieved=sources)
        checks = self.choice.completed(question, shown, evidence, checks, retrieved=sources)
        shown_numbers = {source.number: source for source in shown}
        sources = [shown_numbers.get(source.number, source) for source in sources]
        text, checks = self.with_records(question, sources, checks)
        clock.lap("verify")
        update = {"sources": sources, "sentences": checks, "text": DECLINE_TEXT, "citations": [], "declined": True}
        if has_supported_claim(checks):
            update |= {"text": text, "citations": citations_for(text, sources), "declined": False}
        return answer.model_copy(update=update), bool(pieces)

    @property
    def _lexical_weight(self) -> float:
        return self.settings.answer.support_lexical_weight

    def request(self, question: str, shown: Sequence[Source]) -> GenerationRequest:
        """The answer request for `question` over the `shown` sources (ANSWER_STOPS cut a made-up next turn)."""
        return GenerationRequest(
            messages=build_messages(question, shown, self.settings),
            sources=shown,
            question=question,
            max_tokens=self.settings.generation.max_new_tokens,
            stop=ANSWER_STOPS,
        )

    def generate(self, request: GenerationRequest, pieces: list[str], clock: _Clock) -> Iterator[str]:
        """Stream the model's text to the caller as it comes, collecting it in `pieces`."""
        with closing(iter(self.generator.stream(request))) as stream:  # a stopped consumer stops the model
            for piece in stream:
                if not pieces:
                    clock.timings["first_token"] = clock.since_start()
                pieces.append(piece)
                yield piece

    def _finish(self, answer: Answer, clock: _Clock) -> Answer:
        clock.timings["total"] = clock.since_start()
        timings = {key: round(value, 3) for key, value in clock.timings.items()}
        return answer.model_copy(update={"timings": timings})

    def warm_up(self) -> None:
        """Run the fixed system prompt through the model once, so its KV cache holds it.

        llama.cpp reuses the longest cached token prefix of the next prompt; SYSTEM_PROMPT is that prefix for
        every question, so after this the first question pays prefill only for its own sources and question.
        """
        request = GenerationRequest(
            messages=build_messages("warm-up", [], self.settings), question="warm-up", max_tokens=1
        )
        with closing(iter(self.generator.stream(request))) as stream:
            next(stream, None)

    # --- steps ---------------------------------------------------------------------------------------------
    def judged(
        self, question: str, shown: Sequence[Source], evidence: dict[int, Evidence], checks: list[SentenceCheck]
    ) -> list[SentenceCheck]:
        """The model's cited sentences (the first `judge_max_sentences`, and `judge_after_drop` more in place of
        any removed), each judged against the abstract it cites first: its sentences most like the claim.
        Similarity let these sentences through because they reuse the source's words; the judge reads what they
        claim. A contradicted sentence is dropped, and when it repeated the question's own assumption, a
        sentence saying what the source states instead takes its place (`premise_correction`). A sentence the
        abstract does not address is dropped when `unaddressed_goes` says so."""
        if not self.settings.answer.judge_answers or not getattr(self.judge, "detects_contradiction", False):
            return checks
        by_number = {source.number: source for source in shown}
        candidates = [
            index
            for index, check in enumerate(checks)
            if check.supported and not check.dropped and not check.composed and check.citations[0] in by_number
        ]
        budget = self.settings.answer.judge_max_sentences
        judged = list(checks)
        corrections: dict[int, SentenceCheck] = {}
        extra = self.settings.answer.judge_after_drop
        while candidates and budget > 0:
            batch, candidates = candidates[:budget], candidates[budget:]
            removed = 0
            for index, (check, correction) in zip(
                batch, self.judge_batch(question, batch, checks, by_number, evidence), strict=True
            ):
                judged[index] = check
                removed += check.dropped
                if correction is not None:
                    corrections[index] = correction
            budget = min(removed, extra)
            extra -= budget
        for index in sorted(corrections, reverse=True):
            correction = corrections[index]
            if not any(c.composed and c.text == correction.text for c in judged):
                judged.insert(index + 1, correction)
        return judged

    def judge_batch(
        self,
        question: str,
        targets: Sequence[int],
        checks: Sequence[SentenceCheck],
        by_number: dict[int, Source],
        evidence: dict[int, Evidence],
    ) -> list[tuple[SentenceCheck, SentenceCheck | None]]:
        """The sentences at `targets` with the judge's verdicts, each with the sentence that corrects the
        question's premise when the judge found the sentence contradicted (else None)."""
        claims = [remove_citations(checks[index].text) for index in targets]
        vectors = np.asarray(self.embedder.embed(claims), dtype=np.float32)
        count = self.settings.answer.judge_answer_passage_sentences
        shown_sentences = [
            passage_sentences(claim, vector, evidence[checks[index].citations[0]], count, self._lexical_weight)
            for index, claim, vector in zip(targets, claims, vectors, strict=True)
        ]
        pairs = [
            (claim, self.judged_passage(claim, vector, checks[index].citations, sentences, by_number, evidence))
            for claim, vector, index, sentences in zip(claims, vectors, targets, shown_sentences, strict=True)
        ]
        judgements = self.judge.judge_many(pairs)
        if self.settings.answer.judge_answer_unbiased_contradiction:
            judgements = [answer_verdict(judgement) for judgement in judgements]
        results = []
        verdicts = zip(targets, claims, vectors, judgements, shown_sentences, strict=True)
        for index, claim, vector, judgement, sentences in verdicts:
            check = checks[index]
            if judgement.verdict == "not_addressed":
                goes = self.unaddressed_goes(question, claim, evidence[check.citations[0]])
                results.append((check.model_copy(update={"verdict": "not_addressed", "dropped": goes}), None))
                continue
            if judgement.verdict != "contradicted":
                results.append((check.model_copy(update={"verdict": judgement.verdict}), None))
                continue
            removed = check.model_copy(update={"verdict": "contradicted", "dropped": True, "supported": False})
            source = by_number[check.citations[0]]
            correction = premise_correction(question, check, sentences, source)
            if correction is not None:
                deciding = self.contradicting_sentence(claim, vector, sentences, source, evidence[source.number])
                correction = premise_correction(question, check, [deciding], source)
            results.append((removed, correction))
        return results

    def judged_passage(
        self,
        claim: str,
        vector: np.ndarray,
        cited: Sequence[int],
        sentences: Sequence[str],
        by_number: dict[int, Source],
        evidence: dict[int, Evidence],
    ) -> str:
        """What an answer sentence is judged against: its first cited paper's title and `sentences`, and, for a
        sentence citing two papers ("XNet does A, while YNet does B [1][2]"), the second paper's sentences most
        like it as well: judged against one abstract, the half about the other paper reads as contradicted."""
        passage = format_passage(by_number[cited[0]].title, sentences)
        second = next((number for number in cited[1:] if number in by_number and number != cited[0]), None)
        if second is None:
            return passage
        count = self.settings.answer.judge_answer_passage_sentences
        more = passage_sentences(claim, vector, evidence[second], count, self._lexical_weight)
        return f"{passage}\n\n{format_passage(by_number[second].title, more)}"

    def unaddressed_goes(self, question: str, claim: str, evidence: Evidence) -> bool:
        """Whether a sentence the judge finds its cited abstract silent on is removed: when it states a figure
        the paper's record does not hold (`misplaced_figure`), and, with `drop_unaddressed_claims`, whenever the
        question does not ask which paper or papers fit a description (see that setting), nor about people,
        sessions or times: a paper's record is checked field by field (`with_records`), and the judge reads
        a time or a room against sentences that do not read as claims."""
        answer = self.settings.answer
        if answer.drop_unaddressed_figures and misplaced_figure(claim, evidence):
            return True
        if not answer.drop_unaddressed_claims:
            return False
        return not (asks_for_paper(question) or asks_for_several(question) or asks_metadata(question))

    def with_parts_answered(
        self,
        question: str,
        shown: Sequence[Source],
        evidence: dict[int, Evidence],
        checks: list[SentenceCheck],
        asked: str = "",
    ) -> list[SentenceCheck]:
        """The answer with the first part of a several-part question that it left unanswered
        (`rag.parts.unanswered_parts`) asked again alone, over the paper the answer cites first and its
        sentences most like the part; the reply is verified and judged like the answer's own sentences and
        added when it stands. Questions about several papers or about people and times are left out: their
        parts are papers, completed by `rag.choice`, or record fields, completed by `rag.records`. The parts
        are those of the question as `asked`: a follow-up's rewrite into one standalone question often merges
        them, while the prompt gives the standalone `question` so that "they" keeps its meaning."""
        limit = self.settings.answer.answer_missing_parts
        if not limit or not has_supported_claim(checks) or asks_for_several(question) or asks_metadata(question):
            return checks
        by_number = {source.number: source for source in shown}
        cited = (check.citations[0] for check in checks if not check.dropped and check.citations)
        lead = next((number for number in cited if number in by_number), None)
        if lead is None:
            return checks
        source = by_number[lead]
        missing = unanswered_parts(asked or question, kept_sentences(checks), key_terms(source.title))[:limit]
        for part in missing:
            passage = self.passage_for(part, evidence[lead])
            messages = part_messages(question, part, source, passage)
            added = self.asked_alone(question, part, messages, source, shown, evidence)
            known = {check.text for check in checks if not check.dropped}
            added = [check for check in added if check.text not in known]
            checks = [*superseded(checks, [check.text for check in added]), *added]
        return checks

    def with_compared_papers(
        self,
        question: str,
        shown: Sequence[Source],
        evidence: dict[int, Evidence],
        checks: list[SentenceCheck],
        retrieved: Sequence[Source] = (),
    ) -> list[SentenceCheck]:
        """For a question that compares papers by name (`rag.parts.compared_papers`): a sentence that names one
        of them but cites another goes, and each compared paper no kept sentence cites is asked about alone,
        over its own abstract's sentences most like the question, its reply verified and judged like the
        answer's. A compared paper the lean prompt left out (`weak_source_margin`) is asked about too: the
        question names it. A declined answer is no longer declined once a paper's reply stands. Up to
        `answer_compared_papers` papers are asked."""
        limit = self.settings.answer.answer_compared_papers
        compared = compared_papers(question, evidence) if limit and not asks_metadata(question) else {}
        if not compared:
            return checks
        by_number = {source.number: source for source in [*retrieved, *shown]}
        if not set(compared) <= set(by_number):
            return checks
        shown = [*shown, *(by_number[n] for n in compared if n not in {source.number for source in shown})]
        checks = crossed_comparisons(checks, compared)
        for number in uncovered_papers(checks, compared)[:limit]:
            passage = self.passage_for(question, evidence[number])
            messages = compared_paper_messages(question, compared[number], by_number[number], passage)
            replies = self.asked_alone(question, question, messages, by_number[number], shown, evidence)
            added = [check for check in replies if number in check.citations]
            if added:
                checks = [
                    *(c.model_copy(update={"dropped": True}) if is_decline(c.text) else c for c in checks),
                    *added,
                ]
        return checks

    def passage_for(self, asked: str, evidence: Evidence) -> list[str]:
        """The paper's `judge_passage_sentences` sentences most like what is `asked`, for a one-source prompt."""
        vector = self.question_vector(asked)
        count = self.settings.answer.judge_passage_sentences
        return passage_sentences(asked, vector, evidence, count, self._lexical_weight)

    def asked_alone(
        self,
        question: str,
        asked: str,
        messages: list[dict[str, str]],
        source: Source,
        shown: Sequence[Source],
        evidence: dict[int, Evidence],
    ) -> list[SentenceCheck]:
        """The supported, kept sentences of the model's one-sentence reply to `messages` about one `source` (a
        part of the question, or one compared paper), verified against all the `shown` sources and judged like
        the answer's own; [] when it declines."""
        request = GenerationRequest(
            messages=messages,
            sources=[source],
            question=asked,
            max_tokens=self.settings.generation.part_max_tokens,
            stop=[*ANSWER_STOPS, "\n"],
        )
        raw = without_echo(_ANSWER_LABEL.sub("", "".join(self.generator.stream(request))).strip(), asked)
        if not raw or is_decline(raw):
            return []
        _, added = verify_answer(raw, shown, self.embedder, self.settings, evidence=evidence, question=question)
        added = self.judged(question, shown, evidence, added)
        return [check for check in added if check.supported and not check.dropped]

    def with_premise_checked(
        self, question: str, shown: Sequence[Source], evidence: dict[int, Evidence], checks: list[SentenceCheck]
    ) -> list[SentenceCheck]:
        """A question that states its premise ("Given that P, ...", "P, right?") gets P judged against the
        paper the answer is about (the first it cites, else the best retrieved); when that abstract contradicts
        P, the answer opens by saying so. The model tends to build on a stated premise rather than echo it,
        so judging its sentences alone let such premises stand.

        P is read first against the abstract's sentences most like it; when those do not address it, against
        the whole abstract (`premise_whole_abstract`): a false premise shares its words with the sentences that
        set the scene ("we study how Y depends on Z"), while the finding that refutes it is worded
        otherwise. That second reading calls P false only when the model's own label order, before the
        claim-fitted bias, also puts contradiction above support: over a whole abstract the bias alone found
        true premises contradicted."""
        premise = stated_premise(question)
        judge = self.judge
        if premise is None or not shown or not getattr(judge, "detects_contradiction", False):
            return checks
        if not self.settings.answer.judge_answers or any(c.composed and c.verdict == "contradicted" for c in checks):
            return checks
        by_number = {source.number: source for source in shown}
        cited = [c.citations[0] for c in checks if c.citations and not c.dropped and c.citations[0] in by_number]
        source = by_number[cited[0]] if cited else shown[0]
        vector = np.asarray(self.embedder.embed([premise]), dtype=np.float32)[0]
        count = self.settings.answer.judge_passage_sentences
        sentences = passage_sentences(premise, vector, evidence[source.number], count, self._lexical_weight)
        if not sentences:
            return checks
        (judgement,) = judge.judge_many([(premise, format_passage(source.title, sentences))])
        if judgement.verdict == "not_addressed" and self.settings.answer.premise_whole_abstract:
            whole = evidence[source.number].sentences[evidence[source.number].abstract_start :] or sentences
            (judgement,) = judge.judge_many([(premise, format_passage(source.title, whole))])
            judgement = answer_verdict(judgement)
        if judgement.verdict != "contradicted":
            return checks
        # the quoted sentence is sought among `correction_sentences`, not the whole abstract: each costs ~2 s
        deciding = self.contradicting_sentence(premise, vector, sentences, source, evidence[source.number])
        return [correction(key_terms(premise), [deciding], source), *checks]

    def contradicting_sentence(
        self, claim: str, vector: np.ndarray, passage: Sequence[str], source: Source, evidence: Evidence
    ) -> str:
        """The abstract sentence that says otherwise than `claim`, which a judged `passage` contradicted: the
        passage's sentences and the abstract's `correction_sentences` most like the claim are each judged
        alone, and the one the judge finds most contradicting is quoted. The sentences most like a false claim
        are often background on its topic ("Y usually involves Z"), while the one that says otherwise
        shares fewer of its words ("XNet does without Z"), so it may be missing from the passage the
        verdict was reached on. Each is scored by how far the judge puts "contradicted" above "not addressed"
        (`_says_otherwise`). Runs only when a premise was found false, so its extra judgements are rare."""
        count = self.settings.answer.correction_sentences
        wider = passage_sentences(claim, vector, evidence, count, self._lexical_weight)
        candidates = list(dict.fromkeys([*passage, *wider]))
        if len(candidates) == 1:  # `passage` is never empty: a verdict was reached on it
            return candidates[0]
        judgements = self.judge.judge_many([(claim, format_passage(source.title, [s])) for s in candidates])
        scores = [_says_otherwise(judgement) for judgement in judgements]
        return candidates[max(range(len(candidates)), key=scores.__getitem__)]

    def with_quotes(
        self, question: str, shown: Sequence[Source], evidence: dict[int, Evidence], checks: list[SentenceCheck]
    ) -> list[SentenceCheck]:
        """The verified answer completed with abstract sentences where the model said too little: each paper
        of a several-paper answer that is only named (`expand_bare_titles`), the exact figures of a
        quantity question (`quoted_numbers`), and the figure that answers a question the model declined
        (`figure_quote`), each as `abstract_quotes` allows."""
        kinds = self.settings.answer.abstract_quotes
        if asks_for_several(question):  # without quotes, bare titles still get one cited sentence each
            best = {}
            if "bare_titles" in kinds:
                best = best_sentences(self.question_vector(question), question, shown, evidence, self.settings)
            checks = expand_bare_titles(checks, question, evidence, best)
        if "figures" in kinds and asks_quantity(question):
            quote = quoted_numbers(self.question_vector(question), question, shown, evidence, checks, self.settings)
            checks = [*checks, quote] if quote else checks
        if "declined_figure" in kinds:
            checks = figure_quote(self.question_vector(question), question, shown, evidence, checks, self.settings)
        return checks

    def with_records(
        self, question: str, sources: Sequence[Source], checks: list[SentenceCheck]
    ) -> tuple[str, list[SentenceCheck]]:
        """The verified answer checked against, and completed from, the papers' records (`rag.records`):
        sentences misstating an author, a moderator, a date or the order of talks are dropped; asked fields
        the answer lacks are appended. Appended records replace a refusal: the record holds what the model
        declined to copy. A cited paper named by its title also gets the name its abstract coins."""
        checks = with_method_names(checks, sources)
        if self.settings.answer.record_papers == 0:
            return answer_text(checks), checks
        completed = complete_from_records(question, sources, checks, self.settings.answer.record_papers)
        if not any(check.composed for check in completed):
            return answer_text(completed), completed
        refused = not has_supported_claim([check for check in completed if not check.composed])
        completed = [
            check.model_copy(update={"dropped": True})
            if not check.composed and (refused or is_decline(check.text))
            else check
            for check in completed
        ]
        return answer_text(completed), completed

    def standalone_question(self, question: str, history: History, in_view: Sequence[Paper] = ()) -> str:
        """`question` rewritten to stand alone when it refers to earlier turns; otherwise unchanged. It keeps the
        previous turn's subject: the one paper `in_view` (the previous answer's) or the previous key terms."""
        if not needs_rewrite(question, history) or self.settings.answer.history_turns == 0:
            return question
        if self.backend == "extractive":
            return heuristic_rewrite(question, history, in_view)
        prompt = CONDENSE_PROMPT.format(
            history=format_history(history, self.settings.answer.history_turns), question=question
        )
        request = GenerationRequest(
            messages=[{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}],
            question=question,
            max_tokens=self.settings.generation.condense_max_tokens,
            stop=["\n"],
        )
        completion = "".join(self.generator.stream(request))
        rewrite = clean_rewrite(completion, question, history, in_view)
        return rewrite or heuristic_rewrite(question, history, in_view)

    def prepare_sources(
        self, question: str, sources: Sequence[Source], every_paper: bool = False, focus: str | None = None
    ) -> tuple[list[Source], dict[int, Evidence]]:
        """The papers shown to the model, with their passages chosen (by `focus`, default the question; see
        `passage_focus`), and their embedded evidence. Papers far below the lead one are left out
        (`weak_source_margin`), unless `every_paper`."""
        shown = list(sources[: self.shown_count(question)])
        evidence = build_evidence(shown, self.sentence_vectors)
        settings = self.settings.with_changes(weak_source_margin=None) if every_paper else self.settings
        focus = focus or question
        return select_passages(self.question_vector(focus), focus, shown, evidence, settings), evidence

    def shown_count(self, question: str) -> int:
        """How many of the retrieved papers go into the prompt: more when the question asks for several."""
        if asks_for_several(question):
            return max(self.settings.answer.answer_sources, self.settings.answer.answer_sources_several)
        return self.settings.answer.answer_sources

    def question_vector(self, question: str) -> np.ndarray:
        """The question's embedding; `embed_one` is cached by the embedder, which retrieval just filled."""
        embed_one = getattr(self.embedder, "embed_one", None)
        vector = embed_one(question) if embed_one else self.embedder.embed([question])[0]
        return np.asarray(vector, dtype=np.float32)


class _Clock:
    """Stage timings: `lap(name)` records seconds since the previous lap."""

    def __init__(self, started: float, timings: dict[str, float]):
        self.started = self.last = started
        self.timings = timings

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = now - self.last
        self.last = now

    def since_start(self) -> float:
        return time.perf_counter() - self.started
