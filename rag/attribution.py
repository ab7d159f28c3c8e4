"""Claim attribution: which paper a sentence speaks of, and moving a claim to the paper that makes it.

A small model names papers loosely: it uses the marker as the paper's name ("[1] proposes ...", "... is [2].",
"This paper shows ..."), and it puts one paper's claim on another ("The architecture described in “XNet” [2]
replaces X with Y", where [1]'s abstract says so). Here:

* a marker that stands for a paper gets the title written before it (`name_cited_papers`), so the answer still
  says which paper once markers are checked or moved;
* the papers a sentence names are found by title, short name or coined name (`named_papers`);
* a sentence that names one paper but says what another paper's abstract says is given to that paper
  (`misnamed_papers`, `rename_paper`); one that opens with a paper's name and states a number only another
  paper holds is caught (`misattributes_numbers`).

Verification (`rag.verify`) applies them; quotes and records use the same naming.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from rag.evidence import Evidence, embed, support_score
from rag.markers import ONE_MARKER, parse_citations, remove_citations
from rag.settings import Settings
from rag.text import is_coined, is_decline, numbers_in, short_name, split_line
from rag.types import Source

_MARKER_GROUP = rf"{ONE_MARKER}(?:\s*(?:,\s*(?:and\s+)?|and\s+|&\s+){ONE_MARKER})*"
_PAPER_VERBS = """proposes presents introduces uses shows studies measures converts processes learns trains fits finds
argues demonstrates develops describes establishes explores investigates applies combines extends adapts reuses
recovers lays derives visualises visualizes generates distills distils reduces achieves reports evaluates employs
leverages addresses provides focuses builds designs defines identifies analyses analyzes improves outperforms
tackles offers fuses merges replaces swaps interprets rebuilds steers recognises recognizes synthesises synthesizes
detects predicts pushes"""
_SUBJECT_MARKERS = re.compile(
    rf"(?:(?<=^)|(?<=[.!?:]\s)|(?<=\n))(\s*)({_MARKER_GROUP})(?=\s+(?:(?-i:[a-z])|(?:{'|'.join(_PAPER_VERBS.split())})\b))",
    re.IGNORECASE,
)
"""Markers that open a sentence and are followed by its verb: "[1] proposes ...", "[1] Converts ...",
"[1] and [2] both use ...". Before a capitalised word that is not a paper verb ("[2] XNet is ..."), a marker
belongs to the sentence before it."""
_CAPITALISED_VERBS = "|".join(verb.capitalize() for verb in _PAPER_VERBS.split())
_NAMED_THEN_VERB = re.compile(rf"(”\s*(?:{ONE_MARKER})+\s+)((?:{_CAPITALISED_VERBS})\b)")
"""A subject marker named by its title and followed by its verb written as a list item's first word ("“XNet” [1]
Converts ..."): the verb goes lower-case, since the title now opens the sentence."""
_ITEM_OPENING = re.compile(rf"^\s*{ONE_MARKER}\s+(?=[A-Z])")
"""The marker opening an item of a "[n] ..." list answer, before the item's first (capitalised) word, whatever
that word is: "[1] Prompts ...", "[3] Filters ...". Without the title, such an item says what some paper does,
not which."""
_PAPER_NOUN = r"(?:paper|work|study|manuscript|article|talk|method|model|approach|architecture|network|system)s?"
_DETERMINER_MARKERS = re.compile(rf"\b(?:[Tt]he|[Tt]his|[Tt]hat|[Tt]hese|[Tt]hose)\s+{_PAPER_NOUN}\s+({_MARKER_GROUP})")
"""A noun phrase pointing at a marker: "The paper [1] fits ...", "these works [2][3]"."""
_OBJECT_MARKERS = re.compile(
    rf"\b(is|are|was|were|in|by|from|see|called|titled|named|including|include|includes)\s+({_MARKER_GROUP})"
)
"""A marker used as the object of a verb or preposition: "... right after XNet is [1].", "proposed by [2]"."""
_GENERIC_SUBJECT = re.compile(
    rf"^({_MARKER_GROUP}\s+)?(?:[Tt]he|[Tt]his|[Tt]hat)\s+(?:{_PAPER_NOUN}|collection|manuscript)\b(?!\s*\[)"
)
"""A sentence that calls its one cited paper "This paper" or "The collection": the title says which. A marker
in front ("[1] This manuscript argues ...") labels that subject, so it stays with the title."""
_THERE_IS_WORK = re.compile(
    r"\b(there (?:is|are|was) (?:a |an |some |one )?(?:\w+ )?(?:work|paper|study|research|article))\b(?!\s*[“(\[])",
    re.IGNORECASE,
)
""""Yes, there is work showing ... [1]" answers "is there work on ...?" without saying which: the title does."""


