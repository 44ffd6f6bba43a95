"""Two writers racing for the same epoch: exactly one wins, on both backends, in-process (separate
connections, as separate processes would have) and over HTTP between replicas."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import requests

from distributor.errors import RuleViolation
from distributor.log import Published
from tests.distributor.conftest import make_log
from tests.distributor.helpers import TOKEN, ServeProcess, verify_read_path, world_data_dir
from tests.distributor.test_log_rules import bundles, digest_of

ROUNDS = 12


def _contenders(world, epoch: int, previous: bytes) -> list[bytes]:
    return [bundles(world, [epoch], previous=previous, fleet_prefix=f"writer{w}")[0] for w in range(2)]


def test_two_publishers_racing_for_one_epoch_exactly_one_wins(db, world):
    logs = [make_log(db.open(), world) for _ in range(2)]
    first = world.chain(1)[0]
    logs[0].publish(first)
    previous = digest_of(first)
    for rnd in range(ROUNDS):
        epoch = rnd + 2
        candidates = _contenders(world, epoch, previous)
        barrier = threading.Barrier(2)
        outcomes: list[object] = [None, None]

        def race(i: int, barrier=barrier, outcomes=outcomes, candidates=candidates) -> None:
            barrier.wait()
            try:
                outcomes[i] = logs[i].publish(candidates[i])
            except RuleViolation as exc:
                outcomes[i] = exc

        threads = [threading.Thread(target=race, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [i for i, o in enumerate(outcomes) if isinstance(o, Published)]
        assert len(winners) == 1, outcomes
        assert outcomes[winners[0]] == Published(epoch - 1, True, epoch=epoch)
        assert "already logged" in str(outcomes[1 - winners[0]])
        previous = digest_of(candidates[winners[0]])
    assert logs[1].self_check().size == ROUNDS + 1
    for log in logs:
        log.storage.close()


def test_replicas_racing_over_http_exactly_one_wins(db, world, tmp_path):
    """Two serve processes over one database (PostgreSQL: real replicas; SQLite: two processes on one
    file) with two workers each; both get a different bundle for the same epoch at once."""
    data = world_data_dir(tmp_path / "data", world)
    args = ["--data", str(data), "--database", db.url_with_schema, "--origin", world.origin, "--trust-root",
            str(data / "trust-root.json"), "--no-static", "--workers", "2"]
    with ServeProcess(args, tmp_path / "a.log") as a, ServeProcess(args, tmp_path / "b.log") as b:
        urls = [a.url, b.url]
        headers = {"Authorization": f"Bearer {TOKEN}"}
        first = world.chain(1)[0]
        assert requests.post(urls[0] + "/api/v1/bundles", data=first, headers=headers, timeout=10).status_code == 201
        previous = digest_of(first)
        with ThreadPoolExecutor(2) as pool:
            for rnd in range(6):
                candidates = _contenders(world, rnd + 2, previous)
                barrier = threading.Barrier(2)

                def post(i: int, candidates=candidates, barrier=barrier) -> requests.Response:
                    barrier.wait()
                    return requests.post(urls[i] + "/api/v1/bundles", data=candidates[i], headers=headers, timeout=30)

                results = list(pool.map(post, range(2)))
                statuses = sorted(r.status_code for r in results)
                assert statuses == [201, 409], [r.text for r in results]
                previous = digest_of(candidates[[r.status_code for r in results].index(201)])
        view_a, view_b = verify_read_path(a.url, world), verify_read_path(b.url, world)
        assert view_a == view_b and view_a.epochs == tuple(range(1, 8))
