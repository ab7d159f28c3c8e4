"""Sentence embeddings on CPU: one lazily loaded sentence-transformers model per process.

`import sentence_transformers` costs seconds and the model tens of MB, so both happen on the first call that
needs a vector, and `get_embedder` hands every caller (index, retriever, answer checks) the same instance.
Vectors are L2-normalised float32, so a dot product is the cosine similarity.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rag.errors import BackendError
from rag.models import embedding_model_path
from rag.settings import Settings

log = logging.getLogger(__name__)


class Embedder:
    """Turns texts into unit-length vectors with one sentence-transformers model.

    Thread-safe: the model loads once under a lock; `encode` itself is safe to call from several threads.
    """

    def __init__(self, model: str, batch_size: int = 64, cache_size: int = 512):
        self.model_name = model
        self.batch_size = batch_size
        self.cache_size = cache_size
        self._model = None
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()

    @property
    def name(self) -> str:
        """Identity recorded in the index: the known model name, or the absolute folder of a local model.

        Two different folders are two different models, so a local folder is named by its resolved path.
        """
        if Path(self.model_name).is_dir():
            return str(Path(self.model_name).resolve())
        return self.model_name

    @property
    def dimension(self) -> int:
        model = self._load()
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        dimension = getter()
        if dimension is None:  # a model whose last module hides its width: measure it
            dimension = len(self.embed(["dimension probe"])[0])
        return int(dimension)

    def embed(self, texts: list[str]) -> np.ndarray:
        """Vectors of shape (len(texts), dimension), float32, each of unit length."""
        model = self._load()
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = model.encode(
            list(texts),
            batch_size=self.batch_size,
            show_progress_bar=False,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def embed_one(self, text: str) -> np.ndarray:
        """One vector, remembered in a small LRU cache because chat and eval ask the same questions again."""
        with self._cache_lock:
            cached = self._cache.get(text)
            if cached is not None:
                self._cache.move_to_end(text)
                return cached.copy()
        vector = self.embed([text])[0]
        if self.cache_size > 0:
            with self._cache_lock:
                self._cache[text] = vector
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return vector.copy()

    def _load(self):
        if self._model is None:
            self._model = _shared_model(self.model_name)
        return self._model


SENTENCE_VECTORS_FORMAT = "rag-sentence-vectors/1"
"""First field of a sentence-vector file's header; bump it when the record layout or the vectors change."""

_KEY_BYTES = 20  # sha1 of the sentence's UTF-8 text
_UNIT_TOLERANCE = 1e-3  # a stored vector whose length is further from 1 is garbage, not a unit vector


