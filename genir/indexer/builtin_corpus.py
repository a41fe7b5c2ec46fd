"""The embedded default corpus: docstrings of the running Python's standard library.

It needs no download and is the same on every machine with the same Python version. Sources
are parsed with :mod:`ast`, never imported, so building it runs no library code.
"""

from __future__ import annotations

import ast
import json
import os
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

from genir.errors import GenirError
from genir.indexer.collection import Collection, Document

# Packages that are tests, demos or tooling rather than library API.
_SKIPPED_PARTS = {"test", "tests", "idle_test", "idlelib", "turtledemo", "lib2to3", "ensurepip",
                  "site-packages", "dist-packages", "__pycache__", "__phello__"}
_MIN_DOCSTRING_CHARS = 20


def cache_dir() -> Path:
    """Where genir keeps derived files that are not indexes (``$GENIR_CACHE`` or ~/.cache/genir)."""
    return Path(os.environ.get("GENIR_CACHE", Path.home() / ".cache" / "genir"))


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _docstrings(module: str, tree: ast.Module) -> Iterator[Document]:
    def visit(node: ast.AST, qualname: str) -> Iterator[Document]:
        doc = ast.get_docstring(node, clean=True)  # type: ignore[arg-type]
        if doc and len(doc) >= _MIN_DOCSTRING_CHARS:
            yield Document(qualname, qualname, doc)
        for child in getattr(node, "body", []):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not child.name.startswith("_"):
                yield from visit(child, f"{qualname}.{child.name}")

    yield from visit(tree, module)


def stdlib_documents() -> Iterator[Document]:
    """Public module, class and function docstrings of the standard library, in a fixed order."""
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
        for doc in _docstrings(_module_name(root, path), tree):
            if doc.id not in seen:  # a name defined twice in one module keeps its first docstring
                seen.add(doc.id)
                yield doc


def open_builtin(name: str) -> Collection:
    """Materialize a built-in corpus as a cached ``corpus.jsonl`` and open it."""
    if name != "stdlib":
        raise GenirError(f"unknown built-in corpus {name!r} (available: stdlib)")
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    directory = cache_dir() / "builtin" / f"stdlib-py{version}"
    corpus = directory / "corpus.jsonl"
    if not corpus.is_file():
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".corpus.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for doc in stdlib_documents():
                f.write(json.dumps({"_id": doc.id, "title": doc.title, "text": doc.text}) + "\n")
        os.replace(tmp, corpus)
    return Collection(corpus, name=f"stdlib-py{version}")
