"""BM25 over the same chunks the dense index holds, so exact names, acronyms and numbers are found.

Dense MiniLM embeddings blur rare tokens ("XNet", "Set-10", "2.46%") and know nothing of author names;
BM25 matches them exactly. The tokeniser keeps such compound tokens whole *and* emits their parts, so the
query "Model" still matches a chunk that says "Model-50". Scoring is done by `bm25s` (sparse, precomputed),
which indexes a few thousand chunks in tens of milliseconds and scores one query in well under a millisecond.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from rag.types import Chunk

# Lucene's list plus question words and fillers that carry no topic ("which papers did ... propose").
_STOPWORD_TEXT = """
a about above after again against all also am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further had has
have having he her here hers him his how i if in into is it its itself just may me might more most
must my no nor not now of off on once only or other our ours out over own same she should so some
such than that the their theirs them then there these they this those through to too under until up
upon us very via was we were what when where which while who whom whose why will with within
without would you your yours
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())

# A word, optionally joined to more words/numbers by - . / + (Model-50, Set-10, 2.46, abc2vec, C++), and a
# trailing % for percentages. Apostrophes end a token ("model's" -> "model").
_TOKEN = re.compile(r"[a-z0-9]+(?:[-./+][a-z0-9]+)*\+*%?")
_PARTS = re.compile(r"[a-z0-9]+")


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


def tokenize(text: str, stemming: bool = True) -> list[str]:
    """Lowercased index terms of `text`: stopwords dropped, compounds kept whole plus their parts."""
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


class BM25Index:
    """BM25 (Lucene variant) over chunks; `search` returns (chunk id, score) best first, only positive scores.

    `extra_text` maps a paper id to text indexed with every chunk of that paper (session, moderator, time
    slot), so metadata questions ("who moderated the session where XNet was presented") match lexically.
    """

    def __init__(
        self,
        chunks: Sequence[Chunk],
        extra_text: Mapping[str, str] | None = None,
        *,
        k1: float = 1.2,
        b: float = 0.75,
        stemming: bool = True,
    ):
        import bm25s  # light, but keeps `import rag.lexical` free of numba/scipy probing

        self.ids = [chunk.id for chunk in chunks]
        self.paper_ids = [chunk.paper_id for chunk in chunks]
        self.stemming = stemming
        extra_text = extra_text or {}
        corpus = [tokenize(f"{chunk.text}\n{extra_text.get(chunk.paper_id, '')}", stemming) for chunk in chunks]
        self._model = bm25s.BM25(k1=k1, b=b, method="lucene")
        if self.ids:
            self._model.index(corpus, show_progress=False)

    def __len__(self) -> int:
        return len(self.ids)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every chunk for `query` (zeros when no query term is indexed)."""
        if not self.ids:
            return np.zeros(0, dtype=np.float32)
        token_ids = self._model.get_tokens_ids(tokenize(query, self.stemming))
        if not token_ids:
            return np.zeros(len(self.ids), dtype=np.float32)
        return self._model.get_scores(token_ids)

    def search(self, query: str, n: int, paper_ids: Iterable[str] | None = None) -> list[tuple[str, float]]:
        """The `n` best chunks for `query`; with `paper_ids`, only chunks of those papers are candidates."""
        return self.top(self.scores(query), n, paper_ids)

    def top(self, scores: np.ndarray, n: int, paper_ids: Iterable[str] | None = None) -> list[tuple[str, float]]:
        """The `n` best chunks by precomputed `scores` (from `scores()`), positive scores only."""
        if paper_ids is not None and len(scores):
            allowed = set(paper_ids)
            scores = scores * np.fromiter((pid in allowed for pid in self.paper_ids), dtype=bool, count=len(scores))
        n = min(n, int(np.count_nonzero(scores > 0)))
        if n <= 0:
            return []
        top = np.argpartition(-scores, n - 1)[:n]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(self.ids[i], float(scores[i])) for i in top]
