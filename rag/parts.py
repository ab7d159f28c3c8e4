"""Question parts the answer left unanswered, each answered on its own.

A question that asks two things ("Up to how many X can it train, and how much performance do they keep?") is
told so (`PARTS_PROMPT`), yet the 1.5B model often answers the part its best sentence speaks to and stops. A
part no kept sentence speaks to (`unanswered_parts`) is asked again, alone, over the answer's own paper and
that paper's sentences most like the part (`PART_PROMPT`): a short prompt whose only job is that part. Its
sentence goes through the same verification and judge as the answer's, so nothing unchecked is added.
"""

from __future__ import annotations

from collections.abc import Sequence

from rag.context import asks_quantity, states_quantity
from rag.markers import remove_citations
from rag.prompts import PART_PROMPT, SOURCE_TEMPLATE, SYSTEM_PROMPT
from rag.text import key_terms, question_parts
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
    formatted = SOURCE_TEMPLATE.format(number=source.number, title=source.title, authors="", passage=" ".join(passage))
    user = PART_PROMPT.format(source=formatted, question=question, part=part, number=source.number)
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
