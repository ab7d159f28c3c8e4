"""Question parts the answer left unanswered, each answered on its own.

A question that asks two things ("Up to how many X can it train, and how much performance do they keep?") is
told so (`PARTS_PROMPT`), yet the 1.5B model often answers the part its best sentence speaks to and stops. A
part no kept sentence speaks to (`unanswered_parts`) is asked again, alone, over the answer's own paper and
that paper's sentences most like the part (`PART_PROMPT`): a short prompt whose only job is that part. Its
sentence goes through the same verification and judge as the answer's, so nothing unchecked is added.

A question that compares papers by name ("How do XNet and YNet differ in ...?") has one part per paper
(`compared_papers`): the model tends to describe the first and give the second the same words, or to cite one
paper for both. A sentence that names one compared paper but cites another is dropped (`crossed_comparisons`),
and each compared paper no kept sentence speaks for is asked about alone, over its own abstract
(`COMPARED_PAPER_PROMPT`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from rag.attribution import named_papers
from rag.context import asks_quantity
from rag.corpus import coined_names
from rag.evidence import Evidence
from rag.markers import remove_citations
from rag.prompts import COMPARED_PAPER_PROMPT, PART_PROMPT, SOURCE_TEMPLATE, SYSTEM_PROMPT
from rag.text import is_coined, key_terms, question_parts, short_name, states_quantity
from rag.types import SentenceCheck, Source


def part_terms(parts: Sequence[str], known: set[str]) -> list[set[str]]:
    """Each part's own key terms: those no other part shares (the subject they all name) and not in `known`
    (the answer's paper's title: an answer names its paper whichever part it answers)."""
    terms = [key_terms(part) - known for part in parts]
    return [own - set().union(*(other for j, other in enumerate(terms) if j != i)) for i, own in enumerate(terms)]


def unanswered_parts(question: str, sentences: Sequence[str], known: set[str] = frozenset()) -> list[str]:
    """The parts of a several-part `question` (`question_parts`) that none of the answer's `sentences` speaks
    to: no sentence holds one of the part's own terms (`part_terms`), or, for a "how many / how much" part,
    none that does also states a quantity. [] for a one-part question, or when nothing was answered."""
    parts = question_parts(question)
    if len(parts) < 2 or not sentences:
        return []
    held = [key_terms(sentence) for sentence in sentences]
    missing = []
    for part, own in zip(parts, part_terms(parts, set(known)), strict=True):
        if not own:
            continue
        counting = asks_quantity(part)
        speaking = [sentence for sentence, terms in zip(sentences, held, strict=True) if own & terms]
        if not speaking or (counting and not any(states_quantity(sentence) for sentence in speaking)):
            missing.append(part)
    return missing


def part_messages(question: str, part: str, source: Source, passage: Sequence[str]) -> list[dict[str, str]]:
    """The prompt for one unanswered part: the system rules (a cached prefix), the answer's paper with its
    `passage` sentences, the whole question for context, and the part to answer."""
    return _one_source_messages(PART_PROMPT, source, passage, question=question, part=part)


def _one_source_messages(template: str, source: Source, passage: Sequence[str], **fields: str) -> list[dict[str, str]]:
    """The system rules, then `template` filled with one source (its `passage` sentences) and `fields`."""
    formatted = SOURCE_TEMPLATE.format(number=source.number, title=source.title, authors="", passage=" ".join(passage))
    user = template.format(source=formatted, number=source.number, **fields)
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def without_echo(reply: str, part: str) -> str:
    """`reply` without a leading restatement of the `part` it answers ("In the X paper, which model beat Y, a
    prototypical network ..." -> "A prototypical network ..."): the small model often opens by copying the
    question. Only a copy of the part's start, of at least `_ECHO_WORDS` words and half the part, is cut, with
    the comma after it."""
    words = reply.split()
    asked = [word.strip(",.?:;").lower() for word in part.split()]
    same = 0
    while same < min(len(words), len(asked)) and words[same].strip(",.?:;").lower() == asked[same]:
        same += 1
    if same < max(_ECHO_WORDS, len(asked) // 2) or same == len(words):
        return reply
    rest = " ".join(words[same:]).lstrip(",:; ")
    return rest[:1].upper() + rest[1:] if rest else reply


_ECHO_WORDS = 4


def superseded(checks: Sequence[SentenceCheck], replies: Sequence[str]) -> list[SentenceCheck]:
    """`checks` with a kept sentence dropped when a part's reply starts with the whole of it ("XNet trains 160
    sub-models" and the reply "XNet trains 160 sub-models, keeping 96% of the performance"): the reply says it
    again and more, so it stands in its place."""

    def words(text: str) -> list[str]:
        return remove_citations(text).lower().rstrip(" .").replace(",", " ").split()

    starts = [words(reply) for reply in replies]

    def repeated(check: SentenceCheck) -> bool:
        said = words(check.text)
        return len(said) >= _ECHO_WORDS and any(start[: len(said)] == said for start in starts)

    return [
        check.model_copy(update={"dropped": True}) if not check.dropped and repeated(check) else check
        for check in checks
    ]


def kept_sentences(checks: Sequence[SentenceCheck]) -> list[str]:
    """The text of the sentences an answer keeps."""
    return [check.text for check in checks if not check.dropped]


# --- papers compared by name ----------------------------------------------------------------------------------


def paper_mentions(text: str, evidence: Mapping[int, Evidence]) -> list[tuple[int, int, int]]:
    """Where `text` names a source: (start, end, number), in text order. A name is one `named_papers` accepts
    (a quoted or long title, a coined word), a name the abstract gives its method (`coined_names`, "we propose
    X with Y (X-Y)" included), or the short name before a title's colon written with the title's own capitals
    ("Zeta: Fast ..." named "Zeta", not "zeta"): a capitalised name in a question is a proper noun, while
    "zeta" may be an ordinary word."""
    found = []
    for number, item in evidence.items():
        title = item.sentences[0] if item.sentences else ""
        names = [*named_papers(text, {number: item}).values()]
        names += [name for name in coined_names(" ".join(item.sentences[item.abstract_start :])) if is_coined(name)]
        short = short_name(title)
        if short != title and short[:1].isupper():
            names.append(short)
        for name in dict.fromkeys(names):
            match = _find_name(name, text, ignore_case=name != short)
            if match:
                found.append((match.start(), match.end(), number))
                break
    return sorted(found)


def _find_name(name: str, text: str, ignore_case: bool = False) -> re.Match[str] | None:
    """`name` in `text` as a whole name: not inside a longer word or hyphenated compound ("XNet" not in "XNet-2")."""
    return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text, flags=re.IGNORECASE if ignore_case else 0)


_JOINED = re.compile(r"\s*(?:,\s*(?:and|or)?|and|or|&|/|vs\.?|versus)\s*", re.IGNORECASE)
"""What joins the names of compared papers: "XNet and YNet", "XNet vs YNet", "XNet, YNet or ZNet"."""


def compared_papers(question: str, evidence: Mapping[int, Evidence]) -> dict[int, str]:
    """The papers `question` compares by name, {number: name as written}, in the question's order: two or
    more named papers whose names are joined by "and", "or", "vs", "versus", "&" or a comma. {} otherwise: a
    paper named apart from another ("how does XNet's cost compare with YNet-B?") is a baseline the first
    paper's abstract speaks of, not a paper to describe on its own."""
    mentions = paper_mentions(question, evidence)
    best: list[tuple[int, int, int]] = []
    run: list[tuple[int, int, int]] = []
    for mention in mentions:
        joined = run and mention[2] != run[-1][2] and _JOINED.fullmatch(question[run[-1][1] : mention[0]])
        run = [*run, mention] if joined else [mention]
        if len({number for *_, number in run}) > len({number for *_, number in best}):
            best = run
    numbers = {number for *_, number in best}
    if len(numbers) < 2:
        return {}
    return {number: question[start:end] for start, end, number in best}


def crossed_comparisons(checks: Sequence[SentenceCheck], compared: Mapping[int, str]) -> list[SentenceCheck]:
    """`checks` with a kept sentence dropped when it names one compared paper and cites only others ("YNet
    uses X [1]" where [1] is XNet's abstract): what it says of YNet was read off XNet."""

    def crossed(check: SentenceCheck) -> bool:
        text = remove_citations(check.text)
        named = {number for number, name in compared.items() if _find_name(name, text, ignore_case=True)}
        cited = set(check.citations) & set(compared)
        return bool(named and cited and not (named & cited))

    return [
        check.model_copy(update={"dropped": True})
        if not check.dropped and not check.composed and crossed(check)
        else check
        for check in checks
    ]


def uncovered_papers(checks: Sequence[SentenceCheck], compared: Mapping[int, str]) -> list[int]:
    """The compared papers, in the question's order, that no kept supported sentence cites."""
    cited = {number for check in checks if check.supported and not check.dropped for number in check.citations}
    return [number for number in compared if number not in cited]


def compared_paper_messages(question: str, name: str, source: Source, passage: Sequence[str]) -> list[dict[str, str]]:
    """The prompt that asks `question` of one compared paper alone: the system rules, the paper with its
    `passage` sentences, the question, and the name of the paper to answer for."""
    return _one_source_messages(COMPARED_PAPER_PROMPT, source, passage, question=question, name=name)
