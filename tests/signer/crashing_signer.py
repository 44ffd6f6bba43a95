"""Test-only entry point: the anchor signer with a SIGKILL right after each new journal commit.

    python -m tests.signer.crashing_signer serve --data DIR --port P [--workers N] [--key REF]

Runs exactly what ``fleetkeys signer serve`` runs (:func:`signer.cli.serve`), with the
:attr:`signer.config.SignerConfig.after_commit` fault hook set: after a new signature is committed to
the journal and before the response is sent, the worker SIGKILLs the gunicorn master and itself.
The tests use it to prove a crash at that point loses nothing. Production code has no way to arm
the hook (no option, no environment variable): only this module, which ships with the tests, sets it.
"""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

from signer.cli import serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.signer.crashing_signer")
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--key", default=None)
    args = parser.parse_args(argv)
    master = os.getpid()

    def crash() -> None:
        os.kill(master, signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)

    print("WARNING: test-only crash hook armed: SIGKILL after every new journal commit", flush=True)
    serve(args.data, args.key, port=args.port, workers=args.workers, after_commit=crash)


if __name__ == "__main__":
    main()
