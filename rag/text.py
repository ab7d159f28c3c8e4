"""Text helpers, in one place: sentences, words and terms, numbers, titles and names, acronyms, clock times.

Every stage that splits, tokenises, stems, normalises or reads numbers calls this module, so a fix (how
"e.g." or "Fig. 3" split, which words are stopwords) reaches all of them. Where stages need different
behaviour it is a parameter here, named for what it changes, never a second copy:

* sentences: `split_sentences` reads answers and the abstracts they are checked against (abbreviations,
  initials, quoted titles, markers after the period, list lines); `split_prose` is the light splitter for
  edited prose (a stop, whitespace, and with `next_start` a capital, digit or bracket), and
  `sentences_within` feeds chunking (every stop, over-long sentences cut at spaces);
* words: `tokenize` makes BM25 terms (compounds such as "Model-50" kept whole and split, `stem`); `key_terms`
  makes the sets of content words that overlap scores compare, in two styles (`TermStyle`);
* numbers: `numbers_in` (digits, normalised; sizes such as 3x3 whole) and `figures_in` (less the numbers of
  names such as Set-10);
* titles: `normalise_title` (the key duplicates and mentions are matched by), `as_words`, `short_name`,
  `is_coined`;
* abbreviations: `acronym_definitions` ("magnetic resonance imaging (MRI)"), `agreed_long_forms` over a
  collection, `expand_acronyms` for a query;
* clock times: `clock_times`, `slot_start`, `start_minute` (the start of a "13:05 - 13:25" slot);
* `is_decline`: a sentence that says the sources do not answer.

The hand-written code stays. Of the maintained alternatives only bm25s' own tokenizer is installed (pysbd,
syntok, blingfire and PyStemmer are not), and BM25 ranks worse with it than with `tokenize`
(`bench/tokenizer_choice.py`, figures in bench/results/tokenizers.md).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Literal

from rag.markers import LEADING_MARKERS, put_markers_inside, remove_citations

# --- sentences ----------------------------------------------------------------------------------------------

_ABBREVIATION_WORDS = """e.g eg i.e ie et al vs cf fig figs eq eqs sec secs approx resp viz no nos vol pp ch
dr mr mrs ms prof st inc ltd co jr sr est ca"""
ABBREVIATIONS = frozenset(_ABBREVIATION_WORDS.split())
"""Words that end with a period without ending the sentence (compared lower-case, without the period)."""

_BOUNDARY = re.compile(r"[.!?]+[\"'”’)\]]*\s+")
_BULLET = re.compile(r"^\s*(?:[-*•]|\d{1,2}[.)])\s+")
_QUOTED = re.compile(r"“[^”]{1,300}”")
_NEXT_ITEM = re.compile(r"\s+(?=\[\d+\]\s*[A-Z“\"])")


def split_sentences(text: str) -> list[str]:
    """Sentences of `text`, robust to abbreviations ("e.g."), decimals, initials, quoted titles and markers.

    Line breaks always end a sentence (answers come as lines or bullets; bullets are removed). Markers
    written after the period ("fast. [1] Next") belong to the sentence before them and are moved inside it:
    "fast [1].". A line that opens with a marker ("[2] A Paper Title in ...") is a list item labelled
    with its source, and keeps it; a line of markers alone belongs to the line before.
    """
    sentences: list[str] = []
    for line in _list_lines(text or ""):
        line = _BULLET.sub("", line).strip()
        for position, piece in enumerate(split_line(line) if line else []):
            markers = LEADING_MARKERS.match(piece)
            rest = piece[markers.end() :].strip() if markers else piece
            if markers and sentences and (position > 0 or not rest):
                sentences[-1] = put_markers_inside(sentences[-1], markers.group(0).strip())
                piece = rest
            if piece:
                sentences.append(piece)
    return sentences


def _list_lines(text: str) -> list[str]:
    """Lines of `text`, with a run-on list split into its items: a line that opens with a marker and has more
    markers before capitalised words ("[1] XNet [2] YNet [4] ZNet") is one item per marker, as the
    model lists sources in the prompt's own "[n] Title" shape."""
    lines = []
    for line in text.splitlines():
        lines.extend(_NEXT_ITEM.split(line.strip()) if LEADING_MARKERS.match(line.strip()) else [line])
    return lines


