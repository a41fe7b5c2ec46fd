"""Child processes that never outlive genir.

The invariant: when :func:`run_child` returns or raises, its child has exited, whatever ended
the wait, and a child whose parent dies without cleaning up is killed by the kernel.

* An exception during the wait (``KeyboardInterrupt`` from SIGINT, the ``SystemExit`` the CLI
  raises on SIGTERM, any error) is forwarded to the child as SIGTERM; it gets
  :data:`GRACE_SECONDS` to exit, then SIGKILL, and is waited for before the exception goes on.
* On Linux the child is started with a parent-death signal (``PR_SET_PDEATHSIG``: SIGKILL), so
  a parent killed with SIGKILL, which runs no cleanup, takes the child with it. A small Python
  launcher sets it and then ``exec``s the command (no ``preexec_fn``, which is unsafe in a process
  with threads such as the JVM's or torch's); the signal survives the ``exec``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence

GRACE_SECONDS = 10.0

# argv: parent pid, command... Dies at once if the parent is already gone (the signal would never come).
_LAUNCHER = (
    "import ctypes, os, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL\n"
    "if os.getppid() != int(sys.argv[1]): os._exit(1)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


def child_command(command: Sequence[str]) -> list[str]:
    """``command``, wrapped so that the child dies with this process where the platform allows."""
    if not sys.platform.startswith("linux"):
        return list(command)
    return [sys.executable, "-c", _LAUNCHER, str(os.getpid()), *command]


def run_child(command: Sequence[str], env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``command`` to completion, capturing its output as text (as ``subprocess.run`` does)."""
    process = subprocess.Popen(child_command(command), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=dict(env) if env is not None else None)
    try:
        stdout, stderr = process.communicate()
    except BaseException:
        _stop(process)
        raise
    return subprocess.CompletedProcess(list(command), process.returncode, stdout, stderr)


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after the grace period; return once the child has exited."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if _main_thread() else None  # a second ^C must not skip the wait
    try:
        if process.poll() is None:
            process.terminate()
            try:
                process.communicate(timeout=GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
