"""The layering rules of docs/ARCHITECTURE.md, checked on the source: faces sit on the public API, `import rag`
stays light.

The faces are every module of `eval/` and `ui/` and `rag/cli.py`. They may import from `rag` only names listed
in `rag.__all__`, at module top or inside functions (`rag/cli.py` imports lazily so `rag --help` is instant, and
its lazy imports are held to the same rule). `bench/` and `tests/` may use internals.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import rag

ROOT = Path(__file__).resolve().parents[1]
FACES = sorted([*(ROOT / "eval").glob("*.py"), *(ROOT / "ui").glob("*.py"), ROOT / "rag" / "cli.py"])
HEAVY = ("torch", "sentence_transformers", "transformers", "chromadb", "gradio", "llama_cpp", "langchain_core")


def private_uses(source: str, *, inside_rag: bool = False) -> list[str]:
    """What `source` takes from `rag` beyond `rag.__all__`: submodule imports, unlisted names, relative imports
    (when the file lives inside the `rag` package) and `rag.<name>` attributes of an `import rag`."""
    tree = ast.parse(source)
    found: list[str] = []
    aliases: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level and inside_rag:
                found.append(f"line {node.lineno}: relative import from {'.' * node.level}{node.module or ''}")
            elif node.module == "rag":
                found += [f"line {node.lineno}: rag.{a.name}" for a in node.names if a.name not in rag.__all__]
            elif node.module and node.module.startswith("rag."):
                found.append(f"line {node.lineno}: from {node.module} import ...")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("rag."):
                    found.append(f"line {node.lineno}: import {alias.name}")
                elif alias.name == "rag":
                    aliases.add(alias.asname or "rag")
    for node in ast.walk(tree):
        named = isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
        if named and node.attr not in rag.__all__:
            found.append(f"line {node.lineno}: rag.{node.attr}")
    return found


@pytest.mark.parametrize("path", FACES, ids=lambda path: str(path.relative_to(ROOT)))
def test_faces_import_only_public_names_from_rag(path):
    assert private_uses(path.read_text(encoding="utf-8"), inside_rag=path.parent.name == "rag") == []


def test_the_import_check_catches_each_way_around_the_public_api():
    """The checker itself: every way of reaching past `rag.__all__` is reported, public names are not."""
    source = "\n".join(
        [
            "from rag import Answer, Bot",
            "from rag import benchmark_settings as bench_settings",
            "from rag.retrieve import Retriever",
            "import rag.index",
            "import rag as r",
            "r.Settings(); r.api.Bot()",
            "from rag import cite",
            "def late():",
            "    from rag.settings import BackendName",
        ]
    )
    found = private_uses(source)
    assert found == [
        "line 3: from rag.retrieve import ...",
        "line 4: import rag.index",
        "line 7: rag.cite",
        "line 9: from rag.settings import ...",
        "line 6: rag.api",
    ]
    assert private_uses("from .api import Bot", inside_rag=True) == ["line 1: relative import from .api"]


def test_every_public_name_resolves_and_import_rag_stays_light():
    """Each name in `rag.__all__` exists (lazy ones load on first use), and neither `import rag`, resolving
    every public name, nor importing the CLI pulls in a heavy library."""
    script = (
        "import json, sys\n"
        "import rag, rag.cli\n"
        "missing = [name for name in rag.__all__ if getattr(rag, name, None) is None]\n"
        f"heavy = [name for name in {HEAVY!r} if name in sys.modules]\n"
        "print(json.dumps({'missing': missing, 'heavy': heavy}))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"missing": [], "heavy": []}


ANSWER_STAGE = ("answer", "attribution", "claims", "context", "evidence", "generate", "judge", "quotes", "verify")
TEXT_HELPERS = {
    "split_sentences", "split_text", "split_prose", "sentences_within", "tokenize", "stem", "key_terms",
    "content_terms", "numbers_in", "figures_in", "normalise_title", "short_name", "start_minute", "is_decline",
}  # fmt: skip


def test_ingest_does_not_import_the_answer_stage():
    """Data flows one way: importing the index (ingest) loads no module of the answer stage."""
    script = "import json, sys\nimport rag.index\nprint(json.dumps(sorted(m for m in sys.modules if m[:4] == 'rag.')))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=True)
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert [name for name in loaded if name.removeprefix("rag.") in ANSWER_STAGE] == []


def test_text_helpers_are_defined_only_in_rag_text():
    """Splitting, tokenising, stemming, normalising and number extraction live in rag/text.py alone: a copy
    elsewhere in rag/, ui/ or eval/ would miss the next fix."""
    files = [*(ROOT / "rag").rglob("*.py"), *(ROOT / "ui").glob("*.py"), *(ROOT / "eval").glob("*.py")]
    copies = [
        f"{path.relative_to(ROOT)}: {node.name}"
        for path in files
        if path != ROOT / "rag" / "text.py"
        for node in ast.parse(path.read_text(encoding="utf-8")).body
        if isinstance(node, ast.FunctionDef) and node.name.lstrip("_") in TEXT_HELPERS
    ]
    assert copies == []


def test_no_script_folder_shadows_an_installed_package():
    """A script run as `python bench/x.py` has its folder first on sys.path, so a file there named like a package
    (`tokenizers.py`) replaces that package for every library the script loads."""
    import importlib.util

    folders = [ROOT / "bench", ROOT / "eval", ROOT / "scripts"]
    shadowing = [
        str(path.relative_to(ROOT))
        for folder in folders
        for path in folder.glob("*.py")
        if path.stem != "__init__" and importlib.util.find_spec(path.stem) is not None
    ]
    assert shadowing == []
