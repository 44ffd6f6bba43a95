"""Reading a secret file that only its owner may access (key files, PIN files).

Creating one is :func:`verifier.atomicfile.create_exclusive` (mode 0600, ``O_EXCL``, fsync'd with
its directory); this module holds the read side, which only key custody needs.
"""

from __future__ import annotations

import os
import re
import stat
import urllib.parse

from .errors import KeyBackendError

PCT_ESCAPE_BAD = re.compile(r"%(?![0-9A-Fa-f]{2})")


def file_reference_path(value: str, *, what: str) -> str:
    """``file:PATH`` → PATH (literal); ``file:///p`` / ``file://localhost/p`` → percent-decoded /p."""
    rest = value[len("file:"):]
    if rest.startswith("//"):
        rest = rest[2:]
        if rest.startswith("localhost/"):
            rest = rest[len("localhost"):]
        if not rest.startswith("/"):
            raise KeyBackendError(f"{what}: file URI must name a local absolute path (file:///path)")
        if PCT_ESCAPE_BAD.search(rest):
            raise KeyBackendError(f"{what}: malformed percent-escape in file URI")
        rest = urllib.parse.unquote(rest, errors="strict")
    if not rest:
        raise KeyBackendError(f"{what}: empty file path")
    return rest


def read_private_file(path: str, *, what: str, max_size: int) -> bytes:
    """Read a secret file that only its owner may access; refuse anything else.

    The mode is checked on the opened descriptor (no race between check and read). Refused: not a
    regular file, any group/other permission bit set, larger than ``max_size``.
    """
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    flags |= getattr(os, "O_NONBLOCK", 0)  # never hang on a FIFO; regular files ignore it
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise KeyBackendError(f"{what} {path}: no such file") from None
    except OSError as exc:
        raise KeyBackendError(f"{what} {path}: cannot open ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyBackendError(f"{what} {path}: not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise KeyBackendError(
                f"{what} {path}: permissions {mode:04o} are too open; it must not be accessible by "
                f"group or others (chmod 600 {path})")
        if st.st_size > max_size:
            raise KeyBackendError(f"{what} {path}: {st.st_size} bytes is larger than {max_size}")
        chunks = []
        total = 0
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            total += len(chunk)
            if total > max_size:
                raise KeyBackendError(f"{what} {path}: larger than {max_size} bytes")
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise KeyBackendError(f"{what} {path}: cannot read ({exc.strerror})") from None
    finally:
        os.close(fd)



__all__ = ["PCT_ESCAPE_BAD", "file_reference_path", "read_private_file"]
