"""The client's state on disk: one ``state.json`` per state directory, saved by compare-and-swap.

Like Go's ``sumdb`` ``ClientOps.WriteConfig(old, new)``: a save names the bytes it read, and is
refused (:class:`~verifier.errors.StateConflictError`) when the file no longer holds them, so two
processes sharing a state directory can never write back an older tree head over a newer one.
The check and the write happen under an exclusive ``flock`` on ``<dir>/.state.lock``; the write
itself is :func:`verifier.atomicfile.write_atomic` (temporary file, fsync, rename, directory fsync),
so a crash leaves the old state or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from .atomicfile import write_atomic
from .errors import StateConflictError
from .update import MAX_STATE_SIZE, ClientState

STATE_FILE = "state.json"
_LOCK_FILE = ".state.lock"


class StateStore:
    """``load()`` then ``save(new)``; each successful save becomes the next save's expected bytes."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = self.directory / STATE_FILE
        self._expected: bytes | None = None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.directory / _LOCK_FILE, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _read(self) -> bytes | None:
        try:
            with open(self.path, "rb") as f:
                return f.read(MAX_STATE_SIZE + 1)
        except FileNotFoundError:
            return None

    def load(self) -> ClientState:
        """The saved state (``ClientState()`` if none); a corrupt file raises, never resets silently."""
        with self._locked():
            data = self._read()
        state = ClientState() if data is None else ClientState.from_bytes(data)
        self._expected = data
        return state

    def save(self, state: ClientState) -> None:
        """Write ``state`` if the file still holds what :meth:`load` (or the last save) saw."""
        data = state.to_bytes()
        with self._locked():
            if self._read() != self._expected:
                raise StateConflictError(f"{self.path} was changed by another process since it was read; "
                                         "reload and refresh again")
            write_atomic(self.path, data)
        self._expected = data


__all__ = ["STATE_FILE", "StateStore"]
