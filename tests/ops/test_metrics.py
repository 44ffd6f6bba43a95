"""``GET /metrics`` on real gunicorn processes (issue 14, item 1): counts from every worker are added
up, routes are URL rules (never the path asked), the state gauges come from the shared store, the
signer's metrics exist only on its loopback listener, and no token or secret reaches a scrape."""

from __future__ import annotations

import re

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.distributor.helpers import TOKEN, ServeProcess, world_data_dir
from tests.factory import World
from tests.service_process import ServiceProcess, free_port, wait_for
from tests.signer.process import prepare_data_dir

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    resp = requests.get(url + "/metrics", timeout=10)
    assert resp.status_code == 200 and resp.headers["Content-Type"] == CONTENT_TYPE
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(resp.text) for s in fam.samples}


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def worker_pids(dist: ServeProcess) -> set[str]:
    return set(re.findall(r"Booting worker with pid: (\d+)", dist.log()))


@pytest.fixture
def world() -> World:
    return World()


def test_two_workers_counts_are_added_up_and_routes_are_url_rules(world, tmp_path):
    data = world_data_dir(tmp_path / "dist", world)
    with ServeProcess(["--data", str(data), "--origin", world.origin, "--trust-root", str(data / "trust-root.json"),
                       "--workers", "2"], tmp_path / "dist.log") as dist:
        wait_for(lambda: len(worker_pids(dist)) == 2, 30, "two workers")
        before = scrape(dist.url)
        # Fresh connections each time, so the master spreads them over both workers.
        for _ in range(40):
            with requests.Session() as s:
                assert s.get(dist.url + "/api/v1/epochs", params={"limit": "1"}, timeout=10).status_code == 200
                assert s.get(dist.url + "/api/v1/bundles/7", timeout=10).status_code == 404
                assert s.get(dist.url + "/no/such/path/secret-looking-path", timeout=10).status_code == 404
        bundle = world.chain(1)[0]
        assert requests.post(dist.url + "/api/v1/bundles", data=bundle, timeout=30,
                             headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 201
        assert requests.post(dist.url + "/api/v1/bundles", data=bundle, timeout=30,
                             headers={"Authorization": "Bearer wrong-token-0123456789"}).status_code == 401
        text = requests.get(dist.url + "/metrics", timeout=10).text
        after = scrape(dist.url)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    req = "fleetkeys_http_requests_total"
    assert delta(req, service="distributor", route="/api/v1/epochs", method="GET", status="200") == 40
    assert delta(req, service="distributor", route="/api/v1/bundles/<epoch>", method="GET", status="404") == 40
    assert delta(req, service="distributor", route="unmatched", method="GET", status="404") == 40
    assert delta(req, service="distributor", route="/api/v1/bundles", method="POST", status="201") == 1
    assert delta(req, service="distributor", route="/api/v1/bundles", method="POST", status="401") == 1
    assert value(after, "fleetkeys_workers", service="distributor") == 2
    assert delta("fleetkeys_distributor_appends_total", kind="bundle") == 1
    assert delta("fleetkeys_http_request_duration_seconds_count", service="distributor", route="/api/v1/bundles") == 2
    assert value(after, "fleetkeys_distributor_tree_size", tree="appended") == 1
    assert value(after, "fleetkeys_distributor_tree_size", tree="visible") == 1
    assert 0 <= value(after, "fleetkeys_distributor_freshness_age_seconds") < 120
    assert value(after, "fleetkeys_state_read_ok", service="distributor") == 1
    # Both workers answered some of the 120 requests: the sums above are of both.
    served_by = {s.labels.get("pid") for fam in text_string_to_metric_families(text) for s in fam.samples}
    assert served_by == {None}  # no per-process series leak out: aggregated, not one series per worker
    assert "secret-looking-path" not in text and "/api/v1/bundles/7" not in text
    assert TOKEN not in text and "wrong-token" not in text and "Bearer" not in text


def test_the_signers_metrics_are_only_on_its_loopback_listener_and_hold_no_token(tmp_path):
    tokens = prepare_data_dir(tmp_path / "signer", ("ns",), key_seed=b"\x07" * 32)
    metrics_port = free_port()
    proc = ServiceProcess(["fleetkeys", "signer", "serve", "--data", str(tmp_path / "signer"), "--workers", "2",
                           "--metrics-port", str(metrics_port)], tmp_path / "signer.log")
    proc.ready_path = "/healthz"
    with proc:
        proc.wait_ready(30)
        metrics_url = f"http://127.0.0.1:{metrics_port}"
        wait_for(lambda: value(scrape(metrics_url), "fleetkeys_workers", service="signer") == 2, 30,
                 "both workers to start (the livesum gauge)")
        assert requests.get(proc.url + "/metrics", timeout=10).status_code == 404  # not on the API listener
        assert requests.get(metrics_url + "/info", timeout=10).status_code == 404  # nor the API on this one
        assert requests.get(metrics_url + "/readyz", timeout=10).status_code == 200
        auth = {"Authorization": f"Bearer {tokens['write']}"}
        assert requests.post(proc.url + "/namespaces/ns/audits", json={"epoch": 1, "digest": "00" * 32},
                             headers=auth, timeout=10).status_code == 409  # keyset-required
        assert requests.post(proc.url + "/api/v1/sign-keyset", data=b"x",
                             headers={"Authorization": "Bearer not-a-token-0123456789"}, timeout=10).status_code == 401
        text = requests.get(metrics_url + "/metrics", timeout=10).text
        samples = scrape(metrics_url)
    assert value(samples, "fleetkeys_signer_refusals_total", code="keyset-required") == 1
    assert value(samples, "fleetkeys_signer_refusals_total", code="unauthenticated") == 1
    assert value(samples, "fleetkeys_http_requests_total", service="signer", route="/api/v1/sign-keyset",
                 method="POST", status="401") == 1
    for token in tokens.values():
        assert token not in text
    assert "not-a-token" not in text
