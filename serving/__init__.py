"""The gunicorn shell every fleetkeys service runs under: a master with a bounded, documented stop.

Shared by the signer, the distributor and (when it adopts it) the witness, which may not import one
another; this package imports nothing of the project. Stopping (:class:`BoundedStopArbiter`):

* SIGTERM: no new connection is accepted, in-flight requests get up to :data:`GRACEFUL_TIMEOUT`
  seconds to finish, then any worker still busy is killed. The process is gone within
  :data:`STOP_BOUND` seconds of the signal.
* SIGINT or SIGQUIT, or a second SIGTERM (or SIGINT) during a graceful stop: the workers quit at once
  (killed after :data:`QUICK_TIMEOUT` second). The same signal again within :data:`REPEAT_AFTER` s
  of the first counts as a copy of it (a supervisor signalling the whole group, a forwarding parent).
* The last log line (``<proc_name> stopped on SIGTERM in 0.2 s: …``) says how it stopped. Exit status
  0, or 1 when a worker had to be killed.

Metrics (:mod:`serving.metrics`): :func:`run_bounded` sets ``PROMETHEUS_MULTIPROC_DIR`` to a fresh
private directory before the first worker forks, tells ``prometheus_client`` of each reaped worker
(``mark_process_dead``) and removes the directory when the server stops.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from typing import Any

from gunicorn import sock
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.errors import HaltServer

from .metrics import multiprocess_directory, worker_exited

#: Seconds in-flight requests get after SIGTERM (gunicorn's ``graceful_timeout``).
GRACEFUL_TIMEOUT = 8
#: Seconds workers get to quit after SIGINT, SIGQUIT or a second SIGTERM before they are killed.
QUICK_TIMEOUT = 1
#: The documented bound: master and workers are gone this many seconds after SIGTERM.
STOP_BOUND = 10
#: The same stop signal this soon after the first is a copy of the same request (a supervisor that
#: signals every process of the group, and the quick start forwarding it), not a second one.
REPEAT_AFTER = 0.5

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


class BoundedStopArbiter(Arbiter):
    """gunicorn's master with the bounded stop of the module docstring."""

    stop_signal: int | None = None
    stop_started: float | None = None
    hurry = False
    killed = 0

    def signal(self, sig: int, frame: Any) -> None:  # the signal handler: record and queue, no logging
        if sig in _STOP_SIGNALS:
            if self.stop_signal is None:
                self.stop_signal, self.stop_started, self.hurry = sig, time.monotonic(), sig != signal.SIGTERM
            elif sig != self.stop_signal or time.monotonic() - (self.stop_started or 0) >= REPEAT_AFTER:
                self.hurry = True
        super().signal(sig, frame)

    def handle_term(self) -> None:
        self.log.info("SIGTERM: no new connections; in-flight requests get up to %d s "
                      "(a second SIGTERM or SIGINT stops at once)", GRACEFUL_TIMEOUT)
        raise StopIteration

    def handle_int(self) -> None:
        self.log.info("SIGINT: stopping at once")
        raise StopIteration

    def handle_quit(self) -> None:
        self.log.info("SIGQUIT: stopping at once")
        raise StopIteration

    def _reap(self) -> None:
        with contextlib.suppress(HaltServer):  # a worker that exits with a boot error while we stop anyway
            self.reap_workers()

    def stop(self, graceful: bool = True) -> None:
        if self.stop_started is None:
            self.stop_started = time.monotonic()
        unlink = self.reexec_pid == self.master_pid == 0 and not getattr(self, "systemd", False) \
            and not self.cfg.reuse_port
        sock.close_sockets(self.LISTENERS, unlink)
        self.LISTENERS = []
        hurried = self.hurry or not graceful
        self.kill_workers(signal.SIGQUIT if hurried else signal.SIGTERM)
        limit = time.monotonic() + (QUICK_TIMEOUT if hurried else GRACEFUL_TIMEOUT)
        again = time.monotonic() + 0.5
        while self.WORKERS and time.monotonic() < limit:
            if self.hurry and not hurried:
                hurried = True
                self.log.info("second signal: stopping at once")
                self.kill_workers(signal.SIGQUIT)
                limit = min(limit, time.monotonic() + QUICK_TIMEOUT)
            if time.monotonic() >= again:
                # A worker forked a moment before still had the master's handlers, which only queue the
                # signal: tell it again (SIGTERM is idempotent, also for a worker already quitting).
                self.kill_workers(signal.SIGTERM)
                again = time.monotonic() + 0.5
            self._reap()
            if self.WORKERS:
                time.sleep(0.05)
        if self.WORKERS:
            self.killed += len(self.WORKERS)
            self.kill_workers(signal.SIGKILL)
            deadline = time.monotonic() + 5
            while self.WORKERS and time.monotonic() < deadline:
                self._reap()
                time.sleep(0.02)

    def halt(self, reason: str | None = None, exit_status: int = 0) -> None:
        try:
            super().halt(reason, exit_status)  # stop(), log, on_exit, sys.exit
        except SystemExit as exc:
            took = time.monotonic() - (self.stop_started or time.monotonic())
            how = f"on {signal.Signals(self.stop_signal).name}" if self.stop_signal else "on error"
            if self.killed:
                what = f"killed {self.killed} worker(s) still busy at the {GRACEFUL_TIMEOUT} s bound"
            elif self.hurry:
                what = "workers told to quit at once (requests in flight, if any, were dropped)"
            elif self.stop_signal:
                what = "in-flight requests finished"
            else:
                what = reason or f"exit status {exc.code}"
            left = f"{len(self.WORKERS)} worker(s) not reaped" if self.WORKERS else "no worker left"
            self.log.info("%s stopped %s in %.1f s: %s; %s", self.cfg.proc_name, how, took, what, left)
            if not exc.code and self.killed:
                raise SystemExit(1) from None
            raise


def _also_on_child_exit(app: BaseApplication) -> None:
    """Chain :func:`serving.metrics.worker_exited` after the application's own ``child_exit`` hook."""
    previous = app.cfg.child_exit

    def child_exit(server: Any, worker: Any) -> None:
        previous(server, worker)
        worker_exited(worker.pid)

    app.cfg.set("child_exit", child_exit)


def run_bounded(app: BaseApplication) -> None:
    """Run ``app`` under :class:`BoundedStopArbiter` with a fresh metrics directory (module docstring);
    a start-up failure is one line and exit 1."""
    with multiprocess_directory(app.cfg.proc_name or "fleetkeys"):
        _also_on_child_exit(app)
        try:
            BoundedStopArbiter(app).run()
        except RuntimeError as exc:
            print(f"\nError: {exc}\n", file=sys.stderr)
            sys.stderr.flush()
            sys.exit(1)


__all__ = ["GRACEFUL_TIMEOUT", "QUICK_TIMEOUT", "REPEAT_AFTER", "STOP_BOUND", "BoundedStopArbiter", "run_bounded"]
