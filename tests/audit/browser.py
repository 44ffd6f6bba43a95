"""A real headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``).

Why not ``--dump-dom --virtual-time-budget``: virtual time only waits for pending network fetches,
not for WebCrypto work, which runs off the main thread, so the DOM was sometimes dumped before the
page finished verifying (measured: 1 run in 6 here). Over the protocol the test waits, in real time
with a deadline, for the page's own "done" marker (``<body data-audit-done>``), then reads the DOM.

Protocol framing on the pipe: each message is one JSON object followed by a NUL byte; Chromium reads
commands from its fd 3 and writes replies and events to its fd 4.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--remote-debugging-pipe"]
# Chromium wants the pipe on fds 3 and 4 exactly: a tiny exec trampoline puts it there.
_TRAMPOLINE = ("import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); "
               "os.execv(sys.argv[3], sys.argv[3:])")


class BrowserError(Exception):
    pass


class Browser:
    """One Chromium process; :meth:`load` opens a page and waits until its script says it is done."""

    def __init__(self, user_data_dir: Path, *, window: tuple[int, int] = (1280, 1600)) -> None:
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _TRAMPOLINE, str(to_chrome_r), str(from_chrome_w), CHROMIUM, *FLAGS,
             f"--user-data-dir={user_data_dir}", f"--window-size={window[0]},{window[1]}", "about:blank"],
            pass_fds=(to_chrome_r, from_chrome_w), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._next_id = 0

    def _send(self, method: str, params: dict | None = None, session: str | None = None) -> int:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        return self._next_id

    def call(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30) -> dict:
        """Send one command and return its ``result`` (events received meanwhile are dropped)."""
        wanted = self._send(method, params, session)
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" not in self._buffer:
                if time.monotonic() > deadline:
                    raise BrowserError(f"{method}: no answer within {timeout} s")
                chunk = os.read(self._from_chrome, 1 << 16)
                if not chunk:
                    raise BrowserError(f"{method}: Chromium closed the pipe (exit {self.proc.poll()})")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == wanted:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply["result"]

    def evaluate(self, session: str, expression: str) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def load(self, url: str, *, timeout: float = 30) -> str:
        """Open ``url``, wait for ``document.body.dataset.auditDone``, return the page's session id."""
        target = self.call("Target.createTarget", {"url": url})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.evaluate(session, "Boolean(document.body && document.body.dataset.auditDone)"):
                    return session
            except BrowserError as exc:  # no execution context yet while the tab navigates
                last = exc
            else:
                last = None
            if time.monotonic() > deadline:
                raise BrowserError(f"{url}: the page did not finish verifying within {timeout} s ({last})")
            time.sleep(0.05)

    def dom(self, session: str) -> str:
        return self.evaluate(session, "document.documentElement.outerHTML")

    def close(self) -> None:
        try:
            self._send("Browser.close")
            self.proc.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        finally:
            os.close(self._to_chrome)
            os.close(self._from_chrome)
