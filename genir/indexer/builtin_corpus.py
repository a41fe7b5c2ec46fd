"""The embedded default corpus: docstrings of the running Python's standard library.

It needs no download and is the same on every machine with the same Python version. Sources
are parsed with :mod:`ast`, never imported, so building it runs no library code.

This module only writes the corpus, as a BEIR ``corpus.jsonl`` in genir's cache;
:meth:`genir.indexer.collection.Collection.open` reads it (``builtin:stdlib``) and validates it
like any other collection. It imports nothing else of :mod:`genir.indexer`.
"""

from __future__ import annotations

import ast
import json
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

from genir.atomic_files import atomic_open
from genir.cache import cache_dir
from genir.errors import GenirError

BUILTIN_PREFIX = "builtin:"
BUILTIN_NAMES = ("stdlib",)

# Packages that are tests, demos or tooling rather than library API.
_SKIPPED_PARTS = {"test", "tests", "idle_test", "idlelib", "turtledemo", "lib2to3", "ensurepip",
                  "site-packages", "dist-packages", "__pycache__", "__phello__"}
_MIN_DOCSTRING_CHARS = 20


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _docstrings(module: str, tree: ast.Module) -> Iterator[dict[str, str]]:
    def visit(node: ast.AST, qualname: str) -> Iterator[dict[str, str]]:
        doc = ast.get_docstring(node, clean=True)  # type: ignore[arg-type]
        if doc and len(doc) >= _MIN_DOCSTRING_CHARS:
            yield {"_id": qualname, "title": qualname, "text": doc}
        for child in getattr(node, "body", []):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not child.name.startswith("_"):
                yield from visit(child, f"{qualname}.{child.name}")

    yield from visit(tree, module)


def stdlib_records() -> Iterator[dict[str, str]]:
    """Public module, class and function docstrings of the standard library, in a fixed order.

    Each is a BEIR corpus record: ``{"_id": qualified name, "title": qualified name, "text": docstring}``.
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    seen: set[str] = set()
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root).parts
        if _SKIPPED_PARTS.intersection(relative) or any(p.startswith(("_", ".")) and p != "__init__.py" for p in relative):
            continue
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError):
            continue  # e.g. Python-2 era files shipped as data
        for record in _docstrings(_module_name(root, path), tree):
            if record["_id"] not in seen:  # a name defined twice in one module keeps its first docstring
                seen.add(record["_id"])
                yield record


def corpus_file(name: str) -> tuple[Path, str]:
    """The ``corpus.jsonl`` of built-in corpus ``name`` (written to the cache on first use) and its collection name.

    Raises:
        GenirError: ``name`` is not a built-in corpus.
    """
    if name not in BUILTIN_NAMES:
        raise GenirError(f"unknown built-in corpus {name!r} (available: {', '.join(BUILTIN_NAMES)})")
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    collection_name = f"stdlib-py{version}"
    corpus = cache_dir() / "builtin" / collection_name / "corpus.jsonl"
    if not corpus.is_file():
        with atomic_open(corpus) as f:
            for record in stdlib_records():
                f.write(json.dumps(record) + "\n")
    return corpus, collection_name
