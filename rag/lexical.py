"""BM25 over the same chunks the dense index holds, so exact names, acronyms and numbers are found.

Dense MiniLM embeddings blur rare tokens ("XNet", "Set-10", "2.46%") and know nothing of author names;
BM25 matches them exactly. The tokeniser (`rag.text.tokenize`) keeps such compound tokens whole *and* emits
their parts, so the query "Model" still matches a chunk that says "Model-50". Scoring is done by `bm25s`
(sparse, precomputed), which indexes a few thousand chunks in tens of milliseconds and scores one query in
well under a millisecond.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from rag.text import tokenize
from rag.types import Chunk


class BM25Index:
    """BM25 (Lucene variant) over chunks; `search` returns (chunk id, score) best first, only positive scores.

    `extra_text` maps a paper id to text indexed with every chunk of that paper (session, moderator, time
    slot), so metadata questions ("who moderated the session where XNet was presented") match lexically.

    Rows are the chunks ordered by paper id (as UTF-8 bytes) and position, so a paper's chunks are one run of
    rows. Which row is which chunk is kept as three arrays (the sorted paper ids, each paper's first row, each
    row's chunk position) rather than a string per chunk, and `save` / `load(mmap=True)` persist the index next
    to the collection: a process that opens a collection of a million chunks maps these files instead of
    tokenising every text again.
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

        ordered = sorted(chunks, key=lambda chunk: (chunk.paper_id.encode(), chunk.index))
        self.stemming = stemming
        self.papers, self.starts, self.positions = _row_arrays(ordered)
        extra_text = extra_text or {}
        corpus = [tokenize(f"{chunk.text}\n{extra_text.get(chunk.paper_id, '')}", stemming) for chunk in ordered]
        self._model = bm25s.BM25(k1=k1, b=b, method="lucene")
        if ordered:
            self._model.index(corpus, show_progress=False)

    def __len__(self) -> int:
        return len(self.positions)

    # --- rows <-> chunks and papers ---------------------------------------------------------------------------
    def chunk_id(self, row: int) -> str:
        """The id ('<paper_id>#<position>') of the chunk in `row`."""
        return f"{self.paper_of_row(row)}#{int(self.positions[row])}"

    def paper_of_row(self, row: int) -> str:
        return self.papers[int(np.searchsorted(self.starts, row, side="right")) - 1].decode()

    def rows(self, paper_id: str) -> range:
        """The rows of `paper_id`'s chunks (empty when the paper is not indexed)."""
        key = paper_id.encode()
        slot = int(np.searchsorted(self.papers, key))
        if slot >= len(self.papers) or self.papers[slot] != key:
            return range(0)
        end = int(self.starts[slot + 1]) if slot + 1 < len(self.starts) else len(self.positions)
        return range(int(self.starts[slot]), end)

    def row_mask(self, paper_ids: Iterable[str]) -> np.ndarray:
        """True for the rows of `paper_ids`' chunks."""
        mask = np.zeros(len(self), dtype=bool)
        for paper_id in paper_ids:
            span = self.rows(paper_id)
            mask[span.start : span.stop] = True
        return mask

    # --- scoring ------------------------------------------------------------------------------------------------
    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every chunk for `query` (zeros when no query term is indexed)."""
        if not len(self):
            return np.zeros(0, dtype=np.float32)
        token_ids = self._model.get_tokens_ids(tokenize(query, self.stemming))
        if not token_ids:
            return np.zeros(len(self), dtype=np.float32)
        return self._model.get_scores(token_ids)

    def search(self, query: str, n: int, paper_ids: Iterable[str] | None = None) -> list[tuple[str, float]]:
        """The `n` best chunks for `query`; with `paper_ids`, only chunks of those papers are candidates."""
        return self.top(self.scores(query), n, paper_ids)

    def top(self, scores: np.ndarray, n: int, paper_ids: Iterable[str] | None = None) -> list[tuple[str, float]]:
        """The `n` best chunks by precomputed `scores` (from `scores()`), positive scores only."""
        if paper_ids is not None and len(scores):
            scores = scores * self.row_mask(paper_ids)
        n = min(n, int(np.count_nonzero(scores > 0)))
        if n <= 0:
            return []
        top = np.argpartition(-scores, n - 1)[:n]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(self.chunk_id(int(i)), float(scores[i])) for i in top]

    # --- persistence ----------------------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        """Write the index into `folder` (replaced whole: written beside it, then renamed over it)."""
        folder = Path(folder)
        staging = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        np.save(staging / "papers.npy", self.papers)
        np.save(staging / "starts.npy", self.starts)
        np.save(staging / "positions.npy", self.positions)
        (staging / "settings.json").write_text(json.dumps({"stemming": self.stemming, "rows": len(self)}))
        if len(self):
            self._model.save(str(staging / "bm25"), show_progress=False)
        old = folder.with_name(f"{folder.name}.old-{os.getpid()}")
        if folder.exists():
            folder.rename(old)
        staging.rename(folder)
        shutil.rmtree(old, ignore_errors=True)

    @classmethod
    def load(cls, folder: Path, mmap: bool = True) -> BM25Index:
        """The index `save` wrote, its score matrix and row arrays memory-mapped (pages read on demand)."""
        import bm25s

        folder = Path(folder)
        mode = "r" if mmap else None
        index = cls.__new__(cls)
        index.stemming = bool(json.loads((folder / "settings.json").read_text())["stemming"])
        index.papers = np.load(folder / "papers.npy", mmap_mode=mode)
        index.starts = np.load(folder / "starts.npy", mmap_mode=mode)
        index.positions = np.load(folder / "positions.npy", mmap_mode=mode)
        model_dir = folder / "bm25"
        index._model = bm25s.BM25.load(str(model_dir), mmap=mmap, show_progress=False) if model_dir.exists() else None
        return index


def _row_arrays(ordered: Sequence[Chunk]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted paper ids (bytes), each paper's first row, and each row's chunk position."""
    papers: list[bytes] = []
    starts: list[int] = []
    for row, chunk in enumerate(ordered):
        key = chunk.paper_id.encode()
        if not papers or papers[-1] != key:
            papers.append(key)
            starts.append(row)
    width = max((len(key) for key in papers), default=1)
    return (
        np.array(papers, dtype=f"S{width}"),
        np.array(starts, dtype=np.int64),
        np.array([chunk.index for chunk in ordered], dtype=np.int32),
    )
