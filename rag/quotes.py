"""Abstract sentences added to a verified answer where the model said too little, quoted and cited.

The 1.5B model often answers "which papers ..., and how?" with titles alone, rounds or drops the figures a
quantity question asks for, and declines a question whose false premise its source corrects. The abstracts hold
what it left out, so after verification the answer stage completes such answers with the paper's own sentence
(`expand_bare_titles`, `quoted_numbers`, `figure_quote`), marked `composed`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from rag.attribution import named_papers
from rag.context import asks_quantity, holds_figure, scored_sentences
from rag.evidence import Evidence
from rag.markers import remove_citations, with_citations
from rag.settings import Settings
from rag.text import figures_in, is_decline, key_terms, short_name, states_quantity
from rag.types import SentenceCheck, Source

_CONTRIBUTION = re.compile(
    r"\b(?:we|this (?:paper|work)|our (?:method|approach|model))\b[^.]*?\b(?:propose|introduce|present|develop|"
    r"design|call|name|dub|show|demonstrate|achieve)",
    re.IGNORECASE,
)
"""An abstract's own-contribution sentence ("we propose a weighted two-way pooling network (XNet)")."""


def best_sentences(
    question_vector: np.ndarray,
    question: str,
    sources: Sequence[Source],
    evidence: dict[int, Evidence],
    settings: Settings,
) -> dict[int, str]:
    """Each source's abstract sentence that best says what the paper does about the question: scored as passages
    are chosen, plus `lead_source_bonus` for a contribution sentence ("we propose ..."), since the sentence most
    like the question is often the abstract's background ("Pooling is a basic component of ...")."""
    scored = [
        (
            score
            + (settings.answer.lead_source_bonus if _CONTRIBUTION.search(evidence[number].sentences[index]) else 0.0),
            number,
            index,
        )
        for score, number, index in scored_sentences(question_vector, question, sources, evidence, settings)
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
    scored = scored_sentences(question_vector, question, [source], evidence, settings)
    index = next((index for _, _, index in scored if figures_in(sentences[index])), None)
    said = figures_in(" ".join(check.text for check in kept))
    if index is None or figures_in(sentences[index]) <= said:
        return None
    text = with_citations(f"“{short_name(sentences[0])}”: {sentences[index]}", [cited])
    return SentenceCheck(text=text, citations=[cited], support=1.0, supported=True, composed=True)


def figure_quote(
    question_vector: np.ndarray,
    question: str,
    sources: Sequence[Source],
    evidence: dict[int, Evidence],
    checks: Sequence[SentenceCheck],
    settings: Settings,
) -> list[SentenceCheck]:
    """`checks` with the model's refusal replaced by the figure the evidence clearly holds, when there is one.

    A refusal is honoured unless the evidence clearly holds the answer. Clearly, for this rule: the question
    names the best-retrieved paper ("XNet") and asks for or states a quantity, and that paper's abstract has a
    sentence with a figure that counts what the question counts (`holds_figure`). "Why does XNet run ten times
    slower than the networks it is distilled from?" is then answered with the sentence "XNets can run 100times
    faster than the networks they are distilled from", quoted and cited, where the 1.5B model declined the false
    premise. "How many GPUs were used to train XNet?" is still declined when no XNet sentence counts GPUs.
    Answers with a supported claim are left as they are.
    """
    if not sources or any(check.supported and not check.dropped for check in checks):
        return list(checks)
    lead = sources[0]
    about_figure = asks_quantity(question) or states_quantity(question)
    if not about_figure or lead.number not in named_papers(question, evidence):
        return list(checks)
    sentences = evidence[lead.number].sentences
    scored = scored_sentences(question_vector, question, [lead], evidence, settings)
    index = next((index for _, _, index in scored if holds_figure(sentences[index], question)), None)
    if index is None:
        return list(checks)
    text = with_citations(f"“{short_name(sentences[0])}”: {sentences[index]}", [lead.number])
    quote = SentenceCheck(text=text, citations=[lead.number], support=1.0, supported=True, composed=True)
    kept = [check.model_copy(update={"dropped": check.dropped or is_decline(check.text)}) for check in checks]
    return [*kept, quote]


def titles_in(sentence: str, evidence: dict[int, Evidence]) -> dict[int, str]:
    """The sources a sentence names by a name (`rag.attribution.named_papers`) or by its full title, however
    short. A name inside another paper's longer title ("Sparse Routing" inside "Sparse Routing Networks for
    Visual Perception") names only the paper with the longer title."""
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
    """For questions about several papers: a sentence that only names papers ("Sparse Routing for
    Vision Layer Pruning in Language Models [1].") or says of them no more than the question ("“XNet” [1]
    generates descriptions of images ..." for "which papers describe images?") is replaced, per
    named paper, by the title and that paper's best abstract sentence (`best_sentences`), cited. The 1.5B model
    often answers "which papers ..., and how?" with titles alone; the abstract says the how. A paper whose
    sentence the answer already holds, or that `best` has no sentence for, is only named: one cited title per
    paper, never a run of titles with every marker at its end."""
    said = " ".join(remove_citations(check.text) for check in checks if not check.dropped)
    expanded: list[SentenceCheck] = []
    for check in checks:
        named = titles_in(check.text, evidence) if not check.dropped and not check.composed else {}
        rest = check.text
        for name in named.values():
            rest = rest.replace(name, " ")
        titles = " ".join(evidence[number].sentences[0] for number in named)
        quotable = any(best.get(number) for number in named)
        says_something = bool(key_terms(remove_citations(rest)))
        if not named or _says_more(rest, f"{question} {titles}") or (says_something and not quotable):
            expanded.append(check)  # without a sentence to put in its place, a sentence that says something stays
            continue
        expanded.append(check.model_copy(update={"dropped": True}))
        elsewhere = said.replace(remove_citations(check.text), " ")
        for number in sorted(named, key=lambda number: check.text.find(named[number])):
            title = evidence[number].sentences[0]
            sentence = best.get(number, "")
            quoted = sentence if sentence and sentence.rstrip(".") not in said else ""
            if not quoted and f"“{title}”" in elsewhere:
                continue  # the paper and its sentence are in the answer already
            text = with_citations(f"“{title}”: {quoted}" if quoted else f"“{title}”.", [number])
            said += f" “{title}” {quoted}"
            expanded.append(SentenceCheck(text=text, citations=[number], support=1.0, supported=True, composed=True))
    return expanded


def _says_more(text: str, known: str) -> bool:
    """Whether `text` has a content word that `known` lacks, words compared on their first five letters (so
    "generates" is "generate", and a title's "Sparse Embedding" says nothing the title did not)."""
    known_prefixes = {word[:5] for word in re.findall(r"[\w-]+", known.lower())}  # stopwords too ("propose")
    return any(term[:5] not in known_prefixes for term in key_terms(text))
