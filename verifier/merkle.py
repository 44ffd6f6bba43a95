"""RFC 9162 Merkle tree hashing and proofs over SHA-256.

Hashes (RFC 9162 §2.1.1)::

    MTH({})      = SHA-256()                        (the empty tree)
    leaf_hash(d) = SHA-256(0x00 || d)
    node_hash(l, r) = SHA-256(0x01 || l || r)
    MTH(D[n])    = node_hash(MTH(D[0:k]), MTH(D[k:n]))  with k the largest power of two < n

Verification (:func:`verify_inclusion`, :func:`verify_consistency`) follows RFC 9162 §2.1.3.2 and
§2.1.4.2 and, before running the algorithm, rejects: hashes that are not 32 bytes, ``index >= size``,
``size1 == 0``, ``size1 > size2``, and a proof whose length differs from the one the sizes imply. Both
return ``None`` and raise :class:`~verifier.errors.ProofError` on any failure; a mismatch message
carries the expected and the computed root.

Proof generation (server side) reads *complete* subtree hashes through a :data:`NodeReader`
``node(level, index)`` = MTH of leaves ``[index * 2**level, (index + 1) * 2**level)``. A log that
stores every complete subtree hash (as C2SP tiles do) answers any proof without the leaves;
:func:`leaves_reader` builds one in memory from a list of leaf hashes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from .errors import ConsistencyError, ProofError

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
#: Proof length bound: a tree of at most 2**64 - 1 leaves needs at most 64 hashes.
MAX_PROOF_HASHES = 64

NodeReader = Callable[[int, int], bytes]
"""``node(level, index) -> bytes``: hash of the complete subtree of ``2**level`` leaves at ``index``."""


def leaf_hash(data: bytes) -> bytes:
    """Return ``SHA-256(0x00 || data)``."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return ``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _largest_power_of_two_below(n: int) -> int:
    """Largest power of two strictly less than ``n`` (precondition: n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """Return the RFC 9162 Merkle Tree Hash of a list of leaf hashes (``EMPTY_ROOT`` for none)."""
    level = list(leaf_hashes)
    if not level:
        return EMPTY_ROOT
    # Pairwise reduction gives MTH: an odd last node is carried up unchanged, which is exactly the
    # "largest power of two" split of RFC 9162 applied bottom-up.
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def leaves_reader(leaf_hashes: Sequence[bytes]) -> NodeReader:
    """Build a :data:`NodeReader` over an in-memory list of leaf hashes (all complete subtrees)."""
    levels: list[list[bytes]] = [list(leaf_hashes)]
    while len(levels[-1]) > 1:
        prev = levels[-1]
        levels.append([node_hash(prev[i], prev[i + 1]) for i in range(0, len(prev) - 1, 2)])

    def node(level: int, index: int) -> bytes:
        return levels[level][index]

    return node


def subtree_hash(start: int, end: int, node: NodeReader) -> bytes:
    """MTH of leaves ``[start, end)``; precondition: ``start`` is a multiple of a power of two
    ``>= end - start`` (true of every subtree a proof needs), and ``end > start``."""
    n = end - start
    if n & (n - 1) == 0 and start % n == 0:
        return node(n.bit_length() - 1, start // n)
    k = _largest_power_of_two_below(n)
    return node_hash(subtree_hash(start, start + k, node), subtree_hash(start + k, end, node))


def tree_root(size: int, node: NodeReader) -> bytes:
    """Root of the tree of the first ``size`` leaves, from complete-subtree hashes."""
    if size == 0:
        return EMPTY_ROOT
    return subtree_hash(0, size, node)


def _inclusion_length(index: int, size: int) -> int:
    inner = (index ^ (size - 1)).bit_length()
    border = (index >> inner).bit_count()
    return inner + border


def _consistency_length(size1: int, size2: int) -> int:
    if size1 == size2:
        return 0
    length = _inclusion_length(size1 - 1, size2)
    shift = (size1 & -size1).bit_length() - 1
    # The nodes below the lowest set bit of size1 are shared with the old tree and not sent.
    # When size1 is not itself a power of two, the proof also carries that shared subtree's hash.
    return length - shift + (0 if size1 == 1 << shift else 1)


def inclusion_proof(index: int, size: int, node: NodeReader) -> list[bytes]:
    """Server side: RFC 9162 §2.1.3.1 PATH(index, D[size]), bottom-up.

    Raises :class:`ProofError` if ``not 0 <= index < size``.
    """
    if not 0 <= index < size:
        raise ProofError(f"inclusion proof: index {index} is not below tree size {size}")
    proof: list[bytes] = []
    start, end, m = 0, size, index
    while end - start > 1:
        k = _largest_power_of_two_below(end - start)
        if m < k:
            proof.append(subtree_hash(start + k, end, node))
            end = start + k
        else:
            proof.append(subtree_hash(start, start + k, node))
            start, m = start + k, m - k
    proof.reverse()
    return proof


def consistency_proof(size1: int, size2: int, node: NodeReader) -> list[bytes]:
    """Server side: RFC 9162 §2.1.4.1 PROOF(size1, D[size2]), bottom-up.

    Raises :class:`ProofError` unless ``0 < size1 <= size2``. Equal sizes give an empty proof.
    """
    if not 0 < size1 <= size2:
        raise ProofError(f"consistency proof: need 0 < size1 <= size2, got size1={size1} size2={size2}")
    proof: list[bytes] = []
    start, end, m, whole = 0, size2, size1, True
    while m != end - start:
        k = _largest_power_of_two_below(end - start)
        if m <= k:
            proof.append(subtree_hash(start + k, end, node))
            end = start + k
        else:
            proof.append(subtree_hash(start, start + k, node))
            start, m, whole = start + k, m - k, False
    if not whole:
        proof.append(subtree_hash(start, end, node))
    proof.reverse()
    return proof


def _check_hash(value: bytes, what: str, error: type[ProofError] = ProofError) -> None:
    if not isinstance(value, bytes | bytearray) or len(value) != HASH_SIZE:
        found = len(value) if isinstance(value, bytes | bytearray) else type(value).__name__
        raise error(f"{what}: expected a {HASH_SIZE}-byte hash, found {found}")


def verify_inclusion(index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``size`` leaves with ``root``.

    RFC 9162 §2.1.3.2. Preconditions checked first: ``0 <= index < size``, every hash 32 bytes,
    ``len(proof)`` equal to what ``(index, size)`` implies. Returns ``None``; raises
    :class:`ProofError` on any failure.
    """
    if not (isinstance(index, int) and isinstance(size, int)) or not 0 <= index < size:
        raise ProofError(f"inclusion proof: index {index} is not below tree size {size}")
    _check_hash(leaf_hash, "inclusion proof: leaf hash")
    _check_hash(root, "inclusion proof: root")
    expected = _inclusion_length(index, size)
    if len(proof) != expected:
        raise ProofError(f"inclusion proof: expected {expected} hashes for index {index} in size {size}, "
                         f"found {len(proof)}")
    for i, p in enumerate(proof):
        _check_hash(p, f"inclusion proof: hash {i}")
    fn, sn, r = index, size - 1, bytes(leaf_hash)
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof: longer than the path to the root")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof: shorter than the path to the root")
    if r != root:
        raise ProofError(f"inclusion proof: computed root {r.hex()} but expected root {bytes(root).hex()} "
                         f"(index {index}, size {size})")


