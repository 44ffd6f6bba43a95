"""Test-only entry point: the witness with a SIGKILL right after each new state commit.

    python -m tests.witness.crashing_witness serve --name N --key REF --data DIR --log O=V ... --port P [--workers N]

Runs exactly what ``fleetkeys witness serve`` runs (:func:`witness.cli.serve`), with the
:attr:`witness.config.WitnessConfig.after_commit` fault hook set: after a checkpoint's new state is
committed and before the cosignature is sent, the worker SIGKILLs the gunicorn master and itself.
The tests use it to prove a crash at that point never lets the witness cosign a fork afterwards.
Production code has no way to arm the hook (no option, no environment variable): only this module,
which ships with the tests, sets it.
"""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

from witness.cli import serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.witness.crashing_witness")
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("--name", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--log", action="append", required=True)
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args(argv)
    master = os.getpid()

    def crash() -> None:
        os.kill(master, signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)

    print("WARNING: test-only crash hook armed: SIGKILL after every new state commit", flush=True)
    serve(args.name, args.key, args.data, args.log, port=args.port, workers=args.workers, threads=args.threads,
          after_commit=crash)


if __name__ == "__main__":
    main()
