"""The answer stage: follow-up rewriting -> retrieval -> relevance gate -> prompt -> streamed generation ->
citation verification -> `Answer`.

Rules it keeps, whatever the model or the texts say:

* **No evidence, no model.** When retrieval finds nothing relevant (`Retriever.is_relevant`), the answer is
  `DECLINE_TEXT` and the model is never called; the closest papers are still listed as sources.
* **Short context, shaped by the question.** On a CPU, prefill costs ~22 ms a token, so the prompt holds the
  best `answer_sources` papers (`answer_sources_several` when the question asks for several), and of those
  only about `context_words` words of abstract sentences, picked by similarity to the question (the best one
  of each paper first, then the best remaining ones that fit, at most `passage_sentences` per paper; the lead
  paper's sentences and, for "how many / how much" questions, sentences stating a quantity get a bonus).
  Authors and schedules go in only for who/when/session questions, every author for "who wrote" ones.
  `bench/context.py` measures how often the prompt holds the facts the eval set asks for.
* **Every sentence backed.** The model's text is streamed as it comes; then `rag.cite.verify_answer` checks
  each sentence against the source it cites, fixes or removes citations, and drops unsupported sentences.
* **Refusals.** An answer is declined (`declined=True`, text `DECLINE_TEXT`) when, after verification, no
  sentence makes a claim a source supports. That covers the model's own refusal ("The collection does not
  say."), an answer made of unsupported claims, and an answer that obeys an instruction injected in a question
  or an abstract (which no source supports). When the model refuses in part but also makes supported claims,
  those claims stand: the evidence holds an answer, and the refusal sentence is kept as the model wrote it.
  There is no retry: a second generation would double the wait for an answer that is usually the same.
* **Injection.** Source sentences that read like instructions to a model are never shown to it nor counted as
  evidence; the question is passed as labelled data under a system prompt that says so.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from contextlib import closing

import numpy as np

from rag.cite import (
    Evidence,
    answer_text,
    build_evidence,
    is_decline,
    key_terms,
    named_papers,
    numbers_in,
    parse_citations,
    remove_citations,
    short_name,
    split_sentences,
    verify_answer,
    with_citations,
    without_instructions,
)
from rag.embeddings import SentenceVectors
from rag.generate import GenerationRequest
from rag.prompts import (
    ANSWER_PROMPT,
    CONDENSE_PROMPT,
    CONDENSE_TURN_TEMPLATE,
    DECLINE_TEXT,
    SEVERAL_PAPERS_PROMPT,
    SOURCE_TEMPLATE,
    SYSTEM_PROMPT,
)
from rag.records import complete_from_records, with_method_names
from rag.settings import Settings
from rag.types import Answer, Citation, Filters, SentenceCheck, Source

History = Sequence[tuple[str, str]]

ANSWER_STOPS = ["\n\nQuestion:", "\nSources:"]
"""Where a model that starts a new exchange on its own is cut off."""

HISTORY_ANSWER_SENTENCES = 2
"""Sentences of each earlier answer shown when rewriting a follow-up: enough to name what it was about."""

_REFERRING = re.compile(
    r"\b(?:it|its|they|them|their|theirs|he|she|his|her|him|former|latter)\b"
    r"|\b(?:this|that|these|those|the same|the above|the previous|the first|the second|the last)\s+"
    r"(?:paper|method|model|work|approach|one|study|technique|dataset|author|result|idea|architecture|loss)s?\b"
    r"|\bthe (?:authors?|paper|method|model)\b(?! (?:of|that|which|on|for|about|called|named)\b)",
    re.IGNORECASE,
)
_FOLLOW_UP_START = re.compile(r"^\s*(?:and|also|what about|how about|but|then|same for)\b", re.IGNORECASE)
_ANSWER_LABEL = re.compile(r"^\s*(?:answer|response)\s*:\s*", re.IGNORECASE)


def needs_rewrite(question: str, history: History) -> bool:
    """True when `question` leans on earlier turns: a pronoun or "that paper", a leading "and/what about",
    or only a few words. A self-contained question skips the rewrite (it would cost seconds of generation)."""
    if not history:
        return False
    short = len(question.split()) <= 3
    return bool(short or _REFERRING.search(question) or _FOLLOW_UP_START.search(question))


def heuristic_rewrite(question: str, history: History) -> str:
    """A model-free rewrite: the previous question's key terms, then the follow-up (enough for retrieval)."""
    previous = history[-1][0]
    words = re.findall(r"[\w-]+", previous)
    important = key_terms(previous)
    terms = [word for word in words if _lower_stem_in(word, important)]
    prefix = " ".join(dict.fromkeys(terms))
    return f"{prefix}: {question}" if prefix else question