def verify_consistency(size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes) -> None:
    """Check that the tree (``size1``, ``root1``) is a prefix of the tree (``size2``, ``root2``).

    RFC 9162 §2.1.4.2. Preconditions checked first: ``0 < size1 <= size2``, every hash 32 bytes, and
    ``len(proof)`` equal to what the sizes imply (0 when ``size1 == size2``, then the roots must be
    equal). Returns ``None``; raises :class:`ConsistencyError` (a :class:`ProofError`) on any failure.
    """
    if not (isinstance(size1, int) and isinstance(size2, int)) or not 0 < size1 <= size2:
        raise ConsistencyError(f"consistency proof: need 0 < size1 <= size2, got size1={size1} size2={size2}")
    _check_hash(root1, "consistency proof: first root", ConsistencyError)
    _check_hash(root2, "consistency proof: second root", ConsistencyError)
    expected = _consistency_length(size1, size2)
    if len(proof) != expected:
        raise ConsistencyError(f"consistency proof: expected {expected} hashes from size {size1} to {size2}, "
                               f"found {len(proof)}")
    for i, p in enumerate(proof):
        _check_hash(p, f"consistency proof: hash {i}", ConsistencyError)
    if size1 == size2:
        if root1 != root2:
            raise ConsistencyError(f"consistency proof: same size {size1} but roots differ "
                                   f"({bytes(root1).hex()} != {bytes(root2).hex()}): the log forked")
        return
    path = list(proof)
    if size1 & (size1 - 1) == 0:
        path.insert(0, bytes(root1))
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ConsistencyError("consistency proof: longer than the path to the root")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ConsistencyError("consistency proof: shorter than the path to the root")
    if fr != root1:
        raise ConsistencyError(f"consistency proof: computed old root {fr.hex()} but expected "
                               f"{bytes(root1).hex()} (size {size1})")
    if sr != root2:
        raise ConsistencyError(f"consistency proof: computed new root {sr.hex()} but expected "
                               f"{bytes(root2).hex()} (size {size2})")