def name_cited_papers(text: str, sources: Sequence[Source]) -> str:
    """`text` with markers that stand for a paper preceded by the paper's title, in curly quotes.

    A small model often writes "[1] proposes X", "The paper [1] fits ...", "... is [1]." or "This paper shows
    ...": the marker is the only name it gives the paper, and once markers are checked, moved or shown as links
    the sentence no longer says which paper it means (a reader asking "which paper ...?" gets no title). Only
    valid source numbers are named; a paper whose name is already written next to the marker is not renamed.
    """
    titles = titles_of(sources)
    if not titles:
        return text

    def named(match: re.Match[str], group: int, subject: bool = False) -> str:
        nearby = match.string[max(0, match.start() - 300) : match.end() + 300].lower()
        parts = re.split(rf"({ONE_MARKER})", match.group(group))
        for position, part in enumerate(parts):
            numbers = parse_citations(part)
            title = titles.get(numbers[0]) if numbers else None
            if title and (subject or short_name(title).lower() not in nearby):
                parts[position] = f"“{title}” {part}"
        return "".join(parts)

    # a marker that is a sentence's subject is always named: once markers move to the sentence's end, a name
    # written elsewhere ("... called XNet") leaves the sentence without one ("develops ... called XNet [1].")
    text = _SUBJECT_MARKERS.sub(lambda match: match.group(1) + named(match, 2, subject=True), text)
    text = _NAMED_THEN_VERB.sub(lambda match: match.group(1) + match.group(2).lower(), text)
    text = _DETERMINER_MARKERS.sub(lambda match: named(match, 1), text)
    text = _OBJECT_MARKERS.sub(lambda match: f"{match.group(1)} {named(match, 2)}", text)
    text = "\n".join(name_generic_subjects(line, titles) for line in text.split("\n"))
    return _shorten_repeats(text, titles.values())


def is_item_list(text: str) -> bool:
    """Whether an answer is written as "[n] ..." items: it opens with a marker, which cannot cite a sentence
    before it, so the marker opening each of its sentences labels that item ("[1] Prompts a language model ...")."""
    return bool(_ITEM_OPENING.match(text))


def labelled_item(item: str, checked: str, number: int, titles: dict[int, str]) -> str:
    """`checked` (an item of an `is_item_list` answer, verified) led by the title of the paper it cites, when the
    item opened with its marker and does not name that paper: "“XNet: ...”: Prompts a language model ... [1]."
    An item that names its paper further on ("[1] The method described in “XNet” ...", its marker named by
    `name_cited_papers`) is left as it is: a label would say the title twice. Verification scores the item as
    the model wrote it: a title added before would lend it the title's similarity to its own abstract."""
    title = titles.get(number)
    opening = _ITEM_OPENING.match(item)
    if not title or not opening or _names_paper(item[opening.end() :], title):
        return checked
    return f"“{title}”: {checked}"


def _names_paper(text: str, title: str) -> bool:
    """Whether `text` opens with the paper's name, or names it further on: its title or short name in quotes,
    or a short name shorter than the title written as the title writes it ("XNet"). A title's words unquoted
    may be the topic, not the paper ("the dataset built for neural architecture retrieval")."""
    short = short_name(title)
    if _opens_with_name(text.lower(), title) or f"“{title}”" in text or f"“{short}”" in text:
        return True
    return short != title and re.search(rf"(?<!\w){re.escape(short)}(?!\w)", text) is not None


def _opens_with_name(text: str, title: str) -> bool:
    """Whether lower-cased `text` starts with the paper's short name or with the title's first words."""
    opening = " ".join(text.split()[:3]).rstrip(".:,;")
    return text.startswith(short_name(title).lower()) or (bool(opening) and title.lower().startswith(opening))


def titles_of(sources: Sequence[Source]) -> dict[int, str]:
    """Source number -> its paper's title, for the sources that have one."""
    return {source.number: source.paper.title.strip() for source in sources if source.paper.title.strip()}


def _shorten_repeats(text: str, titles: Iterable[str]) -> str:
    """Every quoted title after its first mention cut to its short name ("XNet" for "XNet: A Long Subtitle")."""
    for title in titles:
        short = short_name(title)
        quoted = f"“{title}”"
        first = text.find(quoted)
        if short != title and first >= 0:
            head, tail = text[: first + len(quoted)], text[first + len(quoted) :]
            text = head + tail.replace(quoted, f"“{short}”")
    return text


def _name_there_is_work(sentence: str, title: str) -> str:
    """ "Yes, there is work showing ..." -> "Yes, there is work (“Title”) showing ..."."""
    return _THERE_IS_WORK.sub(lambda match: f"{match.group(1)} (“{title}”)", sentence, count=1)


def name_generic_subjects(line: str, titles: dict[int, str]) -> str:
    """Each sentence of `line` that cites one paper and calls it "This paper" (or "there is work") named."""
    return " ".join(_name_generic_subject(sentence, titles) for sentence in (split_line(line) or [line]))