def split_line(line: str) -> list[str]:
    """Sentences of one line (no list items, no marker moves): `split_sentences` without the line handling."""
    sentences, start = [], 0
    quoted = [range(match.start(), match.end()) for match in _QUOTED.finditer(line)]
    for match in _BOUNDARY.finditer(line):
        inside_quote = any(match.start() in span for span in quoted)  # a named title: “Stop! A Title”
        if not inside_quote and _is_boundary(line, match):
            sentences.append(line[start : match.end()].strip())
            start = match.end()
    if line[start:].strip():
        sentences.append(line[start:].strip())
    return sentences


def _is_boundary(line: str, match: re.Match[str]) -> bool:
    following = line[match.end() : match.end() + 1]
    if following.islower():  # "et al. show", "e.g. the": a new sentence never starts lower-case
        return False
    if not match.group(0).startswith("."):
        return True
    words = line[: match.start()].split()
    last = words[-1].lstrip("([\"'").lower() if words else ""
    if last in ABBREVIATIONS or last.rstrip(".") in ABBREVIATIONS:
        return False
    if re.fullmatch(r"[a-z]", last) and line[match.start() - 1].isupper():  # an initial: "J. Smith"
        return False
    return not re.fullmatch(r"(?:[a-z]\.)+[a-z]", last)  # "U.S." style acronyms


PROSE_START = "[A-Z0-9\"'(\\[]"
"""What the next sentence of an abstract opens with for `split_prose` to split: a capital, a digit, a quote or
a bracket ("... in [3]. [4] shows" splits; "... vs. the" does not)."""


@lru_cache(maxsize=8)
def _stop_pattern(next_start: str | None) -> re.Pattern[str]:
    return re.compile(r"(?<=[.!?])\s+" + (f"(?={next_start})" if next_start else ""))


_REFERRING_OPENER = re.compile(
    r"^\W*(?:this|these|that|those|such|it|its|they|their|both|the latter|the former)\b", re.IGNORECASE
)


def opens_with_reference(sentence: str) -> bool:
    """True when a sentence opens by pointing back ("This approach ...", "It ...", "Such models ..."): read
    alone, its subject is whatever the reader takes it for, so the sentence before it belongs with it."""
    return bool(_REFERRING_OPENER.match(sentence))


def split_prose(text: str, next_start: str | None = PROSE_START) -> list[str]:
    """Sentences of edited prose (an abstract), split at whitespace after ".", "!" or "?" when what follows
    matches `next_start` (a regex character class; None: always). Lighter than `split_sentences`: abstracts
    rarely hold the list lines and loose markers of a model's answer. The extractive backend keeps the default;
    the sentence reranker passes "[A-Z0-9(]" (a quote does not start a sentence there); chunking passes None
    through `sentences_within`."""
    return [sentence.strip() for sentence in _stop_pattern(next_start).split(text or "") if sentence.strip()]


def sentences_within(text: str, max_chars: int) -> list[str]:
    """Sentences of `text` for chunking, split at every stop, whitespace collapsed; one longer than
    `max_chars` (a run-on, a missing full stop) is cut at spaces."""
    sentences: list[str] = []
    for sentence in split_prose(" ".join(text.split()), next_start=None):
        sentences.extend(_cut_long(sentence, max_chars))
    return sentences


def _cut_long(sentence: str, max_chars: int) -> list[str]:
    if len(sentence) <= max_chars:
        return [sentence]
    pieces: list[str] = []
    start = 0
    while start < len(sentence):
        end = min(start + max_chars, len(sentence))
        if end < len(sentence):
            space = sentence.rfind(" ", start + 1, end)
            end = space if space > start else end
        pieces.append(sentence[start:end].strip())
        start = end
    return [piece for piece in pieces if piece]