# -- the frontier (compact range) of a tree: append leaves without any proof --------------------------


def frontier_heights(size: int) -> list[int]:
    """Heights of the perfect subtrees a ``size``-leaf tree decomposes into, lowest first (its set bits)."""
    return [h for h in range(size.bit_length()) if size >> h & 1]


def frontier_root(frontier: Sequence[bytes]) -> bytes:
    """The RFC 9162 root of a tree from its frontier (subtree roots, lowest height first)."""
    if not frontier:
        return EMPTY_ROOT
    acc = frontier[0]
    for left in frontier[1:]:
        acc = hashlib.sha256(b"\x01" + left + acc).digest()
    return acc


def frontier_append(size: int, frontier: Sequence[bytes], leaf_hashes: Sequence[bytes]) -> tuple[bytes, ...]:
    """The frontier after appending ``leaf_hashes`` to the ``size``-leaf tree whose frontier is ``frontier``.

    Precondition: ``len(frontier) == size.bit_count()``. The new root is :func:`frontier_root` of the
    result; comparing it with a signed root verifies, at once, that the old tree is a prefix of the
    new one (consistency) and that the appended leaves are exactly the new tree's last leaves
    (inclusion), with no proof hashes at all.
    """
    heights = frontier_heights(size)
    if len(frontier) != len(heights):
        raise ProofError(f"frontier of a {size}-leaf tree must hold {len(heights)} hashes, found {len(frontier)}")
    stack = dict(zip(heights, frontier, strict=True))
    sha = hashlib.sha256
    for leaf in leaf_hashes:
        node, h = leaf, 0
        while size >> h & 1:
            node = sha(b"\x01" + stack.pop(h) + node).digest()
            h += 1
        stack[h] = node
        size += 1
    return tuple(stack[h] for h in sorted(stack))


def frontier_of(size: int, node: NodeReader) -> tuple[bytes, ...]:
    """The frontier of the ``size``-leaf tree whose complete-subtree hashes ``node`` reads."""
    out, start = [], size
    for h in frontier_heights(size):
        start -= 1 << h
        out.append(node(h, start >> h))
    return tuple(out)


__all__ = [
    "frontier_append",
    "frontier_heights",
    "frontier_of",
    "frontier_root",
    "HASH_SIZE",
    "EMPTY_ROOT",
    "NodeReader",
    "leaf_hash",
    "node_hash",
    "root",
    "leaves_reader",
    "subtree_hash",
    "tree_root",
    "inclusion_proof",
    "consistency_proof",
    "verify_inclusion",
    "verify_consistency",
]
