"""Sentence verification: every sentence of an answer checked against the sources, citations corrected.

A small model cites loosely: it invents source numbers, cites the wrong paper, forgets a marker, or adds a
claim no source makes. `verify_answer` fixes what can be fixed in code and removes what cannot:

* a marker the model uses as the paper's name gets the title written before it, and a claim put on the wrong
  paper is given to its paper (`rag.attribution`);
* a marker naming no existing source is removed (`rag.markers.strip_invalid_citations`);
* each sentence gets a support score against every source (`rag.evidence.support_score`: sentence cosine
  blended with key-term overlap, zero when a number is missing from the source);
* a cited source that does not reach `Settings.answer.support_threshold` loses its marker; if another source does,
  the citation moves to the best such source; an uncited sentence that a source supports gets its marker;
* a sentence no source supports is dropped, or kept without markers when `Settings.answer.unsupported_policy` is
  "mark";
* sentences that say the collection does not answer ("The collection does not say ...") are statements about
  the sources, not claims from them: they are kept without markers, never scored.

Source sentences that read like instructions to a model are never evidence (`rag.injection`), so an answer
that obeys or quotes an injected instruction finds no support and is dropped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from rag.attribution import (
    is_item_list,
    labelled_item,
    misattributes_numbers,
    misnamed_papers,
    name_cited_papers,
    name_generic_subjects,
    rename_paper,
    titles_of,
)
from rag.evidence import Evidence, build_evidence, embed, support_score
from rag.markers import LEADING_MARKERS, parse_citations, remove_citations, strip_invalid_citations, with_citations
from rag.settings import Settings
from rag.text import is_decline, key_terms, numbers_in, split_sentences
from rag.types import SentenceCheck, Source


def verify_answer(
    text: str,
    sources: Sequence[Source],
    embedder,
    settings: Settings,
    evidence: dict[int, Evidence] | None = None,
    question: str | None = None,
) -> tuple[str, list[SentenceCheck]]:
    """Check every sentence of `text` against `sources`; return the corrected text and one check per sentence.

    `evidence` (from `build_evidence`) can be passed in when the caller already embedded the sources.
    The returned text cites only numbers of `sources`, each cited sentence with the sources that support it.
    With the `question`, a sentence that only restates it ("The authors of X are [1].", "The learning rate
    was, and the batch size was [1].") is dropped: it is well "supported", since its words are the question's
    and the source's, but it answers nothing.
    """
    valid = [source.number for source in sources]
    titles = titles_of(sources)
    listed = is_item_list(text)
    text = name_cited_papers(text, sources)
    evidence = evidence if evidence is not None else build_evidence(sources, embedder)
    evidence = {number: item for number, item in evidence.items() if number in valid}
    sentences = split_sentences(text)
    claims = [index for index, sentence in enumerate(sentences) if not is_decline(sentence)]
    vectors = embed(embedder, [remove_citations(sentences[index]) for index in claims])
    misnamed = misnamed_papers({index: sentences[index] for index in claims}, evidence, embedder, settings, question)
    checks: list[SentenceCheck] = []
    kept_vectors: list[np.ndarray] = []
    for index, sentence in enumerate(sentences):
        cited = parse_citations(sentence)
        sentence = strip_invalid_citations(sentence, valid)
        vector = vectors[claims.index(index)] if index in claims else None
        renamed_from = None
        if index in misnamed:  # a claim put on the wrong paper: give it to its paper, unless that is said already
            name, right = misnamed[index]
            if any(right in check.citations for check in checks if not check.dropped):
                checks.append(SentenceCheck(text=remove_citations(sentence), removed_citations=cited, dropped=True))
                continue
            renamed_from, sentence, cited = name, rename_paper(sentence, name, titles[right]), [right]
        if vector is not None and _repeats(vector, kept_vectors, settings.answer.duplicate_similarity):
            # small models restate their first sentence; a repeat adds nothing but length
            checks.append(SentenceCheck(text=sentence, citations=cited, dropped=True))
            continue
        if index not in claims:  # "The sources do not say ..." cites nothing: it is about all of them
            statement = remove_citations(sentence)
            checks.append(SentenceCheck(text=statement, removed_citations=cited))
            continue
        if question is not None and restates(sentence, question):
            checks.append(SentenceCheck(text=remove_citations(sentence), removed_citations=cited, dropped=True))
            continue
        check = _check_claim(sentence, cited, vector, evidence, settings)
        if check.supported:  # "This paper shows ..." whose marker verification just added: say which paper
            check = check.model_copy(update={"text": name_generic_subjects(check.text, titles)})
        if listed and check.supported:  # "[1] Prompts ..." named once its support is scored as written
            check = check.model_copy(update={"text": labelled_item(sentence, check.text, check.citations[0], titles)})
        if renamed_from and check.supported:
            check = check.model_copy(update={"renamed_from": renamed_from})
        checks.append(check)
        if not check.dropped:
            kept_vectors.append(vector)
    return answer_text(checks), checks


def answer_text(checks: Sequence[SentenceCheck]) -> str:
    """The answer as shown: the sentences not dropped, in order, each ended with a period."""
    return " ".join(_ended(check.text) for check in checks if not check.dropped).strip()


def _ended(sentence: str) -> str:
    """`sentence` with a final period when it has none ("Title [3]" -> "Title [3]."): list items and title
    lines are joined into one paragraph, where they would otherwise run into each other."""
    ends = re.search(r"[.!?][\"'”’)]*$", remove_citations(sentence).rstrip())
    return sentence if ends or not sentence.strip() else sentence.rstrip() + "."


_REFERRING_WORDS = frozenset(key_terms("author written wrote titled named called"))
"""Words an answer uses to point at a paper without saying anything about it ("... was written by the authors
of [1]"): they do not make a restated question an answer."""


def restates(sentence: str, question: str) -> bool:
    """True when `sentence` has no content word and no number that the question does not already have."""
    new_terms = key_terms(sentence) - key_terms(question) - _REFERRING_WORDS
    new_numbers = numbers_in(sentence) - numbers_in(question)
    return not new_terms and not new_numbers


def _repeats(vector: np.ndarray, earlier: list[np.ndarray], threshold: float) -> bool:
    return any(float(vector @ other) >= threshold for other in earlier)


def _check_claim(
    sentence: str, cited: list[int], vector: np.ndarray, evidence: dict[int, Evidence], settings: Settings
) -> SentenceCheck:
    scores = {
        number: support_score(sentence, vector, item, settings.answer.support_lexical_weight)[0]
        for number, item in evidence.items()
    }
    if misattributes_numbers(sentence, evidence):
        scores = dict.fromkeys(scores, 0.0)
    best_overall = max(scores.values(), default=0.0)
    floor = max(settings.answer.support_threshold, best_overall - settings.answer.citation_margin)
    passing = {number for number, score in scores.items() if score >= floor}
    final = [number for number in cited if number in passing]
    added: list[int] = []
    if not final and passing:
        best = max(passing, key=lambda number: scores[number])
        final, added = [best], [best]
    removed = [number for number in cited if number not in final]
    best_score = max((scores[number] for number in final), default=max(scores.values(), default=0.0))
    if not final:
        drop = settings.answer.unsupported_policy == "drop"
        return SentenceCheck(
            text=remove_citations(sentence),
            support=round(best_score, 4),
            removed_citations=removed,
            dropped=drop,
        )
    as_written = final == parse_citations(sentence) and not LEADING_MARKERS.match(sentence)
    rewritten = sentence if as_written else with_citations(sentence, final)
    return SentenceCheck(
        text=rewritten,
        citations=final,
        support=round(best_score, 4),
        supported=True,
        added_citations=added,
        removed_citations=removed,
    )


def has_supported_claim(checks: Sequence[SentenceCheck]) -> bool:
    """True when some sentence still stands and a source supports it: otherwise the answer is a refusal."""
    return any(check.supported and not check.dropped for check in checks)
