"""Child Python processes for tests, whatever the checkout's folder is called.

A ``multiprocessing`` "spawn" child re-imports its target by the name pytest gave the test module,
and with the folder's own name on ``sys.path``: in a checkout called ``infer_segment_anything_2-main``
(GitHub's "Download ZIP") or ``sam2 plugin``, the folder is not a package name and its
``infer_segment_anything_2.py`` (the plugin's entry module) shadows the package, so the child
cannot even start. Here a child is a plain ``python -c`` process that puts the test Ikomia root's
link to the checkout (named ``infer_segment_anything_2``, see ``conftest.py``) first on its path,
then ``tests/`` and the target's folder (for helper modules), and loads the target function from a file by path, under a name of its own: nothing depends on
the folder's name or on pytest's import mode.

Talk to a child by lines: :meth:`Child.send` writes one to its stdin, :meth:`Child.result` reads
the next JSON line it prints. A child that exits, or dies on import, before it answers makes
:meth:`Child.result` fail the test at once with the child's stderr, instead of a long wait.
"""
from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, List, Optional

import pytest

from conftest import PLUGINS_DIR

TESTS = Path(__file__).resolve().parent

# argv: plugins folder, tests folder, target file, function name, JSON arguments.
_BOOT = r"""
import importlib.util, json, os, sys
plugins, tests, path, function, args = sys.argv[1:6]
sys.path[:0] = [plugins, tests, os.path.dirname(path)]
spec = importlib.util.spec_from_file_location("_child_target", path)
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
getattr(module, function)(*json.loads(args))
"""


def reply(value: Any) -> None:
    """In a child: answer the parent with one JSON line (read by :meth:`Child.result`)."""
    print(json.dumps(value), flush=True)


def wait_for_parent() -> str:
    """In a child: the next line the parent sends (:meth:`Child.send`), without its newline."""
    return sys.stdin.readline().rstrip("\n")


class Child:
    """``function(*args)`` of the Python file ``script`` in a child process, started now.

    ``args`` must be JSON values. The child's stdout carries its answers; its stderr is kept and
    shown when the test fails on it."""

    def __init__(self, script: Path, function: str, *args: Any) -> None:
        self.name = f"{Path(script).name}:{function}"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _BOOT, str(PLUGINS_DIR), str(TESTS), str(script), function,
             json.dumps(list(args))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self._stderr: List[str] = []
        threading.Thread(target=self._pump, args=(self.proc.stdout, self._lines.put),
                         daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stderr, self._stderr.append),
                         daemon=True).start()

    @staticmethod
    def _pump(stream, sink) -> None:
        try:
            for line in stream:
                sink(line)
        except (OSError, ValueError):  # closed by kill()
            pass
        sink(None)

    def stderr(self) -> str:
        return "".join(line for line in self._stderr if line is not None)

    def send(self, line: str) -> None:
        """One line to the child's stdin."""
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def result(self, timeout: float) -> Any:
        """The child's next JSON answer. Fails the test at once if the child ends without one
        (its stderr in the message), or after ``timeout`` seconds without one."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=min(0.05, max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                if time.monotonic() >= deadline:
                    pytest.fail(f"child {self.name} gave no answer in {timeout} s; its stderr:\n"
                                f"{self.stderr()}")
                continue
            if line is None:  # stdout closed: the child has ended without answering
                code = self.proc.wait(10)
                time.sleep(0.1)  # let the stderr pump finish
                pytest.fail(f"child {self.name} ended (exit status {code}) without answering; "
                            f"its stderr:\n{self.stderr()}")
            if line.strip():
                return json.loads(line)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL (no clean-up code runs in the child), then reap it."""
        if self.alive():
            self.proc.kill()
        self.proc.wait(10)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                stream.close()
            except OSError:
                pass

    def __enter__(self) -> "Child":
        return self

    def __exit__(self, *exc) -> None:
        self.kill()
