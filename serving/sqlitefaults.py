"""What kind of fault a ``sqlite3`` error is: the one classification behind every SQLite store of the
services (the distributor's log, the signer's journal, the witness's state), each of which maps the
kind to an error class of its own (roles import no other role; this package imports no project one).

Kinds, from SQLite's primary result code (the low byte of the extended code ``sqlite_errorcode``):

========== ===================================================== ==============================
kind       result codes                                          meaning
========== ===================================================== ==============================
``busy``   SQLITE_BUSY (5), SQLITE_LOCKED (6)                    a lock was not obtained in time
``io``     SQLITE_IOERR (10) and every SQLITE_IOERR_* code       EIO on a read, write or fsync
``full``   SQLITE_FULL (13)                                      a write met ENOSPC
``corrupt`` SQLITE_CORRUPT (11), SQLITE_NOTADB (26)              the file is damaged
``unavailable`` anything else operational                        cannot open, read-only, ...
``None``   ``IntegrityError``, ``ProgrammingError``,             not the storage's fault: a
           ``InterfaceError``                                    constraint (a trigger) or a bug
========== ===================================================== ==============================
"""

from __future__ import annotations

import sqlite3

_KIND_OF_CODE = {5: "busy", 6: "busy", 10: "io", 11: "corrupt", 13: "full", 26: "corrupt"}


def sqlite_fault(exc: sqlite3.Error) -> str | None:
    """The kind of ``exc`` (module docstring), or ``None`` when it is not a storage fault."""
    if isinstance(exc, sqlite3.IntegrityError | sqlite3.ProgrammingError | sqlite3.InterfaceError):
        return None
    code = getattr(exc, "sqlite_errorcode", None)
    return _KIND_OF_CODE.get(code & 0xFF, "unavailable") if isinstance(code, int) else "unavailable"


def describe(exc: sqlite3.Error) -> str:
    """``exc`` with SQLite's name of its result code, for a log line."""
    name = getattr(exc, "sqlite_errorname", None)
    return f"{exc} ({name})" if name else str(exc)


__all__ = ["describe", "sqlite_fault"]
