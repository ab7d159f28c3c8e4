"""BM25 over the same chunks the dense index holds, so exact names, acronyms and numbers are found.

Dense MiniLM embeddings blur rare tokens ("XNet", "Set-10", "2.46%") and know nothing of author names;
BM25 matches them exactly. The tokeniser (`rag.text.tokenize`) keeps such compound tokens whole *and* emits
their parts, so the query "Model" still matches a chunk that says "Model-50". Scoring is done by `bm25s`
(sparse, precomputed), which indexes a few thousand chunks in tens of milliseconds and scores one query in
well under a millisecond.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from rag.text import tokenize
from rag.types import Chunk


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
