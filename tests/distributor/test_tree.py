"""The tile tree and every proof the log serves, checked against verifier.merkle alone, at sizes that
cross tile boundaries (0, 1, 255, 256, 257, 65536 + 1), on both storage backends."""

from __future__ import annotations

import base64
import random

from distributor.app import create_app, get_service
from distributor.tree import Edge
from tests.distributor.helpers import expected_tiles
from verifier.checkpoint import open_checkpoint
from verifier.merkle import (
    EMPTY_ROOT,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    leaves_reader,
    root,
    verify_consistency,
    verify_inclusion,
)
from verifier.tiles import TILE_WIDTH, decode_entry_bundle, entries_path, tile_path
from verifier.tlogproof import parse_tlog_proof

SIZES = [0, 1, 255, 256, 257, 65537]


def _entry(i: int) -> bytes:
    return b"entry-%d" % i


def _app(db, world, **extra):
    return create_app({"database": db.url, "schema": db.schema, "origin": world.origin, "log_signer": world.log,
                       "freshness_signer": world.freshness, "trust_root": world.trust_root_bytes(), **extra})


def _check_size(client, log, world, entries: list[bytes], earlier: list[int]) -> None:
    size = len(entries)
    leaves = [leaf_hash(e) for e in entries]
    resp = client.get("/checkpoint")
    cp = open_checkpoint(resp.data, world.log_note.verifier).checkpoint
    assert (cp.size, cp.root) == (size, root(leaves))
    # Every hash tile, full and partial, equals the one computed from the leaves.
    for path, data in expected_tiles(leaves).items():
        got = client.get("/" + path)
        assert got.status_code == 200 and got.data == data, path
    # A full tile that does not exist yet, and a partial wider than the tree, are 404.
    assert client.get("/" + tile_path(0, size // TILE_WIDTH + 1)).status_code == 404
    if size % TILE_WIDTH:
        assert client.get("/" + tile_path(0, size // TILE_WIDTH, size % TILE_WIDTH + 1)).status_code == 404
        assert client.get("/" + tile_path(0, size // TILE_WIDTH)).status_code == 404
    # Every entry bundle.
    for n in range((size + TILE_WIDTH - 1) // TILE_WIDTH):
        width = min(TILE_WIDTH, size - n * TILE_WIDTH)
        got = client.get("/" + entries_path(n, width))
        assert decode_entry_bundle(got.data, width) == entries[n * TILE_WIDTH:n * TILE_WIDTH + width]
    # Inclusion proofs: every index of small trees, the tile-boundary indexes and a sample of big ones.
    node = leaves_reader(leaves)
    picks = range(size) if size <= 300 else sorted({0, 1, 254, 255, 256, 257, size - 2, size - 1,
                                                      *random.Random(size).sample(range(size), 40)})
    for i in picks:
        proof = parse_tlog_proof(log.prove_index(i).proof)
        assert proof.index == i and list(proof.hashes) == inclusion_proof(i, size, node)
        verify_inclusion(i, size, leaves[i], proof.hashes, cp.root)
        assert open_checkpoint(proof.checkpoint, world.log_note.verifier).checkpoint == cp
    # Consistency proofs from every earlier size (and from a few sizes inside this step) to this one.
    for old in sorted({*[s for s in earlier if s > 0], 1, size // 2, size - 1, size} - {0}):
        if not 0 < old <= size:
            continue
        resp = client.get(f"/api/v1/proof/consistency?from={old}&to={size}")
        assert resp.status_code == 200, resp.json
        hashes = [base64.b64decode(h) for h in resp.json["proof"]]
        assert hashes == consistency_proof(old, size, node)
        verify_consistency(old, size, hashes, root(leaves[:old]), cp.root)


def test_tile_tree_and_proofs_across_tile_boundaries(db, world):
    app = _app(db, world)
    client = app.test_client()
    log = get_service(app).log
    entries: list[bytes] = []
    done: list[int] = []
    for size in SIZES:
        while len(entries) < size:
            batch = [_entry(i) for i in range(len(entries), min(size, len(entries) + 4096))]
            assert log.append_entries(batch) == len(entries)
            entries += batch
        _check_size(client, log, world, entries, done)
        done.append(size)
    assert log.self_check().size == 65537
    get_service(app).close()


def test_empty_log_has_a_signed_checkpoint_of_the_empty_tree(db, world):
    app = _app(db, world)
    resp = app.test_client().get("/checkpoint")
    cp = open_checkpoint(resp.data, world.log_note.verifier).checkpoint
    assert (cp.size, cp.root) == (0, EMPTY_ROOT)
    assert app.test_client().get("/api/v1/proof/consistency?from=0").status_code == 400
    get_service(app).close()


def test_edge_extension_matches_merkle_for_any_batching():
    """The in-memory right edge (what appends extend) agrees with verifier.merkle for odd batch sizes."""
    rng = random.Random(7)
    leaves = [leaf_hash(b"%d" % i) for i in range(70_000)]
    edge, stored, pos = Edge.empty(), {}, 0
    for n in [1, 1, 253, 1, 255, 256, 257, 3000, 61_765, 7, *[rng.randrange(1, 600) for _ in range(8)]]:
        edge, changed = edge.extend(leaves[pos:pos + n])
        pos += n
        for key, data in changed.items():
            assert data.startswith(stored.get(key, b"")), "a stored tile may only grow"
            stored[key] = data
        assert edge.root() == root(leaves[:pos])
        assert Edge.load(pos, lambda lvl, i: stored.get((lvl, i))) == edge
