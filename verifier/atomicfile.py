"""Crash-safe file writes, the one home of every role's durable file I/O.

Two intentions, named after what they mean (as tessera's ``createExclusive``):

:func:`write_atomic`
    Replace ``path``: write a new temporary file next to it (created with ``O_EXCL`` and the requested
    mode, so it is never readable by others even for an instant), fsync it, rename it over ``path``
    and fsync the directory. After a crash at any point ``path`` holds either the old or the new
    bytes, never a mix, and once it returns the new bytes survive power loss.
:func:`create_exclusive`
    Create ``path``, which must not exist (``O_CREAT | O_EXCL``, never following a symlink there),
    with mode ``0600`` by default whatever the umask, write, fsync it and its directory. On failure
    no partial file is left behind. For secrets: key files, bearer tokens.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """fsync a directory, so a rename or a new name in it survives power loss."""
    dir_fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_atomic(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` atomically and durably (see the module docstring)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, _CREATE, mode)
    try:
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def create_exclusive(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o600) -> None:
    """Create ``path`` holding ``data`` durably; :class:`FileExistsError` if anything is there.

    Other :class:`OSError` subclasses propagate as raised (the caller words the message).
    """
    fd = os.open(path, _CREATE, mode)
    try:
        try:
            os.fchmod(fd, mode)  # the umask may have narrowed it; never widen beyond ``mode``
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    fsync_dir(os.path.dirname(os.path.abspath(path)))


__all__ = ["create_exclusive", "fsync_dir", "write_atomic"]
