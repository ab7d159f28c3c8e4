"""Embedding throughput: how many abstracts a second the embedding model can encode on this CPU, by backend.

    .venv/bin/python bench/embedding_throughput.py              # 400 SciTLDR abstracts
    .venv/bin/python bench/embedding_throughput.py --docs 1000

Ingest speed is bounded by the encoder's forward pass: every other step (parsing, chunking, Chroma writes,
BM25) is cheaper. This measures that bound with one vector per abstract (title and abstract, as one text),
which is the least embedding work an abstract can cost, for:

* sentence-transformers on torch, float32, at the model's length limit (256 word pieces, what the index uses)
  and truncated to 128;
* ONNX Runtime, float32 and int8 (dynamically quantised weights), exported from the same model, when the
  `onnx` package is installed (the export needs it; onnxruntime comes with chromadb).

Each backend's vectors are compared with the default's (cosine, median and minimum): a faster backend whose
vectors move is a different index, to be measured on retrieval before use. Texts are sorted by length and
batched, as `Embedder.embed` does. Writes bench/results/embedding_throughput.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rag.models import embedding_model_path  # noqa: E402
from rag.settings import Settings  # noqa: E402

RESULTS = ROOT / "bench" / "results"
SCITLDR = Path("/work/shared/benchmarks/scitldr/corpus.jsonl")
BATCH = 32

Encoder = Callable[[list[str]], np.ndarray]


def abstracts(path: Path, count: int) -> list[str]:
    texts = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            texts.append(f"{record.get('title', '')}. {record.get('text', '')}".strip())
            if len(texts) == count:
                break
    return texts


def torch_encoder(model_path: str, max_length: int, threads: int) -> Encoder:
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    model = SentenceTransformer(model_path, device="cpu")
    model.max_seq_length = max_length
    return lambda texts: model.encode(texts, batch_size=BATCH, normalize_embeddings=True)


def onnx_files(model_path: str, folder: Path) -> dict[str, Path]:
    """The model exported to ONNX (float32) and its int8 dynamic quantisation, written under `folder`."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModel, AutoTokenizer

    class LastHiddenState(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            output = self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return output.last_hidden_state

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = LastHiddenState(AutoModel.from_pretrained(model_path).eval())
    example = tokenizer(["an example", "another example text"], return_tensors="pt", padding=True)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    fp32, int8 = folder / "model.onnx", folder / "model-int8.onnx"
    torch.onnx.export(
        model,
        tuple(example[name] for name in names),
        str(fp32),
        input_names=names,
        output_names=["last_hidden_state"],
        dynamic_axes={name: {0: "batch", 1: "tokens"} for name in [*names, "last_hidden_state"]},
        opset_version=17,
        dynamo=False,
    )
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True)
    return {"fp32": fp32, "int8": int8}


def onnx_encoder(model_path: str, onnx_path: Path, max_length: int, threads: int) -> Encoder:
    """Mean pooling over the last hidden state, normalised: what the sentence-transformers model does."""
    import onnxruntime
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])

    def encode(texts: list[str]) -> np.ndarray:
        order = np.argsort([len(text) for text in texts])
        vectors = np.zeros((len(texts), 384), dtype=np.float32)
        for start in range(0, len(texts), BATCH):
            batch = order[start : start + BATCH]
            encoded = tokenizer(
                [texts[i] for i in batch], padding=True, truncation=True, max_length=max_length, return_tensors="np"
            )
            feeds = {name: encoded[name].astype(np.int64) for name in ("input_ids", "attention_mask", "token_type_ids")}
            hidden = session.run(None, feeds)[0]
            mask = encoded["attention_mask"][..., None].astype(np.float32)
            pooled = (hidden * mask).sum(axis=1) / mask.sum(axis=1)
            vectors[batch] = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
        return vectors

    return encode


def measure(name: str, encode: Encoder, texts: list[str], reference: np.ndarray | None) -> tuple[dict, np.ndarray]:
    encode(texts[:BATCH])  # warm-up: first-call allocations and kernel choice
    started = time.perf_counter()
    vectors = np.asarray(encode(texts), dtype=np.float32)
    seconds = time.perf_counter() - started
    rate = round(len(texts) / seconds, 1)
    row = {"backend": name, "docs": len(texts), "seconds": round(seconds, 2), "docs_per_s": rate}
    if reference is not None:
        cosine = (vectors * reference).sum(axis=1)
        row |= {"cosine_median": round(float(np.median(cosine)), 4), "cosine_min": round(float(cosine.min()), 4)}
    print(row, flush=True)
    return row, vectors


def run(count: int, threads: int) -> dict:
    model_path = embedding_model_path(Settings().index.embedding_model)
    texts = abstracts(SCITLDR, count)
    rows = []
    default = torch_encoder(model_path, 256, threads)
    row, reference = measure("torch fp32, 256 word pieces (the index's)", default, texts, None)
    rows.append(row)
    rows.append(measure("torch fp32, 128 word pieces", torch_encoder(model_path, 128, threads), texts, reference)[0])
    try:
        import onnx  # noqa: F401  (torch's exporter needs it)
    except ImportError:
        skipped = "ONNX rows skipped: `pip install onnx` to export the model"
    else:
        skipped = None
        with tempfile.TemporaryDirectory(prefix="rag-onnx-") as folder:
            files = onnx_files(model_path, Path(folder))
            for kind, path in files.items():
                encoder = onnx_encoder(model_path, path, 256, threads)
                rows.append(measure(f"onnxruntime {kind}, 256 word pieces", encoder, texts, reference)[0])
    return {
        "corpus": str(SCITLDR),
        "docs": len(texts),
        "mean_chars": round(float(np.mean([len(text) for text in texts]))),
        "threads": threads,
        "rows": rows,
        "skipped": skipped,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
    }


def write(result: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "embedding_throughput.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    lines = [
        f"Embedding throughput, one vector per abstract: {result['docs']} SciTLDR abstracts "
        f"(title + abstract, {result['mean_chars']} characters on average), {result['threads']} threads, "
        f"batches of {BATCH}; {result['machine']}; load average after: {result['load_average_1m']}",
        "",
        "`.venv/bin/python bench/embedding_throughput.py`",
        "",
        "| backend | abstracts/s | cosine to the index's vectors, median | minimum |",
        "| --- | ---: | ---: | ---: |",
    ]
    for row in result["rows"]:
        median, low = row.get("cosine_median", "1 (itself)"), row.get("cosine_min", "")
        lines.append(f"| {row['backend']} | {row['docs_per_s']} | {median} | {low} |")
    if result["skipped"]:
        lines += ["", result["skipped"]]
    (RESULTS / "embedding_throughput.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=400, help="abstracts to encode")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    write(run(args.docs, args.threads))


if __name__ == "__main__":
    main()
