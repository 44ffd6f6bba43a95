"""Test-only entry point: a service with one more route, ``GET /test/raise``, whose view raises.

    python -m tests.ops.logs_raising_service PACKAGE ARGS      (PACKAGE: signer, distributor or witness)

Runs exactly what ``python -m PACKAGE ARGS`` runs; each worker's app gets the route once gunicorn has
loaded it, so the app's own error handling and logging of an exception are what the tests see
(``tests/ops/test_logs.py``). Nothing of the project is imported here before the command runs.
"""

from __future__ import annotations

import runpy
import sys
from typing import Any

from gunicorn.app.base import BaseApplication

RAISE_PATH = "/test/raise"


def _fail() -> None:
    raise RuntimeError("injected failure")


def main(package: str, args: list[str]) -> None:
    load = BaseApplication.wsgi

    def wsgi(self: BaseApplication) -> Any:
        if self.callable is None:
            load(self).add_url_rule(RAISE_PATH, "test_raise", _fail, methods=["GET"])  # through the middleware
        return self.callable

    BaseApplication.wsgi = wsgi  # type: ignore[method-assign]
    sys.argv = [package, *args]
    runpy.run_module(package, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
