"""Follow-up questions rewritten to stand alone before retrieval ("Who wrote it?" -> "Who wrote ViLT?").

A question that leans on earlier turns (a pronoun, "that paper", a leading "and", or a few words) is
rewritten; a self-contained one is not, since the rewrite costs seconds of generation. The model rewrites
with `CONDENSE_PROMPT`; without a model, or when its rewrite is unusable, the previous question's key terms
are put in front of the follow-up (`heuristic_rewrite`), which is enough for retrieval.
"""

from __future__ import annotations

import re

from rag.cite import is_decline, key_terms, remove_citations, split_sentences
from rag.prompts import CONDENSE_TURN_TEMPLATE
from rag.types import History

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
