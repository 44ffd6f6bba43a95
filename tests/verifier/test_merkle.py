"""RFC 9162 Merkle trees (verifier.merkle, verifier.tiles.tile_node_reader).

Three layers of evidence:

1. Known answers: the 8-leaf reference tree of RFC 6962 / Google's certificate-transparency tests as
   published in transparency-dev/merkle (``testonly/constants.go``: leaf inputs, every complete-subtree
   hash and every root) and its hand-written inclusion and consistency proofs (``proof/verify_test.go``).
2. An independent, naive, recursive transcription of RFC 9162 §2.1.1 MTH, §2.1.3.1 PATH and §2.1.4.1
   PROOF/SUBPROOF written here, against which *every* proof for every tree size 1..128 is compared.
3. Attacks on verification: every single-bit corruption of a proof hash, the leaf hash or a root; the
   probes of transparency-dev's ``corruptInclusionProof`` / ``corruptConsistencyProof`` (wrong index,
   wrong size, trailing and preceding garbage, swapped roots...); bad arguments.
"""

from __future__ import annotations

import functools
import hashlib
import random

import pytest

from verifier.errors import ConsistencyError, FormatError, ProofError
from verifier.merkle import (
    EMPTY_ROOT,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    leaves_reader,
    node_hash,
    root,
    tree_root,
    verify_consistency,
    verify_inclusion,
)
from verifier.tiles import TILE_HEIGHT, TileRef, tile_node_reader, tile_width_at


def h(text: str) -> bytes:
    return bytes.fromhex(text)


# --- transparency-dev/merkle testonly/constants.go -------------------------------------------------

REFERENCE_INPUTS = [h(x) for x in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                   "606162636465666768696a6b6c6d6e6f")]

