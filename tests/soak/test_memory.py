"""The publish and read path holds no memory per request: tracemalloc over 400 publishes of bundles of
one size (and a checkpoint, a latest-bundle read and a tile read after each) after a warm-up.

The only Python allocation that may grow is the log's cached tail entry bundle (``_State.tail``: the
entries of the last, incomplete bundle, at most 255 of them), bounded by design; everything else must
come back. This is the precise leak check behind the soak's RSS bound (tests/soak/test_soak.py).
"""

from __future__ import annotations

import gc
import hashlib
import tracemalloc

from distributor.log import Log
from distributor.storage import open_storage
from tests.factory import World, fleet
from verifier.tiles import TileRef

#: Growth allowed beyond the tail bundle: interned strings, caches of bounded size (64 KiB).
SLACK = 64 * 1024


def test_the_publish_and_read_path_holds_nothing_per_request(tmp_path):
    world = World()
    storage = open_storage(f"sqlite:///{tmp_path / 'log.db'}")
    log = Log(storage, origin=world.origin, log_signer=world.log, freshness_signer=world.freshness,
              trust_root=world.trust_root())
    bundles, previous = [], None
    for epoch in range(1, 601):
        keyset = world.keyset(epoch, [fleet(f"f{epoch}-{j}") for j in range(20)], previous=previous)
        previous = hashlib.sha256(keyset).digest()
        bundles.append(world.bundle(keyset, epoch))

    def run(part: list[bytes]) -> None:
        for data in part:
            published = log.publish(data)
            log.checkpoint()
            log.bundle(None)
            log.tile(TileRef(0, published.index // 256, published.index % 256 + 1))

    run(bundles[:200])  # warm-up: every cache and the tail bundle in use
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        tail_before = len(log._state.tail)  # noqa: SLF001 - the one bounded growth allowed
        run(bundles[200:])
        gc.collect()
        after = tracemalloc.take_snapshot()
        tail_after = len(log._state.tail)  # noqa: SLF001
    finally:
        tracemalloc.stop()
        storage.close()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    # Objects allocated before tracing started are not counted when freed, so the bound is the tail
    # bundle as it is now (allocated while tracing), not its change.
    assert grown <= tail_after + SLACK, (
        f"the publish and read path kept {grown} bytes over 400 requests (tail bundle {tail_before} -> {tail_after})")
