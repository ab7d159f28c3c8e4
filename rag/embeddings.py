"""Sentence embeddings on CPU: one lazily loaded sentence-transformers model per process.

`import sentence_transformers` costs seconds and the model tens of MB, so both happen on the first call that
needs a vector, and `get_embedder` hands every caller (index, retriever, answer checks) the same instance.
Vectors are L2-normalised float32, so a dot product is the cosine similarity.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from rag.errors import BackendError
from rag.models import embedding_model_path
from rag.settings import Settings


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
    """The process-wide `Embedder` for `settings.embedding_model`, so the model loads once per process."""
    key = (settings.embedding_model, settings.embed_batch_size, settings.query_cache_size)
    with _embedders_lock:
        embedder = _embedders.get(key)
        if embedder is None:
            embedder = Embedder(*key)
            _embedders[key] = embedder
        return embedder
