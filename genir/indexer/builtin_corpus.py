"""The embedded corpora: docstrings of the running Python's standard library and installed packages,
and a toy collection with queries.

They need no download and are the same on every machine with the same Python and packages.
Sources are parsed with :mod:`ast`, never imported, so building them runs no library code.

* ``builtin:stdlib``: one record per public module, class and function docstring of the standard
  library (``{"_id": qualified name, "title": qualified name, "text": docstring}``).
* ``builtin:pydocs``: the docstrings of the standard library *and* of every package installed
  beside it (the running interpreter's ``purelib``/``platlib``: torch, transformers, sympy, ...),
  private modules, classes and functions included (scipy, numpy and sklearn define most public
  functions in private modules), split into passages (:func:`split_passages`: paragraphs merged
  up to :data:`PASSAGE_WORDS` words, longer paragraphs cut into windows of that many), passages of
  fewer than :data:`MIN_PASSAGE_WORDS` words dropped and exact repeats (after collapsing
  whitespace) kept once. Files are read in sorted path order, the standard library first, so order
  and ids (``<qualified name>#<passage number>``) are fixed. In genir's venv (Python 3.11.7,
  2026-12-07) it yields 107,306 passages of 57.5 words on average (60,442 without the private
  modules and names), in about 2 minutes; ``benchmarks/bench_scale.py`` builds its 10k/30k/100k
  corpora as prefixes of it. The file's name carries a hash of the installed distributions, so
  another set of packages writes another corpus.
* ``builtin:toy``: 24 hand-written documents with training and test queries and their judgements
  (:mod:`genir.indexer.builtin_toy`).

This module only writes the corpora, as BEIR folders in genir's cache;
:meth:`genir.indexer.collection.Collection.open` reads them (``builtin:<name>``) and validates them
like any other collection. Of :mod:`genir.indexer` it imports the toy's text alone.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import sys
import sysconfig
from collections.abc import Iterable, Iterator
from pathlib import Path

from genir.atomic_files import atomic_dir, atomic_open
from genir.cache import cache_dir
from genir.errors import GenirError
from genir.indexer import builtin_toy

BUILTIN_PREFIX = "builtin:"
BUILTIN_NAMES = ("stdlib", "pydocs", "toy")

# Packages that are tests, demos or tooling rather than library API.
_SKIPPED_PARTS = {"test", "tests", "testing", "idle_test", "idlelib", "turtledemo", "lib2to3", "ensurepip",
                  "site-packages", "dist-packages", "__pycache__", "__phello__"}
_MIN_DOCSTRING_CHARS = 20
PASSAGE_WORDS = 150
"""Most words of a passage: paragraphs are merged up to it, and a longer paragraph cut into windows of it."""
MIN_PASSAGE_WORDS = 5
"""Shorter passages ("Return self.", "Alias of foo.") are dropped."""


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _docstrings(module: str, tree: ast.Module, private: bool) -> Iterator[dict[str, str]]:
    def visit(node: ast.AST, qualname: str) -> Iterator[dict[str, str]]:
        doc = ast.get_docstring(node, clean=True)  # type: ignore[arg-type]
        if doc and len(doc) >= _MIN_DOCSTRING_CHARS:
            yield {"_id": qualname, "title": qualname, "text": doc}
        for child in getattr(node, "body", []):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and (private or not child.name.startswith("_")):
                yield from visit(child, f"{qualname}.{child.name}")

    yield from visit(tree, module)


def docstring_records(roots: Iterable[Path], private: bool = False) -> Iterator[dict[str, str]]:
    """Module, class and function docstrings of the modules under ``roots``, in a fixed order.

    Each root's ``.py`` files are read in sorted path order; test packages are skipped, and private
    (``_name``) modules, packages, classes and functions too unless ``private`` (libraries such as
    scipy and numpy define most of their public functions in private modules). Each docstring is a
    BEIR corpus record: ``{"_id": qualified name, "title": qualified name, "text": docstring}``; a name seen before (defined twice, or under two roots) keeps its first.
    """
    seen: set[str] = set()
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            relative = path.relative_to(root).parts
            hidden = ("_", ".") if not private else (".", "__")
            if _SKIPPED_PARTS.intersection(relative) or any(p.startswith(hidden) and p != "__init__.py" for p in relative):
                continue
            if any("." in p for p in relative[:-1]):  # not a package: a *.dist-info, *.data or *.libs folder
                continue
            try:
                tree = ast.parse(path.read_bytes(), filename=str(path))
            except (SyntaxError, ValueError, RecursionError):
                continue  # e.g. Python-2 era files shipped as data, or generated code too deep for the parser
            for record in _docstrings(_module_name(root, path), tree, private):
                if record["_id"] not in seen:
                    seen.add(record["_id"])
                    yield record


def _stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _package_roots() -> list[Path]:
    """The running interpreter's installed-package folders (``purelib``, then ``platlib`` if another)."""
    paths = sysconfig.get_paths()
    roots = [Path(paths["purelib"])]
    if Path(paths["platlib"]) != roots[0]:
        roots.append(Path(paths["platlib"]))
    return [root for root in roots if root.is_dir()]


