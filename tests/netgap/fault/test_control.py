"""The control API over HTTP, against a running proxy: read, change and clear its faults, with
connections through it staying up all along."""

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from netgap.errors import NetgapError, UsageError
from netgap.fault.control import clear_faults, faults_url, get_faults, put_faults
from netgap.fault.spec import Faults
from tests.harness import free_port
from tests.netgap.fault.conftest import (
    RunningProxy,
    connect,
    echo,
    round_trip_s,
    running_proxy,
    tcp_server,
)

pytestmark = pytest.mark.timeout(30)

NONE = Faults().to_json()


@pytest.fixture(scope="module")
def control_proxy() -> Iterator[RunningProxy]:
    # One for the module: stopping the control API's server takes a few tenths of a second.
    with tcp_server(echo) as upstream, running_proxy(upstream, control=True) as running:
        yield running


@pytest.fixture
def controlled(control_proxy: RunningProxy) -> RunningProxy:
    """The proxy to an echo server, with 10 ms of latency to start from."""
    control_proxy.set_faults(Faults(latency_s=0.01))
    return control_proxy


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def test_get_shows_the_faults_in_the_shape_put_takes(
    controlled: RunningProxy, http: httpx.Client
) -> None:
    response = http.get(controlled.control_url)
    assert response.status_code == 200
    assert response.json() == {**NONE, "latency": "10ms"}
    root = controlled.control_url.removesuffix("/faults") + "/"
    assert http.get(root).json() == response.json()
    # GET's output PUT back changes nothing.
    assert http.put(controlled.control_url, json=response.json()).json() == response.json()


def test_put_changes_the_fields_given_and_keeps_the_others(
    controlled: RunningProxy, http: httpx.Client
) -> None:
    response = http.put(controlled.control_url, json={"rate": "50kbit", "loss": "1%"})
    assert response.status_code == 200
    expected = {**NONE, "latency": "10ms", "rate": "50kbit", "loss": "1%"}
    assert response.json() == expected
    assert http.get(controlled.control_url).json() == expected
    assert controlled.faults() == Faults(latency_s=0.01, rate_bps=50_000, loss=0.01)
    assert http.put(controlled.control_url, json={"rate": None}).json()["rate"] is None


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"latency": "-5ms"}, "latency"),
        ({"loss": "150%"}, "from 0% to 100%"),
        ({"rate": "50kbits"}, "not a rate"),
        ({"latency": "5 parsecs"}, "not a duration"),
        ({"jitter": "1s"}, "more than the latency"),
        ({"direction": "sideways"}, "direction"),
        ({"delay": "5ms"}, "unknown field"),
        (["latency", "5ms"], "JSON object"),
        ("{nope", "not JSON"),
    ],
)
def test_bad_put_is_400_and_keeps_the_faults(
    controlled: RunningProxy, http: httpx.Client, body: Any, says: str
) -> None:
    before = http.get(controlled.control_url).json()
    if isinstance(body, str):
        response = http.put(controlled.control_url, content=body)
    else:
        response = http.put(controlled.control_url, json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert says in error
    assert len(error.splitlines()) == 1
    assert len(error) < 200
    assert http.get(controlled.control_url).json() == before


def test_delete_clears(controlled: RunningProxy, http: httpx.Client) -> None:
    response = http.delete(controlled.control_url)
    assert response.status_code == 200
    assert response.json() == NONE
    assert not controlled.faults().active


def test_other_paths_and_methods_are_refused(controlled: RunningProxy, http: httpx.Client) -> None:
    base = controlled.control_url.removesuffix("/faults")
    missing = http.get(base + "/proxies")
    assert missing.status_code == 404
    assert "/faults" in missing.json()["error"]
    refused = http.post(controlled.control_url, json={})
    assert refused.status_code == 405
    assert "PUT" in refused.headers["allow"]


def test_connections_survive_changes_through_the_api(controlled: RunningProxy) -> None:
    url = controlled.control_url
    accepted = controlled.proxy.accepted
    with connect(controlled.address) as sock:
        assert round_trip_s(sock) >= 0.019  # 10 ms each way at the start
        assert put_faults(url, {"latency": "100ms"}) == Faults(latency_s=0.1)
        assert round_trip_s(sock) >= 0.19
        assert clear_faults(url) == Faults()
        assert min(round_trip_s(sock) for _ in range(3)) < 0.05
        assert get_faults(url) == Faults()
        assert controlled.proxy.open_connections == 1
    assert controlled.proxy.accepted == accepted + 1


def test_the_client_says_what_went_wrong(controlled: RunningProxy) -> None:
    with pytest.raises(UsageError, match="must be from 0% to 100%"):
        put_faults(controlled.control_url, {"loss": "150%"})
    nobody = f"http://127.0.0.1:{free_port()}/faults"
    with pytest.raises(NetgapError, match="cannot reach the control API") as raised:
        get_faults(nobody)
    assert raised.value.hint is not None


@pytest.mark.parametrize(
    ("text", "url"),
    [
        ("127.0.0.1:8474", "http://127.0.0.1:8474/faults"),
        ("http://127.0.0.1:8474", "http://127.0.0.1:8474/faults"),
        ("http://127.0.0.1:8474/", "http://127.0.0.1:8474/faults"),
        ("http://proxy.local:9/faults", "http://proxy.local:9/faults"),
    ],
)
def test_control_urls(text: str, url: str) -> None:
    assert faults_url(text) == url


def test_a_control_url_must_be_http() -> None:
    with pytest.raises(ValueError, match="want a URL"):
        faults_url("ftp://127.0.0.1:8474")
