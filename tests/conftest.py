"""Shared fixtures: a tiny random sentence-transformers model, a handful of abstracts, isolated settings.

Unit tests never touch the real models or the user's data directory: `settings` points every path into a
temporary folder and the embedder at a 1-layer random BERT built here from the real MiniLM tokenizer files.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from rag.settings import Settings
from rag.types import Paper

TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 1-layer, 32-dim random sentence-transformers model saved to disk (loads in well under a second)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules as models
    from transformers import BertConfig, BertModel

    from rag.models import embedding_model_path

    root = tmp_path_factory.mktemp("tiny-model")
    backbone_dir = root / "backbone"
    backbone_dir.mkdir()
    real = Path(embedding_model_path("all-MiniLM-L6-v2"))
    for name in TOKENIZER_FILES:
        shutil.copy(real / name, backbone_dir / name)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(backbone_dir)
    transformer = models.Transformer(str(backbone_dir), max_seq_length=128)
    pooling = models.Pooling(config.hidden_size, pooling_mode="mean")
    model = SentenceTransformer(modules=[transformer, pooling, models.Normalize()], device="cpu")
    out = root / "model"
    model.save(str(out))
    return out


@pytest.fixture
def settings(tmp_path, tiny_model_dir) -> Settings:
    """Settings isolated in a temp folder, with the tiny embedder and the extractive (no-LLM) backend.

    Sentence vectors are filled lazily here, so tests that count the embedder's calls count chunks only; the
    eager fill at ingest (the default) has its own test in test_index.py."""
    return Settings(
        data_dir=tmp_path / "data",
        embedding_model=str(tiny_model_dir),
        backend="extractive",
        collection="test",
        sentence_vectors_at_ingest=False,
    )


@pytest.fixture
def papers() -> list[Paper]:
    """Five short, distinct abstracts covering the kinds of questions the bot gets."""
    return [
        Paper(
            id="snr-metric",
            title="Signal-to-Noise Ratio: A Robust Distance Metric for Deep Metric Learning",
            abstract=(
                "Deep metric learning maps similar examples close together. We propose a robust SNR distance "
                "metric based on the signal-to-noise ratio for measuring the similarity of image pairs. "
                "Experiments on CARS196, CUB200-2011 and SOP show that DSML outperforms Euclidean distance."
            ),
            authors=["Tongtong Yuan", "Weihong Deng"],
            sources=["004.txt"],
        ),
        Paper(
            id="vilt",
            title="ViLT: Vision-and-Language Transformer Without Convolution or Region Supervision",
            abstract=(
                "Vision-and-Language Pre-training relies on region supervision and convolutional feature "
                "extraction. We present ViLT, a minimal model that processes visual inputs without convolution. "
                "ViLT is up to tens of times faster than previous VLP models."
            ),
            authors=["Wonjae Kim", "Bokyung Son", "Ildoo Kim"],
            sources=["000.txt"],
            session="Deep Learning Algorithms 3",
            moderator="Razvan Pascanu",
            day="Tue 20 July",
            time_slot="7:00 - 7:20 PDT",
        ),
        Paper(
            id="fpn",
            title="Feature Pyramid Networks for Object Detection",
            abstract=(
                "Feature pyramids are a basic component in recognition systems for detecting objects at "
                "different scales. A top-down architecture with lateral connections builds high-level semantic "
                "feature maps at all scales. FPN runs at 5 FPS on a GPU."
            ),
            sources=["001.txt"],
        ),
        Paper(
            id="gradient-noise",
            title="Adding Gradient Noise Improves Learning for Very Deep Networks",
            abstract=(
                "Deep feedforward and recurrent networks are hard to optimise. Adding annealed Gaussian noise to "
                "the gradient helps training of very deep networks and reduces the failure rate of training."
            ),
            sources=["002.txt"],
        ),
        Paper(
            id="integrated-gradients",
            title="Axiomatic Attribution for Deep Networks",
            abstract=(
                "We study attributing the prediction of a deep network to its input features. We identify two "
                "axioms, Sensitivity and Implementation Invariance, and design Integrated Gradients, which needs "
                "only a few calls to the standard gradient operator."
            ),
            authors=["Mukund Sundararajan", "Ankur Taly", "Qiqi Yan"],
            sources=["004.txt"],
        ),
    ]


class WordEmbedder:
    """Hashed bag of content words, L2-normalised: shared wording -> high cosine, instant, no model files.

    For answer-stage tests whose expected outcome should be readable off the text."""

    dimension = 512

    def __init__(self):
        self.calls: list[list[str]] = []

    def embed(self, texts):
        import hashlib

        import numpy as np

        from rag.text import key_terms

        self.calls.append(list(texts))
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for term in key_terms(text):
                out[row, int(hashlib.md5(term.encode()).hexdigest(), 16) % self.dimension] += 1.0
            norm = np.linalg.norm(out[row])
            if norm:
                out[row] /= norm
        return out

    def embed_one(self, text):
        return self.embed([text])[0]


@pytest.fixture
def word_embedder() -> WordEmbedder:
    """A `WordEmbedder` (bag-of-words stand-in for the sentence-transformers embedder)."""
    return WordEmbedder()


@pytest.fixture(scope="session")
def real_settings(tmp_path_factory) -> Settings:
    """Default settings (real MiniLM, default backend and model) over a private copy of the bundled index.

    Integration tests share this one index, built once per session in a temp folder, so they never touch the
    user's data directory and the 469-paper ingest is paid once. The GGUF is the cached default one.
    """
    from rag.api import Bot
    from rag.models import generator_model_path

    settings = Settings(
        data_dir=tmp_path_factory.mktemp("real-data"),
        model_path=generator_model_path(Settings()),
    )
    Bot(settings).ensure_index()
    return settings