def _lower_stem_in(word: str, terms: set[str]) -> bool:
    return bool(key_terms(word) & terms)


def format_history(history: History, turns: int) -> str:
    """The last `turns` turns for CONDENSE_PROMPT, each answer cut to its first sentences, without markers."""
    lines = []
    for question, answer in list(history)[-turns:] if turns else []:
        short = " ".join(split_sentences(remove_citations(answer or ""))[:HISTORY_ANSWER_SENTENCES])
        lines.append(CONDENSE_TURN_TEMPLATE.format(question=question.strip(), answer=short))
    return "\n".join(lines)


def clean_rewrite(completion: str, question: str) -> str | None:
    """The rewritten question from the model's completion, or None when it is unusable."""
    line = next((line.strip() for line in completion.splitlines() if line.strip()), "")
    line = re.sub(r"^(?:standalone question|question)\s*:\s*", "", line, flags=re.IGNORECASE)
    line = line.strip().strip("\"'`").strip()
    if not line or is_decline(line) or len(line) > 3 * len(question) + 200:
        return None
    return line


# --- building the prompt ---------------------------------------------------------------------------------


def select_passages(
    question_vector: np.ndarray,
    question: str,
    sources: Sequence[Source],
    evidence: dict[int, Evidence],
    settings: Settings,
) -> list[Source]:
    """`sources` with `passage` set to their most question-like abstract sentences, within the budget.

    Each paper's best sentence goes in first; the remaining budget goes to the next best sentences that are
    at least as good as the weakest paper's best. A sentence's score is its cosine to the question blended
    with its share of the question's key terms, plus `lead_source_bonus` for the best-retrieved paper (the
    paper usually asked about) and `number_sentence_bonus` for a sentence with a number when the question
    asks for a quantity (results sentences rarely share the question's wording). With `weak_source_margin` set,
    papers far below the lead one are left out first (see `without_weak_sources`).
    """
    candidates = _scored_sentences(question_vector, question, sources, evidence, settings)
    kept = sources if asks_for_several(question) else without_weak_sources(candidates, sources, settings)
    kept_numbers = {source.number for source in kept}
    candidates = [candidate for candidate in candidates if candidate[1] in kept_numbers]
    chosen: dict[int, list[int]] = {source.number: [] for source in kept}
    for _, number, index in candidates:  # the best sentence of each paper first
        if not chosen[number]:
            chosen[number].append(index)
    words = {(number, index): len(evidence[number].sentences[index].split()) for _, number, index in candidates}
    budget = settings.context_words * len(kept) // max(len(sources), 1)  # a dropped paper takes its share along
    budget -= sum(words[number, index] for number, indexes in chosen.items() for index in indexes)
    floor = min((score for score, number, index in candidates if chosen[number][0] == index), default=0.0)
    for score, number, index in candidates:  # then any sentence as relevant as the weakest paper's best
        if score < floor:
            break
        fits = words[number, index] <= budget and len(chosen[number]) < settings.passage_sentences
        if fits and index not in chosen[number]:
            chosen[number].append(index)
            budget -= words[number, index]
    passages = {
        number: " ".join(evidence[number].sentences[index] for index in sorted(indexes))
        for number, indexes in chosen.items()
    }
    return [source.model_copy(update={"passage": passages[source.number]}) for source in kept]


def without_weak_sources(
    candidates: Sequence[tuple[float, int, int]], sources: Sequence[Source], settings: Settings
) -> list[Source]:
    """`sources` less those whose best sentence scores more than `weak_source_margin` below the lead paper's.

    Most questions are about one paper. The papers ranked after it then cost prefill time (each ~45 prompt
    tokens, ~1 s before the first answer token) for little gain. A paper whose best sentence is nearly as
    question-like as the lead's may hold the answer, so it stays; a paper with no scored sentence goes. Off by
    default (see the setting): with fewer papers in view, the 1.5B model declined questions it answered with three.
    Note that `select_passages` adds sentences only as good as the weakest kept paper's best, so a lead paper
    left alone shows just its one best sentence.
    """
    if settings.weak_source_margin is None:
        return list(sources)
    best: dict[int, float] = {}
    for score, number, _ in candidates:  # best first, so the first score seen per paper is its best
        best.setdefault(number, score)
    if not sources or sources[0].number not in best:
        return list(sources)
    floor = best[sources[0].number] - settings.weak_source_margin
    return [sources[0], *(source for source in sources[1:] if best.get(source.number, floor - 1) >= floor)]