# --- words and terms ----------------------------------------------------------------------------------------

_FUNCTION_WORD_TEXT = """
a about above after again all also am an and any are as at be been being below between both but by can could
did do does doing during each few for from further had has have having he her here hers him his how i if in
into is it its itself just more most my no nor not now of off on once only or other our out over own same she
should so some such than that the their them then there these they this those through to too under until up
very was we were what when where which while who whom why will with would you your
"""
FUNCTION_WORDS = frozenset(_FUNCTION_WORD_TEXT.split())
"""English function words, stopwords in every use below."""

_BM25_EXTRA = "against because before down may me might must ours theirs upon us via whose within without yours"
STOPWORDS = FUNCTION_WORDS | frozenset(_BM25_EXTRA.split())
"""BM25's stopwords (`tokenize`): Lucene's list plus question words and fillers that carry no topic ("which
papers did ... propose"). Words papers use about themselves ('paper', 'method') stay: BM25 weighs them low."""

_OVERLAP_EXTRA = """against because before done down either theirs via approach based many method much new one two
three well paper papers source sources study work propose proposed present presents show shows shown use used uses
using"""
_OVERLAP_STOPWORDS = FUNCTION_WORDS | frozenset(_OVERLAP_EXTRA.split())
"""Stopwords of `key_terms` (style "overlap"): the words every answer and abstract uses to talk about papers
('propose', 'method', 'source') would make any sentence look supported."""

_EXTRACTIVE_EXTRA = (
    "done me ours yours approach method new paper papers propose proposed present show shows use used using work"
)
_EXTRACTIVE_STOPWORDS = FUNCTION_WORDS | frozenset(_EXTRACTIVE_EXTRA.split())
"""Stopwords of `key_terms` (style "extractive"): the extractive backend's, which ranks sentences by rarity."""


