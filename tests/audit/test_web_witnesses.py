"""The audit page applies the clients' witness rule (bundles/FORMAT.md §9.3) in a real headless Chromium.

A proxy in front of the real quickstart serves, in ``/api/v1/info``, a trust root that requires 2 of 3
witnesses (fixed-seed test witnesses) and adds those witnesses' cosignature lines to ``/checkpoint`` at
chosen times; the log's own signature and every other file stay the quickstart's. For each case the
page's verdict is compared with :func:`verifier.cosignature.witnessed_time` on the very same bytes, so the
JavaScript and the Python rule stay in step (same acceptance, same message).
"""

from __future__ import annotations

import base64
import json
import time

import pytest
import requests

from tests.audit.browser import Browser
from tests.audit.conftest import Quickstart
from tests.audit.test_web import TamperingProxy, browser, needs_chromium, open_page  # noqa: F401 - the fixture
from tests.factory import World
from verifier.cosignature import add_cosignatures, witnessed_time
from verifier.errors import VerificationError
from verifier.note import Signature, parse_note
from verifier.trustroot import load_trust_root

pytestmark = needs_chromium

WITNESSES = World(witness_count=3).witness_cosigners
K = 2


def with_witnesses(info_body: bytes) -> bytes:
    """``/api/v1/info`` with its trust root's witnesses replaced by :data:`WITNESSES`, 2 required."""
    return edit_witnesses(info_body, {"keys": [w.verifier.vkey for w in WITNESSES], "threshold": K})


def without_witnesses(info_body: bytes) -> bytes:
    """``/api/v1/info`` with its trust root's witness threshold set to 0."""
    return edit_witnesses(info_body, None)


def edit_witnesses(info_body: bytes, witnesses: dict | None) -> bytes:
    """``/api/v1/info`` with its trust root's ``witnesses`` replaced (``None``: threshold 0)."""
    info = json.loads(info_body)
    envelope = json.loads(base64.b64decode(info["trust_root"]))
    body = json.loads(base64.b64decode(envelope["root"]))
    body["witnesses"] = witnesses if witnesses is not None else {**body["witnesses"], "threshold": 0}
    raw = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    envelope["root"] = base64.b64encode(raw).decode()
    info["trust_root"] = base64.b64encode(json.dumps(envelope, sort_keys=True, separators=(",", ":")).encode()).decode()
    return json.dumps(info).encode()


def cosigned(checkpoint: bytes, times: dict[int, int], *, drop_freshness: bool = False, corrupt: int | None = None) -> bytes:
    """The quickstart's checkpoint with witness ``i``'s cosignature at ``times[i]`` (``corrupt``: that
    witness's signature altered), without the log's freshness line if ``drop_freshness``."""
    text, sigs = parse_note(checkpoint)
    origin = text.split(b"\n", 1)[0].decode()
    kept = [s for s in sigs if not (drop_freshness and s.name == origin + "/freshness")]
    out = text + b"\n" + b"".join(s.line for s in kept)
    lines = []
    for i, t in sorted(times.items()):
        c = WITNESSES[i].cosign(text, t)
        if i == corrupt:
            c = Signature(c.name, c.key_id, c.sig[:-1] + bytes([c.sig[-1] ^ 1]))
        lines.append(c)
    return add_cosignatures(out, lines)


def python_verdict(checkpoint: bytes, max_age: int, now: int) -> str:
    group = World(witness_count=3, witness_threshold=K).witness_group()
    try:
        witnessed_time(checkpoint, group, now, max_age)
    except VerificationError as exc:
        return str(exc)
    return "accepted"


@pytest.fixture(scope="module")
def max_age(quickstart: Quickstart) -> int:
    return load_trust_root(quickstart.trust_root.read_bytes()).log.max_age


def page_with(quickstart: Quickstart, browser: Browser, checkpoint_fn):  # noqa: F811 - the fixture
    served: dict[str, bytes] = {}

    def checkpoint(body: bytes) -> bytes:
        served["checkpoint"] = checkpoint_fn(body)
        return served["checkpoint"]

    with TamperingProxy(quickstart.url, {"/api/v1/info": with_witnesses, "/checkpoint": checkpoint}) as proxy:
        page = open_page(browser, proxy.url + "/")
    return page, served["checkpoint"]


@pytest.mark.parametrize("case", ["two-fresh", "two-fresh-no-log-freshness", "one-fresh-one-stale",
                                  "one-fresh-one-future", "one-fresh"])
def test_page_applies_the_client_witness_rule(quickstart: Quickstart, browser: Browser, max_age: int,  # noqa: F811
                                              case: str) -> None:
    now = int(time.time())
    times = {
        "two-fresh": {0: now - 20, 1: now - 10, 2: now - 5},
        "two-fresh-no-log-freshness": {0: now - 20, 2: now - 5},
        "one-fresh-one-stale": {0: now - 10, 1: now - max_age - 100},
        "one-fresh-one-future": {0: now - 10, 1: now + 400},
        "one-fresh": {2: now - 10},
    }[case]
    page, served = page_with(quickstart, browser,
                             lambda body: cosigned(body, times, drop_freshness=case.endswith("no-log-freshness")))
    fresh_text, status = page.ids["cp-fresh"], page.ids["status"]
    verdict = python_verdict(served, max_age, int(time.time()))
    if verdict == "accepted":
        assert case.startswith("two-fresh")
        assert f"witnessed: {len(times) if case == 'two-fresh' else 2} of 3 witnesses cosigned" in fresh_text
        assert "the newest time 2 of them vouch for is" in fresh_text and "Clients refuse" not in status
    else:
        assert "FAILED" in fresh_text and verdict in fresh_text, (verdict, fresh_text)
        assert status.startswith("Clients refuse this checkpoint (witness policy of the trust root)")
        expected = {"one-fresh-one-stale": "possible freeze by the operator",
                    "one-fresh-one-future": "1 dated more than 300 s in the future do not count",
                    "one-fresh": "1 distinct trusted keys cosigned, 2 required"}[case]
        assert expected in fresh_text


def test_page_refuses_a_witness_line_that_does_not_verify(quickstart: Quickstart, browser: Browser) -> None:  # noqa: F811
    now = int(time.time())
    page, _ = page_with(quickstart, browser, lambda body: cosigned(body, {0: now, 1: now, 2: now}, corrupt=1))
    assert "the witness cosignature by witness.example/w2 does not verify" in page.ids["cp-fresh"]
    assert page.ids["status"].startswith("Clients refuse this checkpoint")


def test_page_verifies_the_quickstarts_own_witnesses(quickstart: Quickstart, browser: Browser) -> None:  # noqa: F811
    """The quick start runs 3 witnesses and its trust root requires 2: the page checks their real
    cosignatures, with no proxy in between."""
    info = requests.get(quickstart.url + "/api/v1/info", timeout=10).json()
    body = json.loads(base64.b64decode(json.loads(base64.b64decode(info["trust_root"]))["root"]))
    assert body["witnesses"]["threshold"] == 2 and len(body["witnesses"]["keys"]) == 3
    page = open_page(browser, quickstart.url + "/")
    assert page.ids["cp-fresh"].startswith("witnessed: ") and "of 3 witnesses" in page.ids["cp-fresh"]
    assert not page.ids["status"].startswith("Clients refuse")


def test_page_without_witnesses_still_shows_the_log_freshness(quickstart: Quickstart, browser: Browser) -> None:  # noqa: F811
    with TamperingProxy(quickstart.url, {"/api/v1/info": without_witnesses}) as proxy:
        page = open_page(browser, proxy.url + "/")
    assert "by the log's freshness key" in page.ids["cp-fresh"]