def _scored_sentences(
    question_vector: np.ndarray,
    question: str,
    sources: Sequence[Source],
    evidence: dict[int, Evidence],
    settings: Settings,
) -> list[tuple[float, int, int]]:
    """(score, source number, sentence index) of every abstract sentence of `sources`, best first."""
    weight = settings.support_lexical_weight
    question_terms = key_terms(question)
    wants_number = asks_quantity(question)
    candidates: list[tuple[float, int, int]] = []
    for rank, source in enumerate(sources):
        item = evidence[source.number]
        for index in range(item.abstract_start, len(item.sentences)):
            sentence = item.sentences[index]
            cosine = float(item.vectors[index] @ question_vector)
            overlap = len(key_terms(sentence) & question_terms) / len(question_terms) if question_terms else 0.0
            score = (1 - weight) * cosine + weight * overlap
            score += settings.lead_source_bonus if rank == 0 else 0.0
            score += settings.number_sentence_bonus if wants_number and states_quantity(sentence) else 0.0
            candidates.append((score, source.number, index))
    return sorted(candidates, reverse=True)


_CONTRIBUTION = re.compile(
    r"\b(?:we|this (?:paper|work)|our (?:method|approach|model))\b[^.]*?\b(?:propose|introduce|present|develop|"
    r"design|call|name|dub|show|demonstrate|achieve)",
    re.IGNORECASE,
)
"""An abstract's own-contribution sentence ("we propose a weighted bi-directional feature pyramid (BiFPN)")."""


def best_sentences(
    question_vector: np.ndarray,
    question: str,
    sources: Sequence[Source],
    evidence: dict[int, Evidence],
    settings: Settings,
) -> dict[int, str]:
    """Each source's abstract sentence that best says what the paper does about the question: scored as passages
    are chosen, plus `lead_source_bonus` for a contribution sentence ("we propose ..."), since the sentence most
    like the question is often the abstract's background ("Feature pyramids are a basic component ...")."""
    scored = [
        (
            score + (settings.lead_source_bonus if _CONTRIBUTION.search(evidence[number].sentences[index]) else 0.0),
            number,
            index,
        )
        for score, number, index in _scored_sentences(question_vector, question, sources, evidence, settings)
    ]
    best: dict[int, str] = {}
    for _, number, index in sorted(scored, reverse=True):
        best.setdefault(number, evidence[number].sentences[index])
    return best


def quoted_numbers(
    question_vector: np.ndarray,
    question: str,
    sources: Sequence[Source],
    evidence: dict[int, Evidence],
    checks: Sequence[SentenceCheck],
    settings: Settings,
) -> SentenceCheck | None:
    """For a quantity question, the sentence of the answer's first cited paper that best answers it with
    numbers, quoted and cited, when the answer leaves some of its numbers out; else None.

    The 1.5B model rounds ("tens of millions" for "14 million"), keeps the first of several figures, or
    states one of the two counts asked for; the quoted sentence holds the exact ones, so the reader need not
    open the abstract to check.
    """
    kept = [check for check in checks if not check.dropped]
    cited = next((number for check in kept for number in check.citations if number in evidence), None)
    if cited is None:
        return None
    source = next(source for source in sources if source.number == cited)
    sentences = evidence[cited].sentences
    scored = _scored_sentences(question_vector, question, [source], evidence, settings)
    index = next((index for _, _, index in scored if numbers_in(sentences[index])), None)
    said = numbers_in(" ".join(check.text for check in kept))
    if index is None or numbers_in(sentences[index]) <= said:
        return None
    text = with_citations(f"“{short_name(sentences[0])}”: {sentences[index]}", [cited])
    return SentenceCheck(text=text, citations=[cited], support=1.0, supported=True, composed=True)


