"""The amplification model against the worked example of fault-tools.md, section 5: 500 ms each
way, 50 kbit/s (6250 B/s), 1% loss, a 400 B request and a 300 B response."""

import json

import pytest

from netgap.scenario import model
from netgap.scenario.model import NETEM, PROXY, Exchange, Link, Load

ARTICLE = Link(latency_s=0.5, rate_bps=50_000, loss=0.01)
EXAMPLE = Exchange(request_bytes=400, response_bytes=300)


def test_bytes_on_the_wire_count_a_tcp_ip_header_per_packet() -> None:
    assert model.wire_bytes(400, NETEM) == 452  # "req ≈ 450 B"
    assert model.wire_bytes(300, NETEM) == 352  # "resp ≈ 350 B"
    assert model.wire_bytes(3000, NETEM) == 3000 + 3 * 52  # three segments of 1448
    assert model.wire_bytes(400, PROXY) == 400  # the proxy shapes the payload only


def test_transfer_times_of_the_example() -> None:
    cap = ARTICLE.cap_bytes_per_s
    assert cap == 6250
    assert model.wire_bytes(400, NETEM) / cap == pytest.approx(0.072, abs=0.001)
    assert model.wire_bytes(300, NETEM) / cap == pytest.approx(0.056, abs=0.001)
    syn = model.handshake_bytes(NETEM) / 2 / cap
    assert syn == pytest.approx(0.008, abs=0.002)  # "SYN/SYN-ACK ≈ 10 ms each"


def test_keep_alive_exchange_takes_1_13_s() -> None:
    seconds = model.exchange_time_s(ARTICLE, EXAMPLE, new_connection=False)
    assert seconds == pytest.approx(1.13, abs=0.005)


def test_new_connection_exchange_takes_2_15_s() -> None:
    seconds = model.exchange_time_s(ARTICLE, EXAMPLE, new_connection=True)
    assert seconds == pytest.approx(2.15, abs=0.01)


def test_one_lost_segment_on_keep_alive_takes_2_3_to_3_s() -> None:
    seconds = model.exchange_time_s(ARTICLE, EXAMPLE, new_connection=False, lost_data=True)
    assert 2.3 <= seconds <= 3.0
    assert model.established_rto_s(ARTICLE) == pytest.approx(1.2)  # SRTT + 200 ms


def test_about_two_percent_of_keep_alive_exchanges_lose_a_segment() -> None:
    count = model.segments(400, NETEM) + model.segments(300, NETEM)
    assert count == 2
    assert model.loss_chance(0.01, count) == pytest.approx(0.02, abs=0.001)


def test_lost_syn_on_a_new_connection_takes_3_2_s() -> None:
    seconds = model.exchange_time_s(ARTICLE, EXAMPLE, new_connection=True, lost_syn=True)
    assert seconds == pytest.approx(3.2, abs=0.06)


def test_lost_request_on_a_new_connection_takes_4_to_5_s() -> None:
    seconds = model.exchange_time_s(ARTICLE, EXAMPLE, new_connection=True, lost_data=True)
    assert 4.0 <= seconds <= 5.2  # RTO 3 s = 3 x the first RTT sample


def test_queueing_example_adds_0_28_s_every_second() -> None:
    # 10 req/s x 800 B = 8000 B/s into 6250 B/s: +1750 B/s of backlog.
    load = Load(requests_per_s=10, fault_s=60, shared_cap=True)
    payload = Exchange(request_bytes=400 - 52, response_bytes=400 - 52)  # 400 B each, wired
    assert model.offered_bytes_per_s(payload, load, NETEM) == pytest.approx(8000)
    growth = model.backlog_growth(ARTICLE, payload, load, NETEM)
    assert growth == pytest.approx(0.28)
    expectation = model.expect(ARTICLE, payload, load, NETEM)
    assert expectation.worst_wait_s == pytest.approx(0.28 * 60)
    terms = {term.name: term.seconds for term in expectation.terms}
    assert terms[model.QUEUEING] == pytest.approx(0.28 * 60 / 2)  # mean of a linear ramp
    assert expectation.dominant.name == model.QUEUEING


def test_under_the_cap_there_is_no_backlog_and_propagation_dominates() -> None:
    load = Load(requests_per_s=5, fault_s=60)
    expectation = model.expect(ARTICLE, EXAMPLE, load, NETEM)
    assert expectation.backlog_growth == 0
    terms = {term.name: term.seconds for term in expectation.terms}
    assert terms[model.QUEUEING] == 0
    assert terms[model.PROPAGATION] == pytest.approx(1.0)
    assert expectation.dominant.name == model.PROPAGATION
    assert expectation.total_s == pytest.approx(1.0 + 804 / 6250 + model.loss_chance(0.01, 2) * 1.2)


def test_a_cap_per_direction_queues_on_the_busier_one() -> None:
    # The proxy: 30 req/s x 244 B of responses = 7320 B/s into 6250 B/s per direction.
    exchange = Exchange(request_bytes=213, response_bytes=244)
    load = Load(requests_per_s=30, fault_s=60)
    assert model.offered_bytes_per_s(exchange, load, PROXY) == pytest.approx(7320)
    growth = model.backlog_growth(ARTICLE, exchange, load, PROXY)
    assert growth == pytest.approx((7320 - 6250) / 6250)
    shared = Load(requests_per_s=30, fault_s=60, shared_cap=True)
    assert model.offered_bytes_per_s(exchange, shared, PROXY) == pytest.approx(30 * 457)


def test_the_proxy_does_not_delay_the_handshake() -> None:
    everyone_new = Load(requests_per_s=1, fault_s=10, new_connection_share=1.0)
    assert model.round_trips(1.0, PROXY) == 1.0
    assert model.round_trips(1.0, NETEM) == 2.0
    proxy = model.propagation(ARTICLE, everyone_new, PROXY)
    assert proxy.seconds == pytest.approx(1.0)


def test_no_faults_expect_nothing() -> None:
    expectation = model.expect(Link(latency_s=0.0), EXAMPLE, Load(requests_per_s=30, fault_s=10))
    assert expectation.total_s == 0
    assert [term.formula for term in expectation.terms][1:] == [
        "no bandwidth cap",
        "no loss",
        "no bandwidth cap",
    ]


def test_json_names_the_dominant_term() -> None:
    data = model.expect(ARTICLE, EXAMPLE, Load(requests_per_s=30, fault_s=60)).to_json()
    assert data["dominant"] in {term["name"] for term in data["terms"]}
    assert data["total_s"] == pytest.approx(sum(term["seconds"] for term in data["terms"]))


def test_json_reads_back_as_the_same_expectation() -> None:
    expectation = model.expect(ARTICLE, EXAMPLE, Load(requests_per_s=30, fault_s=60))
    again = model.Expectation.from_json(json.loads(json.dumps(expectation.to_json())))
    assert again == expectation
    assert again.to_json() == expectation.to_json()
