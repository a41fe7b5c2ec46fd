"""What every ``genir`` command module shares: the consoles, option types, error handling and
the terminal setup that keeps third-party chatter off the user's screen.

Command modules (:mod:`genir.cli.main`, :mod:`genir.cli.continual`) import this module; it
imports none of them.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import signal
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from genir.errors import GenirError

out = Console()
err = Console(stderr=True)

CollectionOpt = Annotated[str, typer.Option(
    "--collection", "-c",
    help="BEIR directory (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv); a .jsonl corpus (BEIR _id/title/text or "
         "pyserini id/contents); a .tsv or .csv corpus (id,text or id,title,text rows, or a header row naming id, title "
         "and text columns); a folder of .txt/.md files (id: path without extension, title: first line); or builtin:stdlib / "
         "builtin:pydocs / builtin:toy (24 documents with queries).",
)]
SplitOpt = Annotated[str, typer.Option("--split", help="qrels split to evaluate on (qrels/SPLIT.tsv).")]
AllowEmptyOpt = Annotated[bool, typer.Option(
    "--allow-empty-docs", help="Keep documents with no title and no text (warn instead of failing).",
)]
SearchSetOpt = Annotated[list[str] | None, typer.Option(
    "--set", "-s", help="A search setting KEY=VALUE for this search only (repeatable), e.g. k1=1.2 (bm25), nprobe=64 "
    "(dense), weight=0.5 (hybrid), beams=15 (seal), plan_weight=0 (dsi, se-dsi); a setting fixed at build is refused "
    "with the method's list. The index keeps its own.",
)]
DeviceOpt = Annotated[str, typer.Option(
    "--device", help="Where models run: auto (the GPU when there is one) | cpu | cuda | cuda:N.",
)]
DevicesOpt = Annotated[int, typer.Option(
    "--devices", min=1, help="Spread the work over N devices of --device's kind (N GPUs, or N CPU processes) through Lightning.",
)]


#: OSError numbers that say something about the user's paths or disk (not a bug): reported as user errors.
_PATH_ERRORS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.ENAMETOOLONG,
                errno.ENOTDIR, errno.EISDIR}


def user_errors(command):
    """Turn genir's input errors, and writes the file system refuses (no space, read-only, permission,
    a name too long), into one line on stderr and exit status 2."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except GenirError as e:
            err.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except OSError as e:
            if e.errno not in _PATH_ERRORS:
                raise
            where = f"{e.filename}: " if e.filename else ""
            err.print(f"[bold red]error:[/] {escape(where + (e.strerror or str(e)))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


def output_file(path: Path, option: str) -> Path:
    """``path``, checked before any work that a file can be written there (missing folders are created later).

    Raises:
        GenirError: ``path`` is a folder, or as :func:`output_folder`.
    """
    output_folder(path, option)  # first: is_dir() fails on a name that is too long
    if path.is_dir():
        raise GenirError(f"{option} {path} is a folder; give the path of a file to write")
    return path


def output_folder(path: Path, option: str) -> Path:
    """``path``, checked before any work that it can be created (with its missing parent folders).

    Raises:
        GenirError: a part of its parent path is a file, a name to create is longer than the file
            system allows, or the nearest existing folder above it cannot be written to.
    """
    absolute = path.absolute()
    existing = next(parent for parent in absolute.parents if parent.exists())
    if not existing.is_dir():
        raise GenirError(f"{option} {path}: {existing} is not a folder")
    try:
        limit = os.pathconf(existing, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    for name in absolute.relative_to(existing).parts:
        if len(os.fsencode(name)) > limit:
            raise GenirError(f"{option} {path}: the name {name[:16]}... is {len(os.fsencode(name))} bytes long; "
                             f"the file system allows {limit}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise GenirError(f"{option} {path}: {existing} is not writable (read-only, or no permission)")
    return path


@contextmanager
def terminate_like_interrupt() -> Iterator[None]:
    """While active, SIGTERM ends the command the way ^C does: by an exception (``SystemExit(143)``).

    Python's default for SIGTERM is to die on the spot, which runs no ``finally`` block: a build's
    staging folder would stay behind and its child processes would not be stopped. As an
    exception, SIGTERM unwinds through them (:func:`genir.indexer.artifact.atomic_directory`,
    :func:`genir.subprocesses.run_child`). Further SIGTERMs are ignored while that cleanup runs;
    SIGKILL still ends everything. Only the main thread can set handlers; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise SystemExit(128 + signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def configure_logging() -> None:
    """genir's warnings (and other libraries' WARNING records) as ``warning: ...`` lines on stderr."""
    handler = logging.StreamHandler()
    # Records of child loggers reach the root's handlers whatever the root's level: without this,
    # Lightning's INFO lines (printed by its own handler) came out a second time as "warning:".
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("warning: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])


# Modules whose warnings address whoever configures a Lightning Trainer: genir does, not the user.
_LIGHTNING_MODULES = r"(lightning|pytorch_lightning|lightning_fabric|lightning_utilities)(\.|$)"
# Any module but genir's own: deprecations inside libraries are for their callers' developers.
_NOT_GENIR = r"(?!genir(\.|$))"
# Lightning reads Trainer defaults from PL_TRAINER_<ARGUMENT> variables; this one drops the model table.
_MODEL_SUMMARY_ENV = "PL_TRAINER_ENABLE_MODEL_SUMMARY"


@contextmanager
def quiet_libraries() -> Iterator[None]:
    """Keep Lightning's tips, notices and advice, and libraries' deprecation notices, off the terminal.

    While it is active:

    * logging below WARNING is off process-wide (``logging.disable``). The CLI prints only
      WARNING and above anyway (:func:`configure_logging`); this also silences Lightning's own
      handler, which prints its INFO lines ("GPU available", "Seed set", the litlogger tip,
      "`Trainer(...)` was configured", "`Trainer.fit` stopped") whatever the root's settings;
    * warnings raised in Lightning's modules (advice such as "the number of training batches
      is smaller than the logging interval") and DeprecationWarning / PendingDeprecationWarning /
      FutureWarning raised outside genir (torch's ``LeafSpec`` notice, reached via Lightning)
      are ignored;
    * Lightning prints no model summary table (``PL_TRAINER_ENABLE_MODEL_SUMMARY=False`` unless
      the user set that variable).

    Errors, genir's warnings and progress bars (including the training bar) are untouched.
    Everything is restored on exit, so an in-process caller (tests) gets its settings back.
    """
    previous_disable = logging.root.manager.disable
    previous_env = os.environ.get(_MODEL_SUMMARY_ENV)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=_LIGHTNING_MODULES)
        for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
            warnings.filterwarnings("ignore", category=category, module=_NOT_GENIR)
        logging.disable(logging.INFO)
        if previous_env is None:
            os.environ[_MODEL_SUMMARY_ENV] = "False"
        try:
            yield
        finally:
            logging.disable(previous_disable)
            if previous_env is None:
                os.environ.pop(_MODEL_SUMMARY_ENV, None)