def titles_in(sentence: str, evidence: dict[int, Evidence]) -> dict[int, str]:
    """The sources a sentence names by a name (`cite.named_papers`) or by its full title, however short. A name
    inside another paper's longer title ("Parameter-Inverted Image Pyramid Networks for Visual Perception ...")
    names only that paper."""
    found = named_papers(sentence, evidence)
    lowered = sentence.lower()
    for number, item in evidence.items():
        title = item.sentences[0] if item.sentences else ""
        start = lowered.find(title.lower()) if title else -1
        if number not in found and start >= 0:
            found[number] = sentence[start : start + len(title)]
    spans = {number: (lowered.find(name.lower()), len(name)) for number, name in found.items()}
    return {
        number: name
        for number, name in found.items()
        if not any(
            other != number and length > spans[number][1] and start <= spans[number][0] < start + length
            for other, (start, length) in spans.items()
        )
    }


def expand_bare_titles(
    checks: Sequence[SentenceCheck], question: str, evidence: dict[int, Evidence], best: dict[int, str]
) -> list[SentenceCheck]:
    """For questions about several papers: a sentence that only names papers ("Scalable Forward-Forward
    Algorithm Layer Collaboration in the Forward-Forward Algorithm [1].") or says of them no more than the
    question ("“Show and Tell” [1] generates natural-language descriptions of images ...") is replaced, per
    named paper, by the title and that paper's best abstract sentence (`best_sentences`), cited. The 1.5B model
    often answers "which papers ..., and how?" with titles alone; the abstract says the how. A paper whose
    sentence the answer already holds is only named."""
    said = " ".join(remove_citations(check.text) for check in checks if not check.dropped)
    expanded: list[SentenceCheck] = []
    for check in checks:
        named = titles_in(check.text, evidence) if not check.dropped and not check.composed else {}
        rest = check.text
        for name in named.values():
            rest = rest.replace(name, " ")
        titles = " ".join(evidence[number].sentences[0] for number in named)
        if not named or _says_more(rest, f"{question} {titles}"):
            expanded.append(check)
            continue
        expanded.append(check.model_copy(update={"dropped": True}))
        for number in sorted(named, key=lambda number: check.text.find(named[number])):
            title = evidence[number].sentences[0]
            quoted = best[number] if best[number].rstrip(".") not in said else ""
            if not quoted and f"“{title}”" in said:
                continue  # the paper and its sentence are in the answer already
            text = with_citations(f"“{title}”: {quoted}" if quoted else f"“{title}”.", [number])
            said += f" “{title}” {quoted}"
            expanded.append(SentenceCheck(text=text, citations=[number], support=1.0, supported=True, composed=True))
    return expanded


def _says_more(text: str, known: str) -> bool:
    """Whether `text` has a content word that `known` lacks, words compared on their first five letters (so
    "generates" is "generate", and a title's "Unified Embedding" says nothing the title did not)."""
    known_prefixes = {word[:5] for word in re.findall(r"[\w-]+", known.lower())}  # stopwords too ("propose")
    return any(term[:5] not in known_prefixes for term in key_terms(text))


# --- what the question asks for ----------------------------------------------------------------------------

_ASKS_METADATA = re.compile(
    r"\b(?:who|whom|whose|authors?|wrote|written|co-?authors?|moderat\w*|session|room|when|time|day|slot|"
    r"schedule|presented|talks?)\b",
    re.IGNORECASE,
)


_ASKS_AUTHORS = re.compile(r"\b(?:who|whom|whose|authors?|wrote|written|co-?authors?|co-?wrote)\b", re.IGNORECASE)
_ASKS_QUANTITY = re.compile(
    r"\bhow (?:many|much|fast|big|large|long|deep|compact|small|high|low|well)\b"
    r"|\b(?:what|which) (?:[\w-]+ ){0,3}(?:accuracy|error|score|rate|speed-?up|factor|range|size|percentage|number|"
    r"count|AP|mAP|FID|BLEU|F1)\b"
    r"|\bby (?:what|how)\b",
    re.IGNORECASE,
)
_ASKS_SEVERAL = re.compile(
    r"\b(?:papers|talks|articles)\b|\bwhich (?:two|three|four|\d+)\b"
    r"|\b(?:which|what|list|name|any|all)\s+(?:[\w-]+\s+){0,3}(?:works|studies|methods|approaches)\b",
    re.IGNORECASE,
)


