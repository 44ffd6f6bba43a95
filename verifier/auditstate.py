"""What an incremental audit remembers between runs (``fleetkeys audit verify --state FILE``, ``monitor``).

Canonical JSON (``bundles/FORMAT.md`` §1.1), at most :data:`MAX_AUDIT_STATE_SIZE` bytes, exactly these
fields (``bundles/FORMAT.md`` §15.1)::

    {"bootstrap": "<hex SHA-256 of the bootstrap trust-root body the audit started from>",
     "epochs": <verified bundles so far>,
     "first_problem": null | {"error": "<class>", "index": <int> | null, "message": "<text>"},
     "format": "fleetkeys/audit-state/v1",
     "freshness_time": <newest checkpoint time seen, POSIX seconds; 0 if none>,
     "frontier": ["<base64 hash>", ...],          the Merkle frontier of the audited tree
     "keyset": "<base64 of the last adopted keyset>" | null,
     "keyset_index": <its log index> | null,
     "origin": "<log origin>",
     "problems": <problems found so far>,
     "revoked": ["<revocation mark>", ...],       sorted, unique, at most MAX_REVOKED
     "root": "<base64 root of the audited tree>",
     "size": <audited tree size>,
     "tiles": [["<base64 hash>", ...], ...],      per tile level, the hashes not yet in a full tile
     "trust_root": "<base64 of the followed rotation envelope in force>" | null}

Everything it holds is bounded independently of the log's size: a frontier of at most 63 hashes,
fewer than 256 hashes per tile level, one keyset, the revocation marks. It is the auditor's own file
(written atomically with :func:`verifier.atomicfile.write_atomic`), yet parsed strictly: a corrupt
or foreign state is an error, never silently reset.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Any

from .cjson import dumps_canonical, expect_int, expect_object, expect_str, loads_canonical
from .errors import FormatError, MismatchError
from .keyset import Keyset, parse_keyset
from .merkle import EMPTY_ROOT, HASH_SIZE, frontier_root
from .note import b64decode_strict
from .tiles import TILE_HEIGHT, TILE_WIDTH
from .trustroot import TrustRoot, load_trust_root
from .update import MAX_REVOKED

FORMAT = "fleetkeys/audit-state/v1"
MAX_AUDIT_STATE_SIZE = 4 * 1024 * 1024
_MAX_INT = (1 << 63) - 1
_FIELDS = {"bootstrap", "epochs", "first_problem", "format", "freshness_time", "frontier", "keyset", "keyset_index",
           "origin", "problems", "revoked", "root", "size", "tiles", "trust_root"}


@dataclass(frozen=True)
class FirstProblem:
    index: int | None
    error: str
    message: str


@dataclass(frozen=True)
class AuditState:
    """The audited tree head and what the walk needs to go on from it (module docstring)."""

    bootstrap: bytes
    origin: str
    size: int = 0
    root: bytes = EMPTY_ROOT
    frontier: tuple[bytes, ...] = ()
    tiles: tuple[tuple[bytes, ...], ...] = ()
    trust_root: bytes | None = None
    keyset: bytes | None = None
    keyset_index: int | None = None
    revoked: frozenset[str] = field(default_factory=frozenset)
    freshness_time: int = 0
    epochs: int = 0
    problems: int = 0
    first_problem: FirstProblem | None = None

    @classmethod
    def fresh(cls, bootstrap: TrustRoot) -> AuditState:
        """The state before entry 0 of the log ``bootstrap`` names."""
        return cls(hashlib.sha256(bootstrap.body).digest(), bootstrap.log.origin)

    def check_bootstrap(self, bootstrap: TrustRoot) -> None:
        """Refuse a state written for another trust root or log (:class:`MismatchError`)."""
        digest = hashlib.sha256(bootstrap.body).digest()
        if self.bootstrap != digest or self.origin != bootstrap.log.origin:
            raise MismatchError(f"audit state is for the log {self.origin!r} from trust root {self.bootstrap.hex()[:16]}…, "
                                f"not {bootstrap.log.origin!r} from {digest.hex()[:16]}…")

    def trust_root_in_force(self, bootstrap: TrustRoot) -> TrustRoot:
        return bootstrap if self.trust_root is None else load_trust_root(self.trust_root)

    def last_keyset(self) -> Keyset | None:
        return None if self.keyset is None else parse_keyset(self.keyset)

    def to_bytes(self) -> bytes:
        b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
        fp = self.first_problem
        return dumps_canonical({
            "bootstrap": self.bootstrap.hex(),
            "epochs": self.epochs,
            "first_problem": None if fp is None else {"error": fp.error, "index": fp.index, "message": fp.message},
            "format": FORMAT,
            "freshness_time": self.freshness_time,
            "frontier": [b64(h) for h in self.frontier],
            "keyset": None if self.keyset is None else b64(self.keyset),
            "keyset_index": self.keyset_index,
            "origin": self.origin,
            "problems": self.problems,
            "revoked": sorted(self.revoked),
            "root": b64(self.root),
            "size": self.size,
            "tiles": [[b64(h) for h in level] for level in self.tiles],
            "trust_root": None if self.trust_root is None else b64(self.trust_root),
        })

    @classmethod
    def from_bytes(cls, data: bytes) -> AuditState:
        """Parse strictly; raises :class:`FormatError` (or a subclass) for anything else."""
        obj = expect_object(loads_canonical(data, "audit state", MAX_AUDIT_STATE_SIZE), _FIELDS, "audit state")
        if obj["format"] != FORMAT:
            raise FormatError(f"audit state: format must be {FORMAT!r}")
        bootstrap = _hex32(obj["bootstrap"], "audit state.bootstrap")
        origin = expect_str(obj["origin"], "audit state.origin")
        size = expect_int(obj["size"], "audit state.size", 0, _MAX_INT)
        root = _hash(obj["root"], "audit state.root")
        frontier = _hashes(obj["frontier"], "audit state.frontier", 64)
        if len(frontier) != size.bit_count() or frontier_root(frontier) != root:
            raise FormatError("audit state: the frontier does not give the saved root of the saved size")
        if not isinstance(obj["tiles"], list) or len(obj["tiles"]) > 8:
            raise FormatError("audit state.tiles: expected a list of at most 8 levels")
        tiles = tuple(_hashes(level, f"audit state.tiles[{i}]", TILE_WIDTH - 1) for i, level in enumerate(obj["tiles"]))
        expected = []
        level = 0
        while size >> (TILE_HEIGHT * level):
            expected.append((size >> (TILE_HEIGHT * level)) % TILE_WIDTH)
            level += 1
        if [len(t) for t in tiles] != expected:
            raise FormatError(f"audit state.tiles: {[len(t) for t in tiles]} pending hashes per level, a tree of size "
                              f"{size} has {expected}")
        trust_root = None if obj["trust_root"] is None else _b64(obj["trust_root"], "audit state.trust_root")
        if trust_root is not None:
            load_trust_root(trust_root)
        keyset = None if obj["keyset"] is None else _b64(obj["keyset"], "audit state.keyset")
        keyset_index = None if obj["keyset_index"] is None else expect_int(obj["keyset_index"],
                                                                          "audit state.keyset_index", 0, _MAX_INT)
        if (keyset is None) != (keyset_index is None) or (keyset_index is not None and keyset_index >= size):
            raise FormatError("audit state: keyset and keyset_index go together, the index inside the tree")
        if keyset is not None:
            parse_keyset(keyset)
        revoked_list = obj["revoked"]
        if not isinstance(revoked_list, list) or len(revoked_list) > MAX_REVOKED or \
                not all(isinstance(m, str) and m.startswith(("id:", "key:")) and len(m) <= 300 for m in revoked_list) \
                or revoked_list != sorted(set(revoked_list)):
            raise FormatError(f"audit state.revoked: expected at most {MAX_REVOKED} sorted, unique revocation marks")
        fp_obj = obj["first_problem"]
        first_problem = None
        if fp_obj is not None:
            fp = expect_object(fp_obj, {"error", "index", "message"}, "audit state.first_problem")
            index = None if fp["index"] is None else expect_int(fp["index"], "audit state.first_problem.index", 0, _MAX_INT)
            first_problem = FirstProblem(index, expect_str(fp["error"], "audit state.first_problem.error", 64),
                                         expect_str(fp["message"], "audit state.first_problem.message", 4096))
        problems = expect_int(obj["problems"], "audit state.problems", 0, _MAX_INT)
        if (problems == 0) != (first_problem is None):
            raise FormatError("audit state: first_problem is set exactly when problems > 0")
        return cls(bootstrap, origin, size, root, frontier, tiles, trust_root, keyset, keyset_index,
                   frozenset(revoked_list), expect_int(obj["freshness_time"], "audit state.freshness_time", 0, _MAX_INT),
                   expect_int(obj["epochs"], "audit state.epochs", 0, _MAX_INT), problems, first_problem)


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise FormatError(f"{what}: expected base64")
    return b64decode_strict(value, what)


def _hash(value: Any, what: str) -> bytes:
    h = _b64(value, what)
    if len(h) != HASH_SIZE:
        raise FormatError(f"{what}: expected a {HASH_SIZE}-byte hash")
    return h


def _hashes(value: Any, what: str, limit: int) -> tuple[bytes, ...]:
    if not isinstance(value, list) or len(value) > limit:
        raise FormatError(f"{what}: expected a list of at most {limit} hashes")
    return tuple(_hash(v, f"{what}[{i}]") for i, v in enumerate(value))


def _hex32(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or len(value) != 64 or value != value.lower():
        raise FormatError(f"{what}: expected 64 lower-case hex digits")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise FormatError(f"{what}: expected 64 lower-case hex digits") from None


__all__ = ["FORMAT", "MAX_AUDIT_STATE_SIZE", "AuditState", "FirstProblem"]