def stdlib_records() -> Iterator[dict[str, str]]:
    """Public module, class and function docstrings of the standard library, in a fixed order."""
    return docstring_records([_stdlib_root()])


def split_passages(text: str, words: int = PASSAGE_WORDS) -> list[str]:
    """``text`` cut at its blank lines into paragraphs, merged in order into passages of at most ``words`` words.

    A paragraph longer than ``words`` is cut into windows of ``words`` words. Whitespace inside a
    passage is collapsed to single spaces.
    """
    passages: list[str] = []
    current: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        tokens = paragraph.split()
        if len(current) + len(tokens) > words and current:
            passages.append(" ".join(current))
            current = []
        while len(tokens) > words:
            passages.append(" ".join(tokens[:words]))
            tokens = tokens[words:]
        current.extend(tokens)
    if current:
        passages.append(" ".join(current))
    return passages


def passage_records(records: Iterable[dict[str, str]], words: int = PASSAGE_WORDS) -> Iterator[dict[str, str]]:
    """Each record's text as passages (:func:`split_passages`), ids ``<_id>#<n>``, short ones and repeats left out.

    ``n`` counts the passages of one record from 0, the dropped ones included, so an id does not
    depend on which other records were read before.
    """
    seen: set[str] = set()
    for record in records:
        for number, passage in enumerate(split_passages(record["text"], words)):
            if len(passage.split()) < MIN_PASSAGE_WORDS or passage in seen:
                continue
            seen.add(passage)
            yield {"_id": f"{record['_id']}#{number}", "title": record["title"], "text": passage}


def pydocs_records() -> Iterator[dict[str, str]]:
    """The ``builtin:pydocs`` passages: standard library, then installed packages (module docstring)."""
    return passage_records(docstring_records([_stdlib_root(), *_package_roots()], private=True))


def _installed_fingerprint() -> str:
    """A short hash of the installed distributions' names and versions (their ``*.dist-info`` folders)."""
    names = sorted(p.name for root in _package_roots() for p in root.glob("*.dist-info"))
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:10]


def builtin_folder(name: str) -> Path:
    """The folder of built-in collection ``name`` in genir's cache (written on first use), named for the
    collection: ``corpus.jsonl``, and for ``toy`` its queries and qrels too (:mod:`genir.indexer.builtin_toy`).

    Raises:
        GenirError: ``name`` is not a built-in collection.
    """
    if name not in BUILTIN_NAMES:
        raise GenirError(f"unknown built-in corpus {name!r} (available: {', '.join(BUILTIN_NAMES)})")
    if name == "toy":  # one folder per version of its text, so an edited toy is never read from an old copy
        text = json.dumps([builtin_toy.DOCS, builtin_toy.QUERIES, builtin_toy.QRELS]).encode()
        folder = cache_dir() / "builtin" / f"toy-{hashlib.sha256(text).hexdigest()[:10]}"
        if not folder.is_dir():
            with atomic_dir(folder, replace=True) as staging:
                builtin_toy.write_toy(staging)
        return folder
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    if name == "stdlib":
        collection_name, records = f"stdlib-py{version}", stdlib_records
    else:
        collection_name, records = f"pydocs-py{version}-{_installed_fingerprint()}", pydocs_records
    folder = cache_dir() / "builtin" / collection_name
    if not (folder / "corpus.jsonl").is_file():
        with atomic_open(folder / "corpus.jsonl") as f:
            for record in records():
                f.write(json.dumps(record) + "\n")
    return folder