def asks_metadata(question: str) -> bool:
    """True when the question is about people, sessions or times, so authors and schedules earn their tokens."""
    return bool(_ASKS_METADATA.search(question))


def asks_authors(question: str) -> bool:
    """True for "who wrote ...", "authors of ...": then every author is shown, not the first few."""
    return bool(_ASKS_AUTHORS.search(question))


def asks_quantity(question: str) -> bool:
    """True for "how many / how much faster / what accuracy / by what factor" questions, answered by numbers."""
    return bool(_ASKS_QUANTITY.search(question))


_QUANTITY_WORDS = re.compile(
    r"\b(?:times|fold|twice|double|half|dozens?|tens|hundreds|thousands|millions|billions)\b", re.IGNORECASE
)


def states_quantity(sentence: str) -> bool:
    """True for a sentence with a number, in digits or words ("up to tens of times faster")."""
    return bool(numbers_in(sentence) or _QUANTITY_WORDS.search(sentence))


def asks_for_several(question: str) -> bool:
    """True when the question asks about several papers ("which papers ...", "the two talks ...")."""
    return bool(_ASKS_SEVERAL.search(question))


def format_source(source: Source, max_authors: int | None, with_metadata: bool = True) -> str:
    """One numbered source for ANSWER_PROMPT; authors (all when `max_authors` is None) and schedule only
    `with_metadata` (each costs prefill)."""
    paper = source.paper
    if not with_metadata:
        return SOURCE_TEMPLATE.format(number=source.number, title=paper.title, authors="", passage=source.passage)
    authors = ""
    shown = paper.authors if max_authors is None else paper.authors[:max_authors]
    if shown:
        authors = f" ({', '.join(shown)}{' et al.' if len(paper.authors) > len(shown) else ''})"
    when = " ".join(value for value in (paper.day, paper.time_slot) if value)
    labelled = (("Session", paper.session), ("moderator", paper.moderator), ("room", paper.room), ("time", when))
    schedule = "; ".join(f"{label}: {value}" for label, value in labelled if value)
    passage = f"{schedule}.\n{source.passage}" if schedule else source.passage
    return SOURCE_TEMPLATE.format(number=source.number, title=paper.title, authors=authors, passage=passage)


def build_messages(question: str, sources: Sequence[Source], settings: Settings) -> list[dict[str, str]]:
    """System rules, then the numbered sources and the question (in SEVERAL_PAPERS_PROMPT for a question about
    several papers, else ANSWER_PROMPT)."""
    template = SEVERAL_PAPERS_PROMPT if asks_for_several(question) else ANSWER_PROMPT
    with_metadata = asks_metadata(question)
    max_authors = None if asks_authors(question) else settings.prompt_authors
    formatted = "\n\n".join(format_source(source, max_authors, with_metadata) for source in sources)
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": template.format(sources=formatted, question=question)},
    ]


def citations_for(text: str, sources: Sequence[Source]) -> list[Citation]:
    """Citation records for the numbers in `text`, ordered by number."""
    by_number = {source.number: source for source in sources}
    return [
        Citation(number=number, paper_id=by_number[number].paper_id, title=by_number[number].title)
        for number in sorted(parse_citations(text))
        if number in by_number
    ]


def has_supported_claim(checks: Sequence[SentenceCheck]) -> bool:
    return any(check.supported and not check.dropped for check in checks)


# --- the stage -------------------------------------------------------------------------------------------