class SentenceVectors:
    """Vectors of source sentences (titles, author lines, abstract sentences), remembered by their exact text.

    The answer stage embeds every sentence of every paper it shows (about 27 texts per question, most of the
    time between retrieval and the prompt), yet those sentences are a fixed function of the paper. This wraps an
    embedder: `embed` looks each text up by the sha1 of its text and sends only the misses to the model, in one
    batch, so a hit is the very vector the same model and normalisation produced before.

    With a `path` the vectors survive restarts in an append-only file: one JSON header line naming the format,
    model and dimension, then fixed-size records (20-byte key, float32 vector). A file written by another model
    is ignored and replaced, so changing the model invalidates it. A missing, unreadable or corrupt file, a
    record that is not a unit vector, or a torn last record (a process killed mid-append) never fails a
    question: what cannot be read is embedded again and the file rewritten. It grows by about 1.6 KB per
    sentence shown (at 384 dimensions), so by at most the corpus' sentences.
    """

    def __init__(self, embedder, path: Path | None = None):
        self.embedder = embedder
        self.path = path
        self._vectors: dict[bytes, np.ndarray] | None = None  # loaded on first use
        self._file_ok = False  # the file holds our header and only valid records, so appending is safe
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return getattr(self.embedder, "name", type(self.embedder).__name__)

    @property
    def dimension(self) -> int:
        return int(self.embedder.dimension)

    def __len__(self) -> int:
        with self._lock:
            return len(self._known())

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of `texts` (float32, unit length), embedding and remembering only the texts not seen before."""
        texts = list(texts)
        if not texts:
            return np.asarray(self.embedder.embed([]), dtype=np.float32)
        keys = [_key(text) for text in texts]
        with self._lock:
            known = self._known()
            missing = {key: text for key, text in zip(keys, texts, strict=True) if key not in known}
        if missing:
            fresh = np.asarray(self.embedder.embed(list(missing.values())), dtype=np.float32)
            self._add(list(missing), fresh)
        with self._lock:
            return np.stack([self._vectors[key] for key in keys])

    def load(self) -> None:
        """Read the file now (the chat's warm-up does), so the first question does not (~18 ms for 4,222)."""
        with self._lock:
            self._known()

    def fill(self, texts: Sequence[str], batch: int = 512) -> int:
        """Embed and save the texts not known yet, `batch` at a time (a crash keeps the finished batches);
        returns how many were embedded."""
        with self._lock:
            known = self._known()
            missing = list(dict.fromkeys(text for text in texts if _key(text) not in known))
        for start in range(0, len(missing), batch):
            self.embed(missing[start : start + batch])
        return len(missing)

    # --- storage -------------------------------------------------------------------------------------------
    def _known(self) -> dict[bytes, np.ndarray]:
        if self._vectors is None:
            self._vectors = self._read()
        return self._vectors

    def _add(self, keys: list[bytes], vectors: np.ndarray) -> None:
        with self._lock:
            known = self._known()
            known.update(zip(keys, vectors, strict=True))
            self._save(keys, vectors, known)

    def _header(self) -> bytes:
        fields = {"format": SENTENCE_VECTORS_FORMAT, "model": self.name, "dimension": self.dimension}
        return (json.dumps(fields, sort_keys=True) + "\n").encode()

    def _record(self) -> np.dtype:
        return np.dtype([("key", "u1", _KEY_BYTES), ("vector", "<f4", self.dimension)])

    def _read(self) -> dict[bytes, np.ndarray]:
        """The vectors in the file, or none when it is missing, another model's or unreadable."""
        if self.path is None:
            return {}
        try:
            with open(self.path, "rb") as handle:
                fcntl.flock(handle, fcntl.LOCK_SH)  # not while another process appends
                data = handle.read()
        except FileNotFoundError:
            return {}
        except OSError as error:
            log.warning("Cannot read sentence vectors %s (%s); they will be embedded again.", self.path, error)
            return {}
        header = self._header()
        if not data.startswith(header):
            log.warning("Ignoring sentence vectors %s: another embedding model's or corrupt; rebuilding.", self.path)
            return {}
        record = self._record()
        body = memoryview(data)[len(header) :]
        rows = np.frombuffer(body, dtype=record, count=len(body) // record.itemsize)
        with np.errstate(all="ignore"):
            lengths = np.linalg.norm(rows["vector"], axis=1)
        good = np.abs(lengths - 1.0) < _UNIT_TOLERANCE  # also false for NaN and inf
        self._file_ok = bool(good.all())
        if not self._file_ok:
            log.warning("Dropped %d corrupt records of %s; rewriting it.", int((~good).sum()), self.path)
        return {row["key"].tobytes(): row["vector"] for row in rows[good]}

    def _save(self, keys: list[bytes], vectors: np.ndarray, known: dict[bytes, np.ndarray]) -> None:
        """Append the new records; rewrite the whole file when it is missing, corrupt or another model's.

        Saving is best effort: the vectors stay in memory when the folder is not writable."""
        if self.path is None:
            return
        header = self._header()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a+b") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                handle.seek(0)
                if self._file_ok and handle.read(len(header)) == header:
                    size, width = handle.seek(0, 2), self._record().itemsize
                    whole = len(header) + (size - len(header)) // width * width
                    if whole != size:  # the torn last record of a killed process would shift every later one
                        handle.truncate(whole)
                    handle.write(self._records(keys, vectors))
                else:
                    handle.truncate(0)
                    handle.write(header + self._records(list(known), np.stack(list(known.values()))))
                    self._file_ok = True
        except OSError as error:
            log.warning("Cannot save sentence vectors to %s (%s); keeping them in memory.", self.path, error)

    def _records(self, keys: list[bytes], vectors: np.ndarray) -> bytes:
        rows = np.zeros(len(keys), dtype=self._record())
        rows["key"] = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), _KEY_BYTES)
        rows["vector"] = vectors
        return rows.tobytes()


def _key(text: str) -> bytes:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).digest()


_models: dict[str, object] = {}
_models_lock = threading.Lock()


def _shared_model(name: str):
    """One loaded model per name per process, whatever batch or cache sizes its embedders use."""
    with _models_lock:
        if name not in _models:
            _models[name] = _load_model(name)
        return _models[name]


def _load_model(name: str):
    """The sentence-transformers model `name` on CPU; a BackendError with one line if it cannot load."""
    path = embedding_model_path(name)
    try:
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # no "Loading weights" bar in CLI output
        return SentenceTransformer(path, device="cpu")
    except Exception as error:  # a broken folder raises anything from OSError to KeyError
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise BackendError(f"Cannot load the embedding model {name!r} from {path}: {reason}") from error


_embedders: dict[tuple[str, int, int], Embedder] = {}
_embedders_lock = threading.Lock()


def get_embedder(settings: Settings) -> Embedder:
    """The process-wide `Embedder` for `settings.index.embedding_model`, so the model loads once per process."""
    key = (settings.index.embedding_model, settings.index.embed_batch_size, settings.index.query_cache_size)
    with _embedders_lock:
        embedder = _embedders.get(key)
        if embedder is None:
            embedder = Embedder(*key)
            _embedders[key] = embedder
        return embedder