REFERENCE_NODES = [
    [h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
     h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
     h("0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7"),
     h("07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7"),
     h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
     h("4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658"),
     h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
     h("46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1")],
    [h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
     h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
     h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
     h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0")],
    [h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
     h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")],
    [h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")],
]

#: Root of the tree of the first n reference leaves, n = 0..8.
REFERENCE_ROOTS = [
    h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    h("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    h("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
    h("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
    h("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
    h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
]

# --- transparency-dev/merkle proof/verify_test.go (leaf numbers there are 1-based) -----------------

#: (0-based index, tree size, proof)
REFERENCE_INCLUSION = [
    (0, 1, []),
    (0, 8, [h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")]),
    (5, 8, [h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")]),
    (2, 3, [h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")]),
    (1, 5, [h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b")]),
]

#: (size1, size2, proof)
REFERENCE_CONSISTENCY = [
    (1, 1, []),
    (1, 8, [h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")]),
    (6, 8, [h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")]),
    (2, 5, [h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b")]),
    (6, 7, [h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")]),
]

SOME_HASH = h("abacaba000000000000000000000000000000000000000000060061e00123456")


# --- a naive RFC 9162 reference, written from the RFC text ----------------------------------------


def _split(n: int) -> int:
    """RFC 9162: k is the largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


class NaiveTree:
    """MTH, PATH and PROOF exactly as the recursive definitions in RFC 9162 §2.1 (memoised MTH)."""

    def __init__(self, leaf_hashes: list[bytes]) -> None:
        self.leaves = leaf_hashes
        self._memo: dict[tuple[int, int], bytes] = {}

    def mth(self, lo: int, hi: int) -> bytes:
        n = hi - lo
        if n == 0:
            return hashlib.sha256(b"").digest()
        if n == 1:
            return self.leaves[lo]
        if (lo, hi) not in self._memo:
            k = _split(n)
            self._memo[(lo, hi)] = hashlib.sha256(b"\x01" + self.mth(lo, lo + k) + self.mth(lo + k, hi)).digest()
        return self._memo[(lo, hi)]

    def path(self, m: int, lo: int, hi: int) -> list[bytes]:
        n = hi - lo
        if n == 1:
            return []
        k = _split(n)
        if m < k:
            return self.path(m, lo, lo + k) + [self.mth(lo + k, hi)]
        return self.path(m - k, lo + k, hi) + [self.mth(lo, lo + k)]

    def proof(self, m: int, n: int) -> list[bytes]:
        return self._subproof(m, 0, n, True)

    def _subproof(self, m: int, lo: int, hi: int, b: bool) -> list[bytes]:
        n = hi - lo
        if m == n:
            return [] if b else [self.mth(lo, hi)]
        k = _split(n)
        if m <= k:
            return self._subproof(m, lo, lo + k, b) + [self.mth(lo + k, hi)]
        return self._subproof(m - k, lo + k, hi, False) + [self.mth(lo, lo + k)]


def naive_path_length(m: int, n: int) -> int:
    length = 0
    while n > 1:
        k = _split(n)
        m, n = (m, k) if m < k else (m - k, n - k)
        length += 1
    return length


def naive_proof_length(m: int, n: int) -> int:
    length, b = 0, True
    while m != n:
        k = _split(n)
        if m <= k:
            n = k
        else:
            m, n, b = m - k, n - k, False
        length += 1
    return length + (0 if b else 1)


MAX_SIZE = 128
LEAF_HASHES = [leaf_hash(d) for d in REFERENCE_INPUTS] + [leaf_hash(b"fleetkeys leaf %d" % i)
                                                         for i in range(len(REFERENCE_INPUTS), 1 << 17)]
NAIVE = NaiveTree(LEAF_HASHES[:MAX_SIZE])
FULL_READER = leaves_reader(LEAF_HASHES[:MAX_SIZE])


def bounded_reader(size: int):
    """The in-memory reader, refusing any node that is not a complete subtree of the tree of ``size``."""

    def node(level: int, index: int) -> bytes:
        assert (index + 1) << level <= size, f"read node ({level}, {index}) outside a tree of size {size}"
        return FULL_READER(level, index)

    return node


def flip(value: bytes, bit: int) -> bytes:
    out = bytearray(value)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def accepts_inclusion(index, size, leaf, proof, root_hash) -> bool:
    try:
        verify_inclusion(index, size, leaf, proof, root_hash)
    except ProofError:
        return False
    return True


def accepts_consistency(size1, size2, proof, root1, root2) -> bool:
    try:
        verify_consistency(size1, size2, proof, root1, root2)
    except ProofError:
        return False
    return True


# --- 1. known answers -----------------------------------------------------------------------------


def test_reference_leaf_and_node_hashes():
    node = leaves_reader([leaf_hash(d) for d in REFERENCE_INPUTS])
    for level, hashes in enumerate(REFERENCE_NODES):
        for index, expected in enumerate(hashes):
            assert node(level, index) == expected, (level, index)
    assert node_hash(REFERENCE_NODES[0][0], REFERENCE_NODES[0][1]) == REFERENCE_NODES[1][0]


@pytest.mark.parametrize("size", range(9))
def test_reference_roots(size):
    leaves = [leaf_hash(d) for d in REFERENCE_INPUTS[:size]]
    assert root(leaves) == REFERENCE_ROOTS[size]
    assert tree_root(size, leaves_reader(leaves)) == REFERENCE_ROOTS[size]


def test_empty_tree_root_is_sha256_of_nothing():
    assert EMPTY_ROOT == hashlib.sha256(b"").digest() == REFERENCE_ROOTS[0]
    assert root([]) == EMPTY_ROOT


@pytest.mark.parametrize(("index", "size", "expected"), REFERENCE_INCLUSION)
def test_reference_inclusion_proofs(index, size, expected):
    leaves = [leaf_hash(d) for d in REFERENCE_INPUTS[:size]]
    assert inclusion_proof(index, size, leaves_reader(leaves)) == expected
    verify_inclusion(index, size, leaves[index], expected, REFERENCE_ROOTS[size])


@pytest.mark.parametrize(("size1", "size2", "expected"), REFERENCE_CONSISTENCY)
def test_reference_consistency_proofs(size1, size2, expected):
    leaves = [leaf_hash(d) for d in REFERENCE_INPUTS[:size2]]
    assert consistency_proof(size1, size2, leaves_reader(leaves)) == expected
    verify_consistency(size1, size2, expected, REFERENCE_ROOTS[size1], REFERENCE_ROOTS[size2])


# --- 2. every proof of every small tree against the RFC text --------------------------------------


def test_roots_of_every_size_match_naive_mth():
    for size in range(MAX_SIZE + 1):
        expected = NAIVE.mth(0, size)
        assert root(LEAF_HASHES[:size]) == expected, size
        assert tree_root(size, bounded_reader(size)) == expected, size


def inclusion_probes(index, size, leaf, proof, root_hash):
    """transparency-dev's corruptInclusionProof, plus a few more."""
    probes = [
        ("index - 1", index - 1, size, leaf, proof, root_hash),
        ("index + 1", index + 1, size, leaf, proof, root_hash),
        ("index ^ 2", index ^ 2, size, leaf, proof, root_hash),
        ("size * 2", index, size * 2, leaf, proof, root_hash),
        ("size // 2", index, size // 2, leaf, proof, root_hash),
        ("wrong leaf", index, size, b"WrongLeaf", proof, root_hash),
        ("empty root", index, size, leaf, proof, EMPTY_ROOT),
        ("random root", index, size, leaf, proof, SOME_HASH),
        ("root as leaf", index, size, root_hash, proof, root_hash) if size > 1 else None,
        ("trailing garbage", index, size, leaf, [*proof, b""], root_hash),
        ("trailing root", index, size, leaf, [*proof, root_hash], root_hash),
        ("preceding garbage", index, size, leaf, [b"", *proof], root_hash),
        ("preceding root", index, size, leaf, [root_hash, *proof], root_hash),
    ]
    if proof:
        probes.append(("removed component", index, size, leaf, proof[:-1], root_hash))
    if len(proof) > 1:
        probes.append(("inserted component", index, size, leaf, [proof[0], SOME_HASH, *proof[1:]], root_hash))
        probes.append(("reversed", index, size, leaf, proof[::-1], root_hash))
    return [p for p in probes if p is not None]


def test_every_inclusion_proof_up_to_128_is_rfc9162_path_and_verifies():
    wrong = []
    for size in range(1, MAX_SIZE + 1):
        reader = bounded_reader(size)
        root_hash = NAIVE.mth(0, size)
        for index in range(size):
            proof = inclusion_proof(index, size, reader)
            assert proof == NAIVE.path(index, 0, size), (index, size)
            verify_inclusion(index, size, LEAF_HASHES[index], proof, root_hash)
            for desc, *args in inclusion_probes(index, size, LEAF_HASHES[index], proof, root_hash):
                if accepts_inclusion(*args):
                    wrong.append((index, size, desc))
            # No other leaf of the tree verifies at this index with this proof.
            for other in {0, size - 1, index ^ 1} - {index}:
                if other < size and accepts_inclusion(index, size, LEAF_HASHES[other], proof, root_hash):
                    wrong.append((index, size, f"leaf {other}"))
    assert wrong == []


def consistency_probes(size1, size2, proof, root1, root2):
    """transparency-dev's corruptConsistencyProof, plus a few more."""
    probes = [
        ("size1 - 1", size1 - 1, size2, proof, root1, root2),
        ("size1 + 1", size1 + 1, size2, proof, root1, root2),
        ("size1 ^ 2", size1 ^ 2, size2, proof, root1, root2),
        ("size2 * 2", size1, size2 * 2, proof, root1, root2),
        ("size2 // 2", size1, size2 // 2, proof, root1, root2),
        ("wrong root1", size1, size2, proof, b"WrongRoot", root2),
        ("wrong root2", size1, size2, proof, root1, b"WrongRoot"),
        ("random root1", size1, size2, proof, SOME_HASH, root2),
        ("random root2", size1, size2, proof, root1, SOME_HASH),
        ("swapped roots", size1, size2, proof, root2, root1),
        ("empty proof", size1, size2, [], root1, root2),
        ("trailing garbage", size1, size2, [*proof, b""], root1, root2),
        ("trailing root1", size1, size2, [*proof, root1], root1, root2),
        ("trailing root2", size1, size2, [*proof, root2], root1, root2),
        ("preceding garbage", size1, size2, [b"", *proof], root1, root2),
        ("preceding root1", size1, size2, [root1, *proof], root1, root2),
        ("preceding root2", size1, size2, [root2, *proof], root1, root2),
        ("preceding proof[0]", size1, size2, [proof[0], *proof], root1, root2),
        ("truncated proof", size1, size2, proof[:-1], root1, root2),
    ]
    if len(proof) > 1:
        probes.append(("reversed", size1, size2, proof[::-1], root1, root2))
    return probes


def test_every_consistency_proof_up_to_128_is_rfc9162_proof_and_verifies():
    wrong = []
    for size2 in range(1, MAX_SIZE + 1):
        reader = bounded_reader(size2)
        root2 = NAIVE.mth(0, size2)
        for size1 in range(1, size2 + 1):
            root1 = NAIVE.mth(0, size1)
            proof = consistency_proof(size1, size2, reader)
            assert proof == NAIVE.proof(size1, size2), (size1, size2)
            verify_consistency(size1, size2, proof, root1, root2)
            if size1 == size2:
                continue
            for desc, *args in consistency_probes(size1, size2, proof, root1, root2):
                if accepts_consistency(*args):
                    wrong.append((size1, size2, desc))
            # A fork: the old root of a tree that differs in one leaf is not consistent.
            forked = list(NAIVE.leaves[:size1])
            forked[size1 - 1] = SOME_HASH
            if accepts_consistency(size1, size2, proof, root(forked), root2):
                wrong.append((size1, size2, "forked old tree"))
    assert wrong == []


def test_proof_lengths_for_huge_trees_match_the_rfc_and_verify():
    """A tree whose leaves are all equal has O(1) node hashes at any size, so proofs up to 2**63 - 1
    leaves (63 hashes) can be generated and verified; lengths are checked against the recursion."""
    level_hash = [leaf_hash(b"same")]
    for _ in range(64):
        level_hash.append(node_hash(level_hash[-1], level_hash[-1]))

    def node(level: int, index: int) -> bytes:
        return level_hash[level]

    rng = random.Random(9162)
    biggest = (1 << 63) - 1
    cases = [(0, biggest), (biggest - 1, biggest), (1 << 62, biggest), (0, 1 << 62), ((1 << 62) - 1, 1 << 62)]
    cases += [(rng.randrange(n), n) for n in (rng.randrange(1, biggest + 1) for _ in range(200))]
    for index, size in cases:
        proof = inclusion_proof(index, size, node)
        assert len(proof) == naive_path_length(index, size) <= 63
        root_hash = tree_root(size, node)
        verify_inclusion(index, size, level_hash[0], proof, root_hash)
        with pytest.raises(ProofError):
            verify_inclusion(index, size, level_hash[0], [*proof, level_hash[0]], root_hash)
    assert len(inclusion_proof(0, biggest, node)) == 63
    for size1, size2 in [(1, biggest), (biggest - 1, biggest), (1 << 62, biggest)] + [
            sorted((rng.randrange(1, biggest + 1), rng.randrange(1, biggest + 1))) for _ in range(200)]:
        proof = consistency_proof(size1, size2, node)
        assert len(proof) == naive_proof_length(size1, size2)
        verify_consistency(size1, size2, proof, tree_root(size1, node), tree_root(size2, node))


# --- 3. single-bit corruptions --------------------------------------------------------------------

#: Sizes whose every index is corrupted bit by bit; every other size gets its first, middle and last index.
FLIP_ALL_INDEXES = (1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 16, 17, 31, 32, 33)


def _inclusion_flip_failures(index: int, size: int) -> list:
    root_hash = NAIVE.mth(0, size)
    leaf = LEAF_HASHES[index]
    proof = inclusion_proof(index, size, FULL_READER)
    wrong = []
    for bit in range(256):
        if accepts_inclusion(index, size, flip(leaf, bit), proof, root_hash):
            wrong.append(("leaf", bit))
        if accepts_inclusion(index, size, leaf, proof, flip(root_hash, bit)):
            wrong.append(("root", bit))
        for i, p in enumerate(proof):
            if accepts_inclusion(index, size, leaf, [*proof[:i], flip(p, bit), *proof[i + 1:]], root_hash):
                wrong.append((f"proof[{i}]", bit))
    return wrong


def test_every_single_bit_corruption_of_an_inclusion_proof_is_rejected():
    wrong = []
    for size in range(1, MAX_SIZE + 1):
        indexes = range(size) if size in FLIP_ALL_INDEXES else {0, size // 2, size - 1}
        for index in indexes:
            wrong += [(index, size, *w) for w in _inclusion_flip_failures(index, size)]
    assert wrong == []


def _consistency_flip_failures(size1: int, size2: int) -> list:
    root1, root2 = NAIVE.mth(0, size1), NAIVE.mth(0, size2)
    proof = consistency_proof(size1, size2, FULL_READER)
    wrong = []
    for bit in range(256):
        if accepts_consistency(size1, size2, proof, flip(root1, bit), root2):
            wrong.append(("root1", bit))
        if accepts_consistency(size1, size2, proof, root1, flip(root2, bit)):
            wrong.append(("root2", bit))
        for i, p in enumerate(proof):
            if accepts_consistency(size1, size2, [*proof[:i], flip(p, bit), *proof[i + 1:]], root1, root2):
                wrong.append((f"proof[{i}]", bit))
    return wrong


def test_every_single_bit_corruption_of_a_consistency_proof_is_rejected():
    wrong = []
    for size2 in range(1, MAX_SIZE + 1):
        sizes1 = range(1, size2 + 1) if size2 in FLIP_ALL_INDEXES else {1, size2 // 2 or 1, size2 - 1 or 1, size2}
        for size1 in sizes1:
            wrong += [(size1, size2, *w) for w in _consistency_flip_failures(size1, size2)]
    assert wrong == []


# --- bad arguments --------------------------------------------------------------------------------

GOOD_INDEX, GOOD_SIZE = 5, 13
GOOD_LEAF = LEAF_HASHES[GOOD_INDEX]
GOOD_PROOF = NAIVE.path(GOOD_INDEX, 0, GOOD_SIZE)
GOOD_ROOT = NAIVE.mth(0, GOOD_SIZE)


def test_good_arguments_verify():
    verify_inclusion(GOOD_INDEX, GOOD_SIZE, GOOD_LEAF, GOOD_PROOF, GOOD_ROOT)


@pytest.mark.parametrize(("desc", "args"), [
    ("index == size", (GOOD_SIZE, GOOD_SIZE, GOOD_LEAF, GOOD_PROOF, GOOD_ROOT)),
    ("index > size", (GOOD_SIZE + 7, GOOD_SIZE, GOOD_LEAF, GOOD_PROOF, GOOD_ROOT)),
    ("negative index", (-1, GOOD_SIZE, GOOD_LEAF, GOOD_PROOF, GOOD_ROOT)),
    ("very negative index", (-(1 << 64), GOOD_SIZE, GOOD_LEAF, GOOD_PROOF, GOOD_ROOT)),
    ("size 0", (0, 0, GOOD_LEAF, [], EMPTY_ROOT)),
    ("negative size", (0, -1, GOOD_LEAF, [], GOOD_ROOT)),
    ("index not an int", ("5", GOOD_SIZE, GOOD_LEAF, GOOD_PROOF, GOOD_ROOT)),
    ("size not an int", (GOOD_INDEX, 13.0, GOOD_LEAF, GOOD_PROOF, GOOD_ROOT)),
    ("leaf 31 bytes", (GOOD_INDEX, GOOD_SIZE, GOOD_LEAF[:31], GOOD_PROOF, GOOD_ROOT)),
    ("leaf 33 bytes", (GOOD_INDEX, GOOD_SIZE, GOOD_LEAF + b"\0", GOOD_PROOF, GOOD_ROOT)),
    ("leaf empty", (GOOD_INDEX, GOOD_SIZE, b"", GOOD_PROOF, GOOD_ROOT)),
    ("leaf not bytes", (GOOD_INDEX, GOOD_SIZE, GOOD_LEAF.hex(), GOOD_PROOF, GOOD_ROOT)),
    ("root 31 bytes", (GOOD_INDEX, GOOD_SIZE, GOOD_LEAF, GOOD_PROOF, GOOD_ROOT[:31])),
    ("root 64 bytes", (GOOD_INDEX, GOOD_SIZE, GOOD_LEAF, GOOD_PROOF, GOOD_ROOT * 2)),
    ("root None", (GOOD_INDEX, GOOD_SIZE, GOOD_LEAF, GOOD_PROOF, None)),
    ("proof hash 31 bytes", (GOOD_INDEX, GOOD_SIZE, GOOD_LEAF, [GOOD_PROOF[0][:31], *GOOD_PROOF[1:]], GOOD_ROOT)),
    ("proof hash 33 bytes", (GOOD_INDEX, GOOD_SIZE, GOOD_LEAF, [*GOOD_PROOF[:-1], GOOD_PROOF[-1] + b"\0"], GOOD_ROOT)),
    ("proof hash as str", (GOOD_INDEX, GOOD_SIZE, GOOD_LEAF, [GOOD_PROOF[0].hex(), *GOOD_PROOF[1:]], GOOD_ROOT)),
    ("proof too long", (GOOD_INDEX, GOOD_SIZE, GOOD_LEAF, [*GOOD_PROOF, SOME_HASH], GOOD_ROOT)),
    ("proof too short", (GOOD_INDEX, GOOD_SIZE, GOOD_LEAF, GOOD_PROOF[:-1], GOOD_ROOT)),
    ("proof empty", (GOOD_INDEX, GOOD_SIZE, GOOD_LEAF, [], GOOD_ROOT)),
    ("proof of 65 hashes", (GOOD_INDEX, GOOD_SIZE, GOOD_LEAF, [SOME_HASH] * 65, GOOD_ROOT)),
    ("size 1 with a proof", (0, 1, LEAF_HASHES[0], [SOME_HASH], LEAF_HASHES[0])),
    ("size 1, leaf is not the root", (0, 1, LEAF_HASHES[0], [], LEAF_HASHES[1])),
])
def test_inclusion_bad_arguments_raise_proof_error(desc, args):
    with pytest.raises(ProofError):
        verify_inclusion(*args)


def test_inclusion_mismatch_message_names_expected_and_computed_roots():
    with pytest.raises(ProofError) as exc:
        verify_inclusion(GOOD_INDEX, GOOD_SIZE, GOOD_LEAF, GOOD_PROOF, SOME_HASH)
    assert SOME_HASH.hex() in str(exc.value) and GOOD_ROOT.hex() in str(exc.value)


R5, R8 = NAIVE.mth(0, 5), NAIVE.mth(0, 8)
P58 = NAIVE.proof(5, 8)

#: Bad consistency arguments whose rejection is a ConsistencyError (sizes, lengths, roots).
BAD_CONSISTENCY = [
    ("size1 = 0", (0, 8, P58, EMPTY_ROOT, R8)),
    ("size1 = 0, size2 = 0", (0, 0, [], EMPTY_ROOT, EMPTY_ROOT)),
    ("size1 negative", (-5, 8, P58, R5, R8)),
    ("size1 > size2", (8, 5, P58, R8, R5)),
    ("size1 > size2, empty proof", (6, 5, [], R5, R5)),
    ("sizes not ints", (5.0, 8, P58, R5, R8)),
    ("proof too long", (5, 8, [*P58, SOME_HASH], R5, R8)),
    ("proof too short", (5, 8, P58[:-1], R5, R8)),
    ("proof empty", (5, 8, [], R5, R8)),
    ("equal sizes, different roots (fork)", (8, 8, [], R8, SOME_HASH)),
    ("equal sizes, equal roots, non-empty proof", (8, 8, [SOME_HASH], R8, R8)),
    ("equal sizes, roots of other sizes", (5, 5, [], R5, R8)),
    ("old root of another tree", (5, 8, P58, SOME_HASH, R8)),
    ("new root of another tree", (5, 8, P58, R5, SOME_HASH)),
]

#: Bad hash lengths and types.
BAD_CONSISTENCY_HASHES = [
    ("root1 31 bytes", (5, 8, P58, R5[:31], R8)),
    ("root2 33 bytes", (5, 8, P58, R5, R8 + b"\0")),
    ("root2 not bytes", (5, 8, P58, R5, R8.hex())),
    ("proof hash 31 bytes", (5, 8, [P58[0][:31], *P58[1:]], R5, R8)),
    ("proof hash None", (5, 8, [None, *P58[1:]], R5, R8)),
]


@pytest.mark.parametrize(("desc", "args"), BAD_CONSISTENCY)
def test_consistency_bad_arguments_raise_consistency_error(desc, args):
    with pytest.raises(ConsistencyError):
        verify_consistency(*args)


@pytest.mark.parametrize(("desc", "args"), BAD_CONSISTENCY_HASHES)
def test_consistency_bad_hashes_raise_proof_error(desc, args):
    with pytest.raises(ProofError):
        verify_consistency(*args)


def test_consistency_bad_hashes_raise_consistency_error_as_documented():
    raised = {}
    for desc, args in BAD_CONSISTENCY_HASHES:
        with pytest.raises(ProofError) as exc:
            verify_consistency(*args)
        raised[desc] = type(exc.value).__name__
    assert raised == {desc: "ConsistencyError" for desc, _ in BAD_CONSISTENCY_HASHES}


def test_consistency_equal_sizes_equal_roots_is_consistent():
    verify_consistency(8, 8, [], R8, R8)
    verify_consistency(1, 1, [], LEAF_HASHES[0], LEAF_HASHES[0])


def test_fork_message_says_the_log_forked():
    with pytest.raises(ConsistencyError, match="forked"):
        verify_consistency(8, 8, [], R8, SOME_HASH)


@pytest.mark.parametrize(("index", "size"), [(0, 0), (5, 5), (6, 5), (-1, 5)])
def test_inclusion_proof_generation_refuses_bad_index(index, size):
    with pytest.raises(ProofError):
        inclusion_proof(index, size, FULL_READER)


@pytest.mark.parametrize(("size1", "size2"), [(0, 5), (0, 0), (6, 5), (-1, 5)])
def test_consistency_proof_generation_refuses_bad_sizes(size1, size2):
    with pytest.raises(ProofError):
        consistency_proof(size1, size2, FULL_READER)


# --- tile-based node reader -----------------------------------------------------------------------


@functools.cache
def tree_levels(size: int) -> list[list[bytes]]:
    levels = [LEAF_HASHES[:size]]
    while len(levels[-1]) > 1:
        prev = levels[-1]
        levels.append([node_hash(prev[i], prev[i + 1]) for i in range(0, len(prev) - 1, 2)])
    return levels


class TileServer:
    """Serves C2SP hash tiles of the tree of the first ``size`` leaves and records every fetch."""

    def __init__(self, size: int, tamper: TileRef | None = None) -> None:
        self.size = size
        self.levels = tree_levels(size)
        self.fetches: list[TileRef] = []
        self.tamper = tamper

    def __call__(self, ref: TileRef) -> bytes:
        assert ref.level is not None
        assert ref.width == tile_width_at(ref.level, ref.index, self.size), ref
        self.fetches.append(ref)
        hashes = self.levels[ref.level * TILE_HEIGHT][ref.index * 256 : ref.index * 256 + ref.width]
        if ref == self.tamper:  # flip one bit in every hash of the tile
            hashes = [flip(x, 0) for x in hashes]
        return b"".join(hashes)


@pytest.fixture(scope="module")
def big_tree():
    return NaiveTree(LEAF_HASHES[:65537]), leaves_reader(LEAF_HASHES[:65537])


@pytest.mark.parametrize("size", [1, 2, 255, 256, 257, 511, 512, 513, 65535, 65536, 65537])
def test_tile_reader_gives_identical_proofs(size, big_tree):
    _, memory = big_tree
    server = TileServer(size)
    tiles = tile_node_reader(size, server)
    assert tree_root(size, tiles) == root(LEAF_HASHES[:size])
    indexes = sorted({0, 1, 2, 254, 255, 256, 257, size // 2, size - 2, size - 1} & set(range(size)))
    for index in indexes:
        assert inclusion_proof(index, size, tiles) == inclusion_proof(index, size, memory)
    for size1 in sorted({1, 2, 255, 256, 257, size // 2, size - 1, size} & set(range(1, size + 1))):
        assert consistency_proof(size1, size, tiles) == consistency_proof(size1, size, memory)
    # Each tile fetched at most once (the reader caches).
    assert len(server.fetches) == len(set(server.fetches))


def test_tile_reader_proofs_match_naive_for_size_65537(big_tree):
    naive, _ = big_tree
    size = 65537
    tiles = tile_node_reader(size, TileServer(size))
    root_hash = naive.mth(0, size)
    for index in (0, 255, 256, 65535, 65536, 40000):
        proof = inclusion_proof(index, size, tiles)
        assert proof == naive.path(index, 0, size)
        verify_inclusion(index, size, LEAF_HASHES[index], proof, root_hash)
    for size1 in (1, 256, 65535, 65536):
        proof = consistency_proof(size1, size, tiles)
        assert proof == naive.proof(size1, size)
        verify_consistency(size1, size, proof, naive.mth(0, size1), root_hash)


def test_tampered_tile_gives_a_proof_that_does_not_verify():
    """Tiles come from an untrusted CDN: any tampered tile that a proof reads yields a proof that the
    signed root refuses."""
    size = 70000
    honest_root = root(LEAF_HASHES[:size])
    for index in (0, 300, 65536, size - 1):
        honest = TileServer(size)
        inclusion_proof(index, size, tile_node_reader(size, honest))
        assert honest.fetches
        for tampered in honest.fetches:
            proof = inclusion_proof(index, size, tile_node_reader(size, TileServer(size, tampered)))
            with pytest.raises(ProofError):
                verify_inclusion(index, size, LEAF_HASHES[index], proof, honest_root)


def test_tile_reader_refuses_incomplete_nodes_and_short_tiles():
    size = 300
    tiles = tile_node_reader(size, TileServer(size))
    with pytest.raises(ProofError):
        tiles(0, 300)  # leaf 300 does not exist yet
    with pytest.raises(ProofError):
        tiles(8, 1)  # the subtree of leaves 256..511 is not complete
    short = tile_node_reader(size, lambda ref: bytes(32 * ref.width - 1))
    with pytest.raises(FormatError):
        short(0, 0)