class Answerer:
    """Turns a question (and the conversation so far) into a streamed, verified, cited `Answer`."""

    def __init__(self, generator, embedder, settings: Settings, sentence_vectors: SentenceVectors | None = None):
        self.generator = generator
        self.embedder = embedder
        self.settings = settings
        self.sentence_vectors = SentenceVectors(embedder) if sentence_vectors is None else sentence_vectors
        """Source sentences embedded once (the index's file-backed store in a `Bot`, else one in memory)."""

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
    ) -> Iterator[str | Answer]:
        """Yield the answer's text pieces as the model writes them, then the verified `Answer`, last."""
        started = time.perf_counter()
        timings: dict[str, float] = {}
        clock = _Clock(started, timings)

        standalone = without_instructions(self.standalone_question(question, history))
        clock.lap("rewrite")
        sources = retriever.search(standalone, k=k, filters=filters)
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

        shown, evidence = self.prepare_sources(standalone, sources)
        clock.lap("prepare")
        request = GenerationRequest(
            messages=build_messages(standalone, shown, self.settings),
            sources=shown,
            question=standalone,
            max_tokens=self.settings.max_new_tokens,
            stop=ANSWER_STOPS,
        )
        pieces: list[str] = []
        with closing(iter(self.generator.stream(request))) as stream:  # a stopped consumer stops the model
            for piece in stream:
                if not pieces:
                    timings["first_token"] = clock.since_start()
                pieces.append(piece)
                yield piece
        timings.setdefault("first_token", clock.since_start())
        clock.lap("generate")

        raw = _ANSWER_LABEL.sub("", "".join(pieces)).strip()
        text, checks = verify_answer(raw, shown, self.embedder, self.settings, evidence=evidence, question=standalone)
        checks = self.with_quotes(standalone, shown, evidence, checks)
        shown_numbers = {source.number: source for source in shown}
        sources = [shown_numbers.get(source.number, source) for source in sources]
        text, checks = self.with_records(standalone, sources, checks)
        clock.lap("verify")
        answer = answer.model_copy(update={"sources": sources, "sentences": checks})
        if has_supported_claim(checks):
            answer = answer.model_copy(
                update={"text": text, "citations": citations_for(text, sources), "declined": False}
            )
        yield self._finish(answer, clock)

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
    def with_quotes(
        self, question: str, shown: Sequence[Source], evidence: dict[int, Evidence], checks: list[SentenceCheck]
    ) -> list[SentenceCheck]:
        """The verified answer completed with abstract sentences where the model said too little: each paper
        of a several-paper answer that is only named (`expand_bare_titles`), and the exact figures of a
        quantity question (`quoted_numbers`)."""
        if asks_for_several(question):
            best = best_sentences(self.question_vector(question), question, shown, evidence, self.settings)
            checks = expand_bare_titles(checks, question, evidence, best)
        if asks_quantity(question):
            quote = quoted_numbers(self.question_vector(question), question, shown, evidence, checks, self.settings)
            checks = [*checks, quote] if quote else checks
        return checks

    def with_records(
        self, question: str, sources: Sequence[Source], checks: list[SentenceCheck]
    ) -> tuple[str, list[SentenceCheck]]:
        """The verified answer checked against, and completed from, the papers' records (`rag.records`):
        sentences misstating an author, a moderator, a date or the order of talks are dropped; asked fields
        the answer lacks are appended. Appended records replace a refusal: the record holds what the model
        declined to copy. A cited paper named by its title also gets the name its abstract coins."""
        checks = with_method_names(checks, sources)
        if self.settings.record_papers == 0:
            return answer_text(checks), checks
        completed = complete_from_records(question, sources, checks, self.settings.record_papers)
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

    def standalone_question(self, question: str, history: History) -> str:
        """`question` rewritten to stand alone when it refers to earlier turns; otherwise unchanged."""
        if not needs_rewrite(question, history) or self.settings.history_turns == 0:
            return question
        if self.backend == "extractive":
            return heuristic_rewrite(question, history)
        prompt = CONDENSE_PROMPT.format(history=format_history(history, self.settings.history_turns), question=question)
        request = GenerationRequest(
            messages=[{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}],
            question=question,
            max_tokens=self.settings.condense_max_tokens,
            stop=["\n"],
        )
        completion = "".join(self.generator.stream(request))
        return clean_rewrite(completion, question) or heuristic_rewrite(question, history)

    def prepare_sources(self, question: str, sources: Sequence[Source]) -> tuple[list[Source], dict[int, Evidence]]:
        """The papers shown to the model, with their passages chosen, and their embedded evidence."""
        shown = list(sources[: self.shown_count(question)])
        evidence = build_evidence(shown, self.sentence_vectors)
        question_vector = self.question_vector(question)
        return select_passages(question_vector, question, shown, evidence, self.settings), evidence

    def shown_count(self, question: str) -> int:
        """How many of the retrieved papers go into the prompt: more when the question asks for several."""
        if asks_for_several(question):
            return max(self.settings.answer_sources, self.settings.answer_sources_several)
        return self.settings.answer_sources

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
