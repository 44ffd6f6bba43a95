"""strace as a fault injector: trace one request's file system calls on a live worker, then fail
(``error=EIO``) or kill (``signal=KILL``) exactly one of them in a rerun from the same starting state.

strace (``-f``) counts ``when=N`` per traced thread and per matching call, so an invocation is named by what is
stable from one run to the next: the call kind, the file it touches (``-P``, resolved by ``-y``), the
worker thread that made it (by its position among the worker's threads at attach time, the threads
being created in the same order at every boot) and its ordinal among that thread's calls of this kind
on this file. Threads that only ever read during the trace (the static refresher, which wakes every
second whatever the request does) are left out: their calls are not part of the request.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

#: Every file-related call kind traced (a kind the traced request never makes is reported as absent).
FILE_CALLS = ("openat", "open", "creat", "read", "pread64", "lseek", "write", "pwrite64", "writev", "fsync",
              "fdatasync", "rename", "renameat", "renameat2", "close", "mkdir", "mkdirat", "unlink", "unlinkat",
              "rmdir", "ftruncate", "truncate", "fallocate", "fcntl", "flock", "link", "linkat")
_MUTATING = {"write", "pwrite64", "writev", "fsync", "fdatasync", "rename", "renameat", "renameat2", "mkdir",
             "mkdirat", "unlink", "unlinkat", "rmdir", "ftruncate", "truncate", "fallocate", "link", "linkat"}
_LINE = re.compile(r"^(\d+)\s+(\w+)\((.*)$")
_FD_PATH = re.compile(r"^-?\d+<([^>]*)>")
_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')


def strace_usable() -> str | None:
    """Why strace fault injection cannot run here, or None."""
    if shutil.which("strace") is None:
        return "strace is not installed"
    if os.geteuid() != 0:
        return "strace --inject on another process needs root"
    return None


@dataclass(frozen=True)
class Call:
    """One traced invocation: ``thread`` is the position of its thread in the worker, ``ordinal`` is
    1-based among that thread's calls of ``kind`` on ``path`` (what ``-P path ... when=ordinal`` hits)."""

    kind: str
    path: str
    thread: int
    ordinal: int
    pool: bool  # made by one of several interchangeable threads (an fsync pool): attach them all

    @property
    def label(self) -> str:
        return f"{self.kind}#{self.ordinal} {self.path}"


def threads_of(pid: int) -> list[int]:
    return sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))


def worker_pids(master: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _path_of(args: str) -> str | None:
    m = _FD_PATH.match(args)
    if m:
        return m.group(1)
    m = _STRING.search(args)
    return m.group(1) if m else None


class Tracer:
    """``strace`` attached to some threads of a running process; :meth:`stop` detaches."""

    def __init__(self, tids: list[int], out: Path, kinds: tuple[str, ...], *, paths: tuple[str, ...] = (),
                 inject: str | None = None) -> None:
        self.out = out
        cmd = ["strace", "-f", "-y", "-o", str(out), "-e", "trace=" + ",".join(kinds)]
        for p in paths:
            cmd += ["-P", p]
        if inject:
            cmd += ["-e", "inject=" + inject]
        for t in tids:
            cmd += ["-p", str(t)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert self.proc.stderr is not None
        # With -f strace reports each process once ("Process N attached"), whatever its threads: wait for
        # that, then give it a moment to seize the remaining threads.
        if "attached" not in self.proc.stderr.readline():
            raise AssertionError(f"strace did not attach: {self.proc.stderr.read()}")
        time.sleep(0.3)

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc.stderr:
            self.proc.stderr.close()
        return self.out.read_text(errors="replace") if self.out.exists() else ""


def parse_trace(text: str, tids: list[int]) -> list[Call]:
    """The calls of a trace in order, named as :class:`Call` (threads that never mutated left out)."""
    raw: list[tuple[int, str, str]] = []
    for line in text.splitlines():
        m = _LINE.match(line)
        if not m or "resumed>" in line:
            continue
        tid, kind, args = int(m.group(1)), m.group(2), m.group(3)
        path = _path_of(args)
        if path is None:
            continue
        raw.append((tid, kind, path))
    tids = sorted(set(tids) | {tid for tid, _, _ in raw})  # threads started during the trace come last
    mutating = {tid for tid, kind, _ in raw if kind in _MUTATING}
    fsync_only = {tid for tid in mutating if all(k in ("fsync", "fdatasync") for t, k, _ in raw if t == tid)}
    pool = fsync_only if len(fsync_only) > 1 else set()
    counts: dict[tuple[int | str, str, str], int] = defaultdict(int)
    calls = []
    for tid, kind, path in raw:
        if tid not in mutating:
            continue
        key = ("pool" if tid in pool else tid, kind, path)
        counts[key] += 1
        calls.append(Call(kind, path, tids.index(tid), counts[key], tid in pool))
    return calls


def targets(call: Call, tids: list[int], pool_positions: set[int]) -> list[int]:
    """The threads of a rerun to attach for ``call`` (with ``-f``: and the threads they start). A thread
    started during the request is not there yet: then every thread is attached, and another thread's
    call of the same kind, file and ordinal fails too (counted: each ``INJECTED`` line is one fault)."""
    if call.pool or call.thread >= len(tids):
        return tids
    return [tids[call.thread]]


def sample(calls: list[Call], per_kind: int) -> dict[str, list[Call]]:
    """Every kind, each with at most ``per_kind`` invocations: the first, the last and evenly between (only
    the last when ``per_kind`` is 1: the one closest to the acknowledgement)."""
    by_kind: dict[str, list[Call]] = defaultdict(list)
    for c in calls:
        by_kind[c.kind].append(c)
    out = {}
    for kind, cs in by_kind.items():
        if len(cs) <= per_kind:
            out[kind] = cs
        elif per_kind == 1:
            out[kind] = [cs[-1]]
        else:
            step = (len(cs) - 1) / (per_kind - 1)
            out[kind] = [cs[round(i * step)] for i in range(per_kind)]
    return out