def _name_generic_subject(sentence: str, titles: dict[int, str]) -> str:
    cited = parse_citations(sentence)
    title = titles.get(cited[0]) if len(cited) == 1 else None
    if not title or is_decline(sentence) or title.lower() in sentence.lower():
        return sentence
    subject = _GENERIC_SUBJECT.match(sentence)
    if not subject:
        return _name_there_is_work(sentence, title)
    marker = f" {subject.group(1).strip()}" if subject.group(1) else ""
    return f"“{title}”{marker}{sentence[subject.end() :]}"


def named_papers(sentence: str, evidence: dict[int, Evidence]) -> dict[int, str]:
    """The sources a sentence names, each with the name as written. A name is a title in curly quotes, a title of
    at least `_NAME_WORDS` words, or a coined short name ("XNet", "abc2vec", "XNets"), in the title or
    coined by the abstract ("XNet" from github.com/org/XNet): a short title of plain words ("Sparse
    Routing") is also just a phrase, and would name a paper the sentence only mentions."""
    lowered = sentence.lower()
    found = {}
    for number, item in evidence.items():
        title = item.sentences[0] if item.sentences else ""
        for name in dict.fromkeys((title, short_name(title), *item.names)):
            quoted = f"“{name.lower()}”" in lowered
            if not (quoted or len(name.split()) >= _NAME_WORDS or is_coined(name)):
                continue
            match = re.search(rf"(?<!\w){re.escape(name.lower())}(?!\w)", lowered)
            if match:
                found[number] = sentence[match.start() : match.end()]
                break
    return found


_NAME_WORDS = 4
"""A title of at least this many words names its paper even unquoted."""


def misnamed_papers(
    sentences: dict[int, str], evidence: dict[int, Evidence], embedder, settings: Settings, question: str | None = None
) -> dict[int, tuple[str, int]]:
    """Sentences that name one paper but say what another paper's abstract says: {index: (name, right number)}.

    "The architecture described in “XNet: ...” [2] replaces X with Y ..." says what paper [1]'s abstract says,
    not [2]'s. The sentence is judged without the name (whose words would
    count as support for the paper it names): when the named paper does not support what is left and another
    paper clearly does (by `citation_margin` above the support threshold), the sentence names the wrong paper.
    Citations are moved the same way (`_check_claim`). The clear margin keeps the renames where the other
    paper's abstract plainly says what the sentence says (it often quotes it) and refuses the doubtful ones. A paper
    the `question` names is never renamed (`_in_question`). Costs one batch embedding of the named sentences.
    """
    named = {
        index: names
        for index, sentence in sentences.items()
        if len(names := named_papers(sentence, evidence)) == 1
        and not _in_question(next(iter(names.values())), question)
    }
    contents = {
        index: re.sub(re.escape(name), " ", remove_citations(sentences[index]), flags=re.IGNORECASE)
        for index, names in named.items()
        for name in names.values()
    }
    vectors = embed(embedder, list(contents.values()))
    found = {}
    for (index, content), vector in zip(contents.items(), vectors, strict=True):
        ((number, name),) = named[index].items()
        scores = {
            other: support_score(content, vector, item, settings.answer.support_lexical_weight)[0]
            for other, item in evidence.items()
        }
        best = max(scores, key=scores.__getitem__)
        clearly = settings.answer.support_threshold + settings.answer.citation_margin
        if best != number and scores[number] < settings.answer.support_threshold and scores[best] >= clearly:
            found[index] = (name, best)
    return found


def _in_question(name: str, question: str | None) -> bool:
    """True when the question names the paper itself: then a sentence about another paper does not answer it
    ("What accuracy does the XNet abstract report?"), and renaming would hide that."""
    return question is not None and name.lower() in question.lower()


def rename_paper(sentence: str, name: str, title: str) -> str:
    """`sentence` with the paper called `name` called by `title` instead, in curly quotes."""
    if f"“{name}”" in sentence:
        return sentence.replace(f"“{name}”", f"“{title}”", 1)
    return sentence.replace(name, f"“{title}”", 1)


def opening_subject(sentence: str, evidence: dict[int, Evidence]) -> int | None:
    """The source whose name opens the sentence ("The XNet abstract reports ..."), if exactly one."""
    opening = " ".join(remove_citations(sentence).split()[:_OPENING_WORDS])
    named = named_papers(opening, evidence)
    return next(iter(named)) if len(named) == 1 else None


_OPENING_WORDS = 4


def misattributes_numbers(sentence: str, evidence: dict[int, Evidence]) -> bool:
    """True when the sentence opens with one source's name and states a number that source does not hold: "The
    XNet abstract reports ... 82.7% [2]", where 82.7% is what the YNet abstract [2] reports. Support per cited source
    cannot see it: [2] holds the number, but the sentence gives it to another paper."""
    subject = opening_subject(sentence, evidence)
    return subject is not None and bool(numbers_in(sentence) - evidence[subject].numbers)
