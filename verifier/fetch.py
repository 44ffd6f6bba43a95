"""The client's I/O seam: a :class:`Fetcher` reads one static file of a log by its path.

Everything a client reads is a file of the static export (C2SP ``checkpoint`` and ``tile/...``
paths, and the fleetkeys ``entry/<N>`` objects), so three small implementations cover every source:

:class:`HttpFetcher`
    a list of mirror base URLs (the distributor, a CDN, any static file server), tried in order
    with failover, through :class:`verifier.http.HttpClient` (one deadline per attempt, byte caps,
    redirects only among the configured mirrors' origins and never to a weaker scheme);
:class:`DirectoryFetcher`
    a static export directory on disk (an auditor's copy, a test fixture);
the attack suite's simulator
    an in-memory log with attack hooks (``tests/attacks/simulator.py``).

A fetcher returns the body, ``None`` when the file does not exist (HTTP 404 on every mirror, no such
file), and raises :class:`~verifier.errors.FetchError` for anything else (unreachable, other
statuses) or :class:`~verifier.errors.SizeLimitError` past ``limit``. Nothing it returns is trusted.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from .errors import FetchError, SizeLimitError
from .http import HttpClient, sanitize

#: What a path may look like: the C2SP and fleetkeys static paths only (no ``..``, no query).
_PATH_RE = re.compile(r"\A(?:checkpoint|tile/[0-9a-z./]{1,200}|entry/[0-9x/]{1,100}|trust-root/[0-9]{1,10})\Z")


def check_path(path: str) -> str:
    """``path`` if it is a log file path this project ever reads (else :class:`FetchError`)."""
    if not _PATH_RE.match(path) or ".." in path or "//" in path:
        raise FetchError(f"not a log file path: {sanitize(path)}")
    return path


@runtime_checkable
class Fetcher(Protocol):
    """Reads one log file: body, ``None`` if it does not exist, or raises (see the module docstring)."""

    def fetch(self, path: str, limit: int) -> bytes | None: ...


class HttpFetcher:
    """A log's files from one or more mirror base URLs, in order, failing over to the next mirror."""

    def __init__(self, mirrors: str | Sequence[str], *, http: HttpClient | None = None, timeout: float = 10.0,
                 retries: int = 2, backoff: float = 0.5) -> None:
        self.mirrors = [m.rstrip("/") for m in ([mirrors] if isinstance(mirrors, str) else list(mirrors))]
        if not self.mirrors:
            raise ValueError("at least one mirror URL is required")
        self.http = http or HttpClient(timeout=timeout, retries=retries, backoff=backoff, allowed_origins=self.mirrors)

    def fetch(self, path: str, limit: int) -> bytes | None:
        check_path(path)
        problems: list[str] = []
        missing = 0
        for base in self.mirrors:
            try:
                resp = self.http.get(f"{base}/{path}", limit=limit)
            except FetchError as exc:
                problems.append(str(exc))
                continue
            if resp.status == 200:
                return resp.body
            if resp.status == 404:
                missing += 1  # a lagging mirror may not have it yet: try the next one
                continue
            problems.append(f"GET {sanitize(base)}/{path}: HTTP {resp.status}: {resp.reason()}")
        if missing == len(self.mirrors):
            return None
        raise FetchError("; ".join(problems) or f"{path}: not found on any mirror")


class DirectoryFetcher:
    """A log's files from a static export directory (regular files only, never outside it)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = os.path.abspath(directory)

    def fetch(self, path: str, limit: int) -> bytes | None:
        full = os.path.join(self.directory, check_path(path))
        try:
            fd = os.open(full, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise FetchError(f"{path}: cannot open ({exc.strerror})") from None
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise FetchError(f"{path}: not a regular file")
            data = f.read(limit + 1)
        if len(data) > limit:
            raise SizeLimitError(f"{path}: larger than the {limit}-byte cap")
        return data


__all__ = ["DirectoryFetcher", "Fetcher", "HttpFetcher", "check_path"]