def stem(word: str) -> str:
    """A light suffix stripper (plurals, -ing, -ed): merges 'networks'/'network', 'trained'/'training'.

    Deliberately weaker than Porter: it never touches short words, acronyms with digits, or words whose stem
    would be shorter than three letters, so names and method acronyms survive unchanged.
    """
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "ches", "shes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is", "ys")):
        word = word[:-1]
    for suffix in ("ing", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            word = word[: -len(suffix)]
            if len(word) >= 4 and word[-1] == word[-2] and word[-1] not in "lsz":
                word = word[:-1]  # running -> runn -> run
            break
    return word


# A word, optionally joined to more words/numbers by - . / + (Model-50, Set-10, 2.46, abc2vec, C++), and a
# trailing % for percentages. Apostrophes end a token ("model's" -> "model").
_TOKEN = re.compile(r"[a-z0-9]+(?:[-./+][a-z0-9]+)*\+*%?")
_PARTS = re.compile(r"[a-z0-9]+")


def tokenize(text: str, stemming: bool = True) -> list[str]:
    """Lowercased BM25 terms of `text`: stopwords dropped, compounds kept whole plus their parts."""
    tokens: list[str] = []
    for match in _TOKEN.finditer(text.lower()):
        token = match.group()
        parts = _PARTS.findall(token)
        if len(parts) > 1 or token.endswith(("%", "+")):
            tokens.append(token)
        for part in parts:
            if part not in STOPWORDS:
                tokens.append(stem(part) if stemming else part)
    return tokens


def _strip_suffix(word: str) -> str:
    """Style "overlap": one of -ing, -ed, -es, -s, -ly cut from a word of 4+ letters left ('ss' kept)."""
    for suffix in ("ing", "ed", "es", "s", "ly"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix) and not word.endswith("ss"):
            return word[: -len(suffix)]
    return word


def _strip_plural(word: str) -> str:
    """Style "extractive": a plural 's' cut from a word of 4+ letters ('ss' kept)."""
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


TermStyle = Literal["overlap", "extractive"]
"""How `key_terms` reads words. "overlap" (support scores, restated questions, quote choice, follow-ups):
citation markers removed, words start with a letter and may join parts by - or ', -ing/-ed/-es/-s/-ly cut.
"extractive" (the extractive backend): words may start with a digit ('3d') and join parts by -, only a plural
's' cut, another stopword list. They were tuned apart, so each keeps its own."""

_STYLES = {  # style: (word pattern, stopwords, stemmer, markers removed first)
    "overlap": (re.compile(r"[a-z][a-z0-9]*(?:[-'][a-z0-9]+)*"), _OVERLAP_STOPWORDS, _strip_suffix, True),
    "extractive": (re.compile(r"[a-z0-9][a-z0-9\-]*"), _EXTRACTIVE_STOPWORDS, _strip_plural, False),
}


def key_terms(text: str, style: TermStyle = "overlap") -> set[str]:
    """Lower-cased, lightly stemmed content words of `text` (stopwords and one-letter words dropped), for
    overlap scores: which words a sentence shares with a source or a question."""
    pattern, stopwords, stemmer, unmarked = _STYLES[style]
    words = pattern.findall((remove_citations(text) if unmarked else text).lower())
    return {stemmer(word) for word in words if word not in stopwords and len(word) > 1}


# --- numbers ------------------------------------------------------------------------------------------------

_NUMBER = re.compile(r"(?<![A-Za-z\d.])(\d+(?:\.\d+)?)(?!\.?\d)(?=$|[^A-Za-z\d]|(?:x|times|fold)\b)")
_SIZE = re.compile(r"(?<![A-Za-z\d.])(\d+)\s*[x×]\s*(\d+)(?![\d.])")
"""A size such as 3x3, 7 × 7 or 224x224: one quantity, compared whole ('7x7' is not '3x3')."""
_NAME_NUMBER = re.compile(r"(?<=[A-Za-z])-\d+(?:\.\d+)?\b")
"""The number of a name: Set-10, Model-50, Stage-2."""
_ENUMERATOR = re.compile(r"(?:^|(?<=[\s:;,]))\(\d{1,2}\)(?=\s)|^\s*\d{1,2}\)(?=\s)", re.MULTILINE)
"""A list item's label: "(1) ", "2) "."""


def numbers_in(text: str) -> set[str]:
    """Numbers written as digits, normalised ('1,000' -> '1000', '7.0' -> '7'); digits inside names such as
    'Set10' are part of the name, not numbers; a size like '3×3' is one number, '3x3'. Markers are not numbers."""
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", remove_citations(text))
    sizes = {f"{rows}x{columns}" for rows, columns in _SIZE.findall(text)}
    text = _SIZE.sub(" ", text)
    return sizes | {_normalise_number(value) for value in _NUMBER.findall(text)}


_QUANTITY_WORDS = re.compile(
    r"\b(?:times|fold|twice|double|half|dozens?|tens|hundreds|thousands|millions|billions)\b", re.IGNORECASE
)


def states_quantity(sentence: str) -> bool:
    """True for a sentence with a number, in digits or words ("up to tens of times faster")."""
    return bool(numbers_in(sentence) or _QUANTITY_WORDS.search(sentence))


def _normalise_number(value: str) -> str:
    return value.rstrip("0").rstrip(".") if "." in value else value.lstrip("0") or "0"


def figures_in(text: str) -> set[str]:
    """The numbers a text states (`numbers_in`), less those that are part of a name ("Set-10", "Model-50") or
    label a list item ("(1) a teacher; (2) a student")."""
    return numbers_in(_ENUMERATOR.sub(" ", _NAME_NUMBER.sub(" ", text)))


# --- titles and names ---------------------------------------------------------------------------------------

_NON_WORD = re.compile(r"[\W_]+")


def normalise_title(title: str, *, fold_accents: bool = True) -> str:
    """The key titles and names are compared by: case, punctuation and spacing do not count, nor (with
    `fold_accents`) accents.

    Pages print the same title as "Über Networks", "Uber Networks" or "... Representations." with a
    trailing period; all of them name one paper. Metadata mentions (`rag.retrieve.MetadataMentions`) keep
    accents (`fold_accents=False`): there "José" in a query names José, not Jose.
    """
    if fold_accents and not title.isascii():  # most titles are ASCII: skip the per-character accent stripping
        decomposed = unicodedata.normalize("NFKD", title)
        title = "".join(char for char in decomposed if not unicodedata.combining(char))
    return _NON_WORD.sub(" ", title.casefold()).strip()


def as_words(text: str, *, fold_accents: bool = True) -> str:
    """`normalise_title(text)` between spaces, so `as_words(name) in as_words(text)` finds whole words only."""
    return f" {normalise_title(text, fold_accents=fold_accents)} "


def short_name(title: str) -> str:
    """The name before a title's colon when it is short ("XNet"), else the whole title."""
    short = title.split(":", 1)[0].strip()
    return short if ":" in title and len(short.split()) <= 4 else title


def is_coined(name: str) -> bool:
    """A made-up word of at least 4 characters, recognisable by a digit or an inner capital: "XNet", "Zeta9"."""
    return len(name) >= 4 and " " not in name and bool(re.search(r"\d|.[A-Z]", name))


# --- abbreviations ------------------------------------------------------------------------------------------

_DEFINED_SHORT = re.compile(r"\(\s*([A-Za-z][A-Za-z0-9-]{1,11})\s*[);,]")
_CLAUSE_BREAK = re.compile(r"[.;:!?()\[\]]\s|[()\[\]]")
_ACRONYM_WORD = re.compile(r"(?<![\w-])[A-Za-z][A-Za-z0-9-]{1,11}(?![\w-])")


def is_acronym(word: str) -> bool:
    """Two or more capitals and no spaces ("MRI", "BoW", "mRNAs", "IL-6"): a word that abbreviates a phrase."""
    return 2 <= len(word) <= 12 and " " not in word and sum(char.isupper() for char in word) >= 2


def acronym_key(word: str) -> str:
    """The form an acronym is looked up by: its plural "s" after a capital dropped ("MRIs" -> "MRI")."""
    return word[:-1] if len(word) > 2 and word.endswith("s") and word[-2].isupper() else word


def acronym_definitions(text: str) -> list[tuple[str, str]]:
    """(acronym, long form) for each "long form (ACRONYM)" the text defines, the acronym by `acronym_key`.

    The long form is found as Schwartz & Hearst (2003) find it, with no list of terms of any field: from the
    words just before the bracket (at most min(n + 5, 2n) for an n-letter acronym, within the clause), the
    shortest run whose letters spell the acronym in order, its first letter starting a word. Hyphens separate
    words ("Tumour Necrosis Factor-Alpha (TNFA)"). A long form of one word is not kept: it expands nothing."""
    pairs = []
    for match in _DEFINED_SHORT.finditer(text):
        short = match.group(1)
        if not is_acronym(short):
            continue
        key = acronym_key(short)
        letters = [char for char in key if char.isalnum()]
        clause = _CLAUSE_BREAK.split(text[: match.start()])[-1]
        words = clause.split()[-min(len(letters) + 5, 2 * len(letters)) :]
        long_form = _long_form(letters, " ".join(words))
        if long_form and len(re.split(r"[\s-]+", long_form)) >= 2 and key.casefold() not in long_form.casefold():
            pairs.append((key, long_form))
    return pairs


def _long_form(letters: list[str], candidate: str) -> str | None:
    """The end of `candidate` whose letters spell `letters` in order, the first at a word start (or None)."""
    position = len(candidate) - 1
    for index in range(len(letters) - 1, -1, -1):
        wanted = letters[index].casefold()
        while position >= 0 and (
            candidate[position].casefold() != wanted
            or (index == 0 and position > 0 and candidate[position - 1].isalnum())
        ):
            position -= 1
        if position < 0:
            return None
        position -= 1
    start = candidate.rfind(" ", 0, position + 1) + 1
    return candidate[start:].strip(" ,") or None


def acronyms_in(text: str) -> list[str]:
    """The acronyms a text writes, each once, by `acronym_key`, in order."""
    return list(dict.fromkeys(acronym_key(word) for word in _ACRONYM_WORD.findall(text) if is_acronym(word)))


def agreed_long_forms(definitions: Iterable[Iterable[tuple[str, str]]]) -> dict[str, str]:
    """acronym -> long form (lower-case) over many texts' `acronym_definitions`, each text counted once per
    pair: the long form more than half of the defining texts give. An acronym that texts define differently
    ("PA": physical activity or pulmonary artery) gets none, so its expansion never misleads a query."""
    votes: dict[str, Counter[str]] = {}
    for pairs in definitions:
        for key, long_form in set(pairs):
            votes.setdefault(key, Counter())[" ".join(long_form.casefold().split())] += 1
    agreed = {}
    for key, counts in votes.items():
        (long_form, count), total = counts.most_common(1)[0], sum(counts.values())
        if 2 * count > total:
            agreed[key] = long_form
    return agreed


def expand_acronyms(text: str, long_forms: Mapping[str, str]) -> str:
    """`text` with the long form of each acronym it writes after its first use ("MRIs" -> "MRIs (magnetic
    resonance images)"), unless the text already spells it out: a text that abbreviates finds those that do not."""
    written = as_words(text)
    done: set[str] = set()

    def expanded(match: re.Match[str]) -> str:
        word = match.group(0)
        key = acronym_key(word)
        long_form = long_forms.get(key) if is_acronym(word) and key not in done else None
        if long_form is None or as_words(long_form) in written:
            return word
        done.add(key)
        return f"{word} ({long_form})"

    return _ACRONYM_WORD.sub(expanded, text)


# --- clock times --------------------------------------------------------------------------------------------

_CLOCK = re.compile(r"(?<![-–:\d]\s)(?<![-–:\d])\b(\d{1,2}):(\d{2})\b")
"""A clock time that is not the end of a range: in "the 13:05 - 13:25 slot" only 13:05 is a start."""


def clock_times(text: str) -> set[tuple[int, int]]:
    """(hours, minutes) of every clock time in `text` that does not end a range."""
    return {(int(hours), int(minutes)) for hours, minutes in _CLOCK.findall(text or "")}


def slot_start(slot: str | None) -> str | None:
    """The start of a time slot as written: "13:05" for "Thu 21 July, 13:05 - 13:25 PDT"."""
    start = _CLOCK.search(slot or "")
    return start[0] if start else None


def slot_end(slot: str | None) -> str | None:
    """The end of a time slot as written: "13:25" for "Thu 21 July, 13:05 - 13:25 PDT" (the start when the
    slot gives one time only)."""
    times = _ANY_CLOCK.findall(slot or "")
    return times[-1] if times else None


_ANY_CLOCK = re.compile(r"\b\d{1,2}:\d{2}\b")


def start_minute(slot: str | None) -> int | None:
    """The start of a time slot in minutes after midnight (13:05 -> 785), for ordering talks."""
    start = _CLOCK.search(slot or "")
    return int(start[1]) * 60 + int(start[2]) if start else None


# --- what a sentence says -----------------------------------------------------------------------------------

_DECLINE = re.compile(
    r"\b(?:collection|sources?|papers?|abstracts?|context|documents?|information|text)\b[^.]{0,80}?"
    r"\b(?:does not|do not|doesn't|don't|did not|cannot|can't|can not)\b[^.]{0,40}?"
    r"\b(?:say|answer|mention|contain|provide|include|discuss|specify|state|address|cover|describe|give)"
    r"|\b(?:no|not enough|insufficient) (?:information|mention|details?|evidence)\b"
    r"|\bnot (?:\w+ly )?(?:mentioned|stated|specified|provided|described|discussed|given|listed|available)\b"
    r"|\bI (?:cannot|can't|can not|do not|don't) (?:answer|know|find|determine)\b",
    re.IGNORECASE,
)


def question_parts(question: str) -> list[str]:
    """The separate things a question asks: "Which model came out best and what accuracy did it reach?" asks
    two, as does "Is there such a paper? What does it do?". A sentence counts when it is the first or ends in a
    question mark (a remark such as "I think it came out in 2018." asks nothing), and a sentence splits at
    "and" before a question word; a piece of one word ("... and why?") and text in brackets do not count."""
    text = _BRACKETED.sub(" ", question).strip()
    sentences = [sentence for sentence in _AFTER_QUESTION_MARK.split(text) if sentence.strip()]
    asked = sentences[:1] + [sentence for sentence in sentences[1:] if sentence.rstrip().endswith("?")]
    pieces = [piece for sentence in asked for piece in _AND_QUESTION_WORD.split(sentence)]
    return [piece.strip(" ,?") for piece in pieces if len(piece.split()) >= 2]


_BRACKETED = re.compile(r"\([^()]*\)")
_AFTER_QUESTION_MARK = re.compile(r"(?<=\?)\s+")
_AND_QUESTION_WORD = re.compile(
    r",?\s+and\s+(?=(?:\w+\s+){0,2}(?:what|which|how|who|whom|whose|when|where|why)\b)", re.IGNORECASE
)


def is_decline(sentence: str) -> bool:
    """True when `sentence` says the sources do not answer (the model's own refusal, in any wording)."""
    return bool(_DECLINE.search(sentence))


def described_alternatives(question: str) -> list[str]:
    """The papers a several-paper question describes one by one, each as its own description: "papers that
    embed graphs, one in hyperbolic space and the other with edge sampling" -> "papers that embed graphs: in
    hyperbolic space", "papers that embed graphs: with edge sampling"; likewise "the one that A, the one that
    B", a list after a colon ("explain X: through A, through B, or by C") and "either to A or to B". [] when
    the question describes its papers together. No paper holds the whole description, so a judge reading it
    against one paper finds it undecided; each alternative is decided by the paper it describes."""
    text = _BRACKETED.sub(" ", question).strip()
    for sentence in _AFTER_QUESTION_MARK.split(text):
        sentence = sentence.strip().rstrip("?.!").strip()
        for pattern in (_ONE_AND_OTHER, _EITHER_OR):
            pieces = [piece.strip(" ,;:") for piece in pattern.split(sentence)]
            if len(pieces) >= 3 and all(pieces[1:]):
                return _with_frame(pieces[0], pieces[1:], question)
        frame, colon, listed = sentence.partition(":")
        items = [piece.strip() for piece in _LIST_SEPARATOR.split(listed)] if colon else []
        if len(items) >= 2 and all(len(item.split()) >= 2 for item in items):
            return _with_frame(frame, items, question)
    return []


def _with_frame(frame: str, items: list[str], question: str) -> list[str]:
    """Each item after what the items share: the text before them, or the question's first part where that is
    a bare opener ("I'm after one that ..."). The question frame ("Which papers ...") stays: the judge reads
    it as what is claimed of a paper."""
    frame = frame.strip(" ,;:")
    if len(frame.split()) < 3:
        parts = question_parts(question)
        frame = parts[0] if parts else ""
    return [f"{frame}: {item}" if frame else item for item in items]


_ONE_AND_OTHER = re.compile(
    r"(?:(?:^|[,;:]|\band\b|\bor\b)\s*(?:(?:and|or)\s+)?(?:the\s+other|another|the\s+one|one)\b"
    r"|\b(?:the\s+)?one\s+(?=that\b|which\b|who\b))(?:\s*(?:that|which|who)\b)?",
    re.IGNORECASE,
)
_EITHER_OR = re.compile(r",?\s+either\s+|\s+or\s+(?=to\s|by\s|through\s|with\s|via\s)", re.IGNORECASE)
_LIST_SEPARATOR = re.compile(r"\s*,\s*(?:(?:and|or)\s+)?|\s+or\s+(?=by\s|through\s|with\s|via\s|using\s)")
