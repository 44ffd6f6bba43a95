"""The spec's race, in-process: checking the old size and persisting the new checkpoint are one atomic
step, across two "workers" (two apps, two state stores, one SQLite file) and across threads of one."""

from __future__ import annotations

import sys
import threading

import pytest

from tests.service_process import wait_for
from tests.witness.helpers import WITNESS_KEY, Clock, TestLog, cosigned, make_config
from witness.app import create_app
from witness.state import WitnessState


class HoldingKey:
    """The witness key, but its first signature waits for :attr:`release`: it is made inside the state
    transaction, so the request holding it holds SQLite's write lock meanwhile."""

    public_key = WITNESS_KEY.public_key

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self._first = True

    def sign(self, message: bytes) -> bytes:
        if self._first:
            self._first = False
            self.entered.set()
            assert self.release.wait(20)
        return WITNESS_KEY.sign(message)


def _waiting_for_the_write_lock(thread: threading.Thread) -> bool:
    """True while ``thread`` is inside :meth:`WitnessState._write`, before its ``BEGIN IMMEDIATE`` returned."""
    frame = sys._current_frames().get(thread.ident)  # noqa: SLF001 - where the other request is blocked
    return frame is not None and frame.f_code.co_name == "_write" and frame.f_code.co_filename.endswith("state.py")


def _post(client, body: bytes, out: dict, key: str) -> None:
    out[key] = client.post("/add-checkpoint", data=body)


@pytest.mark.parametrize("first", ["small", "large"])
def test_the_specs_race_cannot_roll_the_state_back(tmp_path, first):
    """tlog-witness: request A (size N) and B (size N+K), both from the same old size. Whichever checks
    first wins; the other waits for the lock, then sees the new size and gets 409 with it."""
    log = TestLog().grow(30)
    data_dir = tmp_path / "w"
    data_dir.mkdir()
    holding = HoldingKey()
    worker_a = create_app(make_config(data_dir, [log], signer=holding, clock=Clock())).test_client()
    worker_b = create_app(make_config(data_dir, [log], clock=Clock())).test_client()
    assert worker_b.post("/add-checkpoint", data=log.request(0, 10)).status_code == 200
    sizes = {"small": 15, "large": 25}
    a_size, b_size = sizes[first], sizes["large" if first == "small" else "small"]
    out: dict = {}
    a = threading.Thread(target=_post, args=(worker_a, log.request(10, a_size), out, "a"))
    a.start()
    assert holding.entered.wait(20)  # A checked, and is cosigning inside its transaction
    b = threading.Thread(target=_post, args=(worker_b, log.request(10, b_size), out, "b"))
    b.start()
    wait_for(lambda: _waiting_for_the_write_lock(b), what="B waiting for the write lock held by A")
    holding.release.set()
    a.join(20)
    b.join(20)
    assert out["a"].status_code == 200 and cosigned(log.note(a_size), out["a"].data)
    assert out["b"].status_code == 409 and out["b"].data == f"{a_size}\n".encode()
    state = WitnessState(data_dir / "witness.sqlite").get(log.origin)
    assert (state.size, state.root) == (a_size, log.root(a_size))


def test_threads_racing_one_old_size_get_exactly_one_200(tmp_path):
    log = TestLog().grow(60)
    data_dir = tmp_path / "w"
    data_dir.mkdir()
    apps = [create_app(make_config(data_dir, [log], clock=Clock())) for _ in range(2)]
    for round_, old in enumerate(range(0, 50, 10)):
        barrier = threading.Barrier(8)
        out: dict = {}

        def race(i: int, old: int = old, barrier: threading.Barrier = barrier, out: dict = out) -> None:
            client = apps[i % 2].test_client()
            body = log.request(old, old + 1 + i)
            barrier.wait(10)
            out[i] = client.post("/add-checkpoint", data=body)

        threads = [threading.Thread(target=race, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        statuses = sorted(r.status_code for r in out.values())
        assert statuses == [200] + [409] * 7, (round_, statuses)
        (winner,) = [i for i, r in out.items() if r.status_code == 200]
        won = old + 1 + winner
        assert {r.data for r in out.values() if r.status_code == 409} == {f"{won}\n".encode()}
        if won != old + 10:  # move to the next round's old size
            assert apps[0].test_client().post("/add-checkpoint", data=log.request(won, old + 10)).status_code == 200
