"""What the model sees: which papers and which of their abstract sentences go into the prompt, and how.

On a CPU every prompt token costs prefill time before the first answer token, so the prompt holds the best
`answer_sources` papers (`answer_sources_several` when the question asks for several), and of those only about
`context_words` words of abstract sentences picked by similarity to the question. The question's shape decides
the rest: authors and schedules go in only for who/when/session questions (every author for "who wrote"),
sentences stating a quantity get a bonus for "how many / how much" questions, and a question about several
papers gets `SEVERAL_PAPERS_PROMPT`. `bench/context.py` measures how often the prompt holds the facts the eval
set asks for, and its size in tokens.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from rag.evidence import Evidence
from rag.prompts import ANSWER_PROMPT, PARTS_PROMPT, SEVERAL_PAPERS_PROMPT, SOURCE_TEMPLATE, SYSTEM_PROMPT
from rag.settings import Settings
from rag.text import FUNCTION_WORDS, figures_in, key_terms, question_parts, states_quantity
from rag.types import Source

# --- what the question asks for ----------------------------------------------------------------------------

_ASKS_METADATA = re.compile(
    r"\b(?:who|whom|whose|authors?|wrote|written|co-?authors?|moderat\w*|session|room|when|time|day|slot|"
    r"schedule|presented|talks?)\b",
    re.IGNORECASE,
)


_ASKS_AUTHORS = re.compile(r"\b(?:who|whom|whose|authors?|wrote|written|co-?authors?|co-?wrote)\b", re.IGNORECASE)
# "How many ...", "what accuracy ...", a measure asked by its acronym ("What XYZ does the model reach?").
_ASKS_QUANTITY = re.compile(
    r"\bhow (?:many|much|fast|big|large|long|deep|compact|small|high|low|well)\b"
    r"|\b(?:what|which) (?:[\w-]+ ){0,3}(?:accuracy|error|score|rate|speed-?up|factor|range|size|percentage|number|"
    r"count)\b"
    r"|\b(?:what|which)\s+(?:[\w-]+\s+){0,2}(?-i:(?:[a-z]?[A-Z]{2,}|[A-Z]\d)[\w@-]*)\s+"
    r"(?:does|do|did|is|was|are|were|score|value)\b"
    r"|\bby (?:what|how)\b",
    re.IGNORECASE,
)
_ASKS_SEVERAL = re.compile(
    r"\b(?:papers|talks|articles)\b|\bwhich (?:two|three|four|\d+)\b|\bmore than one\b"
    r"|\b(?:which|what|list|name|any|all)\s+(?:[\w-]+\s+){0,3}(?:works|studies|methods|approaches)\b",
    re.IGNORECASE,
)


_ASKS_FOR_PAPER = re.compile(
    r"\b(?:which|what)\s+(?:[\w-]+\s+){0,2}(?:paper|work|study|article|model|method|architecture|approach|network|"
    r"technique|framework|system|algorithm|loss|module|benchmark|dataset)\b(?!s)"
    r"|\b(?:is|was) there (?:a|an|any|some)\s+(?:[\w-]+\s+){0,2}(?:paper|work|study|article|method|model)\b"
    r"|\bwhat(?:'s| is| was)\s+(?:it|that|this|the \w+)\s+(?:[\w-]+\s+){0,3}(?:called|named)\b"
    r"|\b(?:looking for|remember|recall)\b[^?]{0,40}\b(?:paper|work|study|method|model)\b"
    r"|\b(?:is|was) there\s+(?:(?:a|an|any|some)\s+)?(?:[\w-]+\s+){0,3}?"
    r"(?:that|which|where|on|about|in|of|with|here|showing|proposing|for)\b"
    r"|\bwhat(?:'s|s| is| was)\s+(?:that|the name of)\b",
    re.IGNORECASE,
)
_ASKS_WHICH_DOES = re.compile(
    r"^\W*(?:which|what)\s+(?:(?!{aux}\b)[\w-]+\s+){{1,3}}?(?!{aux}\b)[a-z]+(?:es|s|ed)\s+(?!{aux}\b)".format(
        aux="(?:do|does|did|is|are|was|were|has|have|had|can|could|would|should|will|may|might)"
    ),
    re.IGNORECASE,
)
"""A question whose "which X" is the subject of a verb ("Which parser turns a shape into ...?", "What
objective weights each pair ...?"): it describes something by what it does and asks which it is, whatever
noun it uses for it."""


_ASKS_ABOUT_ITS_OBJECT = re.compile(
    r"\b(?:which|what)\s(?:(?!\b(?:paper|work|study|article|talk|publication)s?\b)[^,;.]){0,80}?\b(?:do|does|did)\s+"
    r"(?:they|it|we|its|their|the|this|that|these|those|(?-i:[A-Z][\w-]*))\b",
    re.IGNORECASE,
)
"""A "which X" phrase that is the object of another subject's verb ("which backbone do they build on?",
"what model does the paper fine-tune?"): the question is about something a paper uses, not which paper it is.
When the thing asked is itself a paper ("Which paper did X co-author?"), it asks which paper it is."""


def asks_for_paper(question: str) -> bool:
    """True when the question describes one paper and asks which it is ("Which model predicts ...?", "Is there
    a paper that ...?", "What is that architecture called?"): naming the paper is the answer. A "which model
    do they use?" question asks what a paper it describes uses, so naming that paper would not answer it."""
    found = _ASKS_FOR_PAPER.search(question) or _ASKS_WHICH_DOES.search(question)
    if not found or asks_for_several(question):
        return False
    return not _ASKS_ABOUT_ITS_OBJECT.match(question, found.start())


def asks_metadata(question: str) -> bool:
    """True when the question is about people, sessions or times, so authors and schedules earn their tokens."""
    return bool(_ASKS_METADATA.search(question))


def asks_authors(question: str) -> bool:
    """True for "who wrote ...", "authors of ...": then every author is shown, not the first few."""
    return bool(_ASKS_AUTHORS.search(question))


def asks_quantity(question: str) -> bool:
    """True for "how many / how much faster / what accuracy / by what factor" questions, answered by numbers."""
    return bool(_ASKS_QUANTITY.search(question))


_QUANTITY = re.compile(
    r"(?<![\w.-])\d[\d,.]*(?:%|x\b|×)?"
    r"|\b(?:one|two|three|four|five|six|seven|eight|nine|ten|twenty|fifty|hundreds?|thousands?|millions?|billions?|"
    r"dozens?|tens|twice|half)\b"
    r"|\bhow (?:many|much)\b",
    re.IGNORECASE,
)
_SCALE_WORDS = frozenset(["hundred", "hundreds", "thousand", "thousands", "million", "millions", "billion", "billions"])
_UNIT_WORDS = 3


def quantity_units(text: str) -> set[str]:
    """The words that say what a text's numbers count: the first `_UNIT_WORDS` content words after each number
    or "how many" ("3 million text pairs" -> text, pair; "how many GPUs" -> gpu), stemmed, scale words left
    out. A source sentence whose figure counts what the question counts holds the figure asked for ("800
    thousand text pairs"), where one with another figure ("1.5 million training steps") does not."""
    units: set[str] = set()
    for match in _QUANTITY.finditer(text):
        following = re.sub(r"[-/]", " ", text[match.end() : match.end() + 60]).lower()
        words = [word for word in re.findall(r"[a-z][a-z0-9]*", following) if word not in _SCALE_WORDS]
        units |= {term for word in words[:_UNIT_WORDS] for term in key_terms(word)}
    return units


def holds_figure(sentence: str, question: str) -> bool:
    """True when `sentence` states one of the question's figures or a figure that counts what the question's
    numbers count (`quantity_units`): the sentence that answers "how many GPUs", or corrects "3 million pairs".
    A shared dataset name is not a shared figure: "on Set-10" is in the answer and in many other sentences."""
    return bool(quantity_units(sentence) & quantity_units(question) or figures_in(sentence) & figures_in(question))


def asks_for_several(question: str) -> bool:
    """True when the question asks about several papers ("which papers ...", "the two talks ...")."""
    return bool(_ASKS_SEVERAL.search(question))


# --- which sentences ------------------------------------------------------------------------------------


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
    asks for a quantity (results sentences rarely share the question's wording). Papers far below the lead one
    are left out first (`weak_source_margin`, see `without_weak_sources`).
    """
    candidates = scored_sentences(question_vector, question, sources, evidence, settings)
    kept = sources if asks_for_several(question) else without_weak_sources(candidates, sources, settings)
    kept_numbers = {source.number for source in kept}
    candidates = [candidate for candidate in candidates if candidate[1] in kept_numbers]
    chosen: dict[int, list[int]] = {source.number: [] for source in kept}
    for _, number, index in candidates:  # the best sentence of each paper first
        if not chosen[number]:
            chosen[number].append(index)
    figure = lead_figure(question, kept, candidates, evidence, chosen[kept[0].number]) if kept else None
    if figure is not None:
        chosen[kept[0].number].append(figure)
    if kept and not asks_for_several(question):
        lead = kept[0].number
        chosen[lead] += asked_sentences(question, lead, candidates, evidence, chosen[lead])
    words = {(number, index): len(evidence[number].sentences[index].split()) for _, number, index in candidates}
    budget = passage_budget(len(kept), len(sources), settings)
    budget -= sum(words[number, index] for number, indexes in chosen.items() for index in indexes)
    floor = min((score for score, number, index in candidates if chosen[number][0] == index), default=0.0)
    if len(kept) == 1:
        floor = -np.inf  # a paper alone has no weaker paper to be compared with: its next best sentences go in
    for score, number, index in candidates:  # then any sentence as relevant as the weakest paper's best
        if score < floor:
            break
        fits = words[number, index] <= budget and len(chosen[number]) < settings.answer.passage_sentences
        if fits and index not in chosen[number]:
            chosen[number].append(index)
            budget -= words[number, index]
    passages = {
        number: " ".join(evidence[number].sentences[index] for index in sorted(indexes))
        for number, indexes in chosen.items()
    }
    return [source.model_copy(update={"passage": passages[source.number]}) for source in kept]


def passage_budget(kept: int, retrieved: int, settings: Settings) -> int:
    """Words of abstract text for the `kept` papers: their share of `context_words` (a paper left out takes
    its share along, saving prefill), but at least `min_paper_words` each. A paper kept alone is usually the one
    asked about, and its one best sentence rarely holds every fact a detail or follow-up question asks for."""
    share = settings.answer.context_words * kept // max(retrieved, 1)
    return max(share, settings.answer.min_paper_words * kept)


def lead_figure(
    question: str,
    sources: Sequence[Source],
    candidates: Sequence[tuple[float, int, int]],
    evidence: dict[int, Evidence],
    chosen: Sequence[int],
) -> int | None:
    """For a question that asks for or states a quantity, the index of the lead paper's sentence holding the
    figure, when its `chosen` sentences lack it: the best-scored sentence that `holds_figure`, else, when no
    chosen sentence states any quantity, its best-scored one with a number. None for other questions, when a
    chosen sentence already holds the figure, and when the question quotes a title that is not the lead
    paper's (the model would then put the figure on the quoted paper).

    The figure sentence rarely resembles the question ("we obtain up to a 20times speedup over existing
    solutions" for a question that describes the task in its own words and asks how big the speedup is), so it
    loses to the paper's topic sentence; and a false premise ("Why was XNet trained on 5 billion images?") is
    corrected only if the prompt shows the true figure.
    """
    if not sources or not (asks_quantity(question) or states_quantity(question)):
        return None
    lead = sources[0].number
    sentences = evidence[lead].sentences
    if quotes_another_title(question, sentences[0] if sentences else ""):
        return None
    if any(holds_figure(sentences[index], question) for index in chosen):
        return None
    others = [
        index
        for _, number, index in candidates
        if number == lead and index not in chosen and states_quantity(sentences[index])
    ]
    counting = [index for index in others if holds_figure(sentences[index], question)]
    if counting:
        return counting[0]
    if others and not any(states_quantity(sentences[index]) for index in chosen):
        return others[0]
    return None


def asked_terms(part: str) -> list[str]:
    """Key terms of the thing a question part asks for, in order: the words right after its question word, up to
    the first function word ("list the remote sensing datasets that ..." -> remote, sens, dataset; "how many
    parameters did ..." -> parameter). Empty when a function word follows ("what is ...", "how does ..."): that
    part asks about a clause, and the question's own words already choose its sentences."""
    match = _ASKED_THING.search(part)
    if not match:
        return []
    terms: list[str] = []
    for word in match.group(1).split()[:_ASKED_WORDS]:
        if word.lower() in FUNCTION_WORDS:
            break
        terms += [term for term in sorted(key_terms(word)) if term not in terms]  # "new": no term, not the end
    return terms


_ASKED_THING = re.compile(
    r"\b(?:how (?:many|much)|which|what|list(?: all)?(?: of)?(?: the)?|name(?: all)?(?: the)?)\s+([^?,;:()]+)",
    re.IGNORECASE,
)
_ASKED_WORDS = 3
_COUNTING = re.compile(r"\s*(?:\w+\s+){0,3}how (?:many|much)\b", re.IGNORECASE)


def asked_sentences(
    question: str,
    lead: int,
    candidates: Sequence[tuple[float, int, int]],
    evidence: dict[int, Evidence],
    chosen: Sequence[int],
) -> list[int]:
    """For each part of the question (`question_parts`), the lead paper's sentence that holds the thing the part
    asks for (`asked_terms`) when its `chosen` sentences lack it; at most one sentence per part.

    Why: sentences are chosen by likeness to the whole question, and a question that describes its paper at
    length ("the model trained on X with Y ..., how many parameters did it have?") is most like the sentences
    that repeat the description, while the sentence that answers shares one word with it. The asked thing's
    last word is its head ("remote sensing datasets", "test accuracy"), so the best-scored sentence holding it
    is added, unless a chosen sentence holds it; when no sentence holds it and no chosen sentence holds any asked
    word, the best one holding the rarest other asked word. For a "how many / how much" part only a sentence
    that states a quantity answers."""
    sentences = evidence[lead].sentences
    own = [index for _, number, index in candidates if number == lead]  # best-scored first
    added: list[int] = []
    for part in question_parts(question):
        wanted = asked_terms(part)
        shown = [*chosen, *added]
        seen = set().union(*(key_terms(sentences[index]) for index in shown))
        if not wanted or wanted[-1] in seen:
            continue
        counting = bool(_COUNTING.match(part))
        holding = {
            term: [
                index
                for index in own
                if index not in shown
                and term in key_terms(sentences[index])
                and (not counting or states_quantity(sentences[index]))
            ]
            for term in wanted
        }
        head = wanted[-1]
        others = [term for term in wanted[:-1] if holding[term]]
        if holding[head]:
            added.append(holding[head][0])
        elif others and not set(wanted) & seen:
            added.append(holding[min(others, key=lambda term: len(holding[term]))][0])
    return added


_QUOTED_TITLE = re.compile(r"[\"'“‘]([A-Z][^\"'“”‘’]{8,}?)[\"'”’](?!\w)")


def quotes_another_title(question: str, title: str) -> bool:
    """True when the question quotes a title ('A Quoted Paper Title') that is not `title`."""
    quoted = [match.group(1).strip(" .").lower() for match in _QUOTED_TITLE.finditer(question)]
    return any(name not in title.lower() and title.lower() not in name for name in quoted)


def without_weak_sources(
    candidates: Sequence[tuple[float, int, int]], sources: Sequence[Source], settings: Settings
) -> list[Source]:
    """`sources` less those whose best sentence scores more than `weak_source_margin` below the lead paper's.

    Most questions are about one paper. The papers ranked after it then cost prefill time (each ~45 prompt
    tokens, ~1 s before the first answer token) for little gain. A paper whose best sentence is nearly as
    question-like as the lead's may hold the answer, so it stays; a paper with no scored sentence goes. With
    fewer papers in view the 1.5B model declines some questions it answers with three, so the answer stage asks
    again with every paper when this lean prompt's answer is declined (`rag.answer`). A paper kept alone
    gets at least `min_paper_words` of its abstract (`passage_budget`).
    """
    if settings.answer.weak_source_margin is None:
        return list(sources)
    best: dict[int, float] = {}
    for score, number, _ in candidates:  # best first, so the first score seen per paper is its best
        best.setdefault(number, score)
    if not sources or sources[0].number not in best:
        return list(sources)
    floor = best[sources[0].number] - settings.answer.weak_source_margin
    return [sources[0], *(source for source in sources[1:] if best.get(source.number, floor - 1) >= floor)]


def scored_sentences(
    question_vector: np.ndarray,
    question: str,
    sources: Sequence[Source],
    evidence: dict[int, Evidence],
    settings: Settings,
) -> list[tuple[float, int, int]]:
    """(score, source number, sentence index) of every abstract sentence of `sources`, best first."""
    weight = settings.answer.support_lexical_weight
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
            score += settings.answer.lead_source_bonus if rank == 0 else 0.0
            score += settings.answer.number_sentence_bonus if wants_number and states_quantity(sentence) else 0.0
            candidates.append((score, source.number, index))
    return sorted(candidates, reverse=True)


# --- the messages ---------------------------------------------------------------------------------------


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
    parts = len(question_parts(question))
    if asks_for_several(question):
        template = SEVERAL_PAPERS_PROMPT
    else:
        template = PARTS_PROMPT if parts in _COUNTS else ANSWER_PROMPT
    with_metadata = asks_metadata(question)
    max_authors = None if asks_authors(question) else settings.answer.prompt_authors
    formatted = "\n\n".join(format_source(source, max_authors, with_metadata) for source in sources)
    user = template.format(sources=formatted, question=question, parts=_COUNTS.get(parts, ""))
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


_COUNTS = {2: "two", 3: "three", 4: "four"}
