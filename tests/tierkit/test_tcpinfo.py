"""tierkit.tcpinfo: struct tcp_info byte strings of several kernels' lengths parse to the right
fields (absent ones None, never garbage), and a real loopback connection reads sensibly."""

import socket
import struct

import pytest

from tierkit import tcpinfo
from tierkit.tcpinfo import TcpInfo, parse

# A tcp_info as Linux 6.x lays it out, each field we read set to a value of its own.
VALUES = {
    "state": (0, "B", 1),
    "rto_us": (8, "I", 204_000),
    "lost": (32, "I", 2),
    "retrans": (36, "I", 1),
    "srtt_us": (68, "I", 1_000_123),
    "rttvar_us": (72, "I", 40_000),
    "snd_cwnd": (80, "I", 10),
    "total_retrans": (100, "I", 3),
    "min_rtt_us": (148, "I", 37),
    "delivery_rate": (160, "Q", 6_250_000),
    "bytes_retrans": (208, "Q", 4_344),
}


def recorded(length: int) -> bytes:
    raw = bytearray(range(256)) * 2  # noise everywhere else: a wrong offset reads it
    for offset, code, value in VALUES.values():
        struct.pack_into(code, raw, offset, value)
    return bytes(raw[:length])


@pytest.mark.parametrize(
    ("length", "absent"),
    [
        (280, set()),  # Linux 6.18
        (232, set()),  # 5.x
        (216, set()),  # what read() asks for: no more than the fields it reads
        (192, {"bytes_retrans"}),  # 4.10 - 4.18
        (160, {"delivery_rate", "bytes_retrans"}),  # 4.6 - 4.8
        (104, {"min_rtt_us", "delivery_rate", "bytes_retrans"}),  # 2.6 - 3.x
        (60, {"srtt_us", "rttvar_us", "snd_cwnd", "total_retrans", "min_rtt_us",
              "delivery_rate", "bytes_retrans"}),
        (0, set(VALUES)),
    ],
)  # fmt: skip
def test_each_kernels_length_parses_to_the_fields_it_has(length: int, absent: set[str]) -> None:
    info = parse(recorded(length))
    for name, (_, _, value) in VALUES.items():
        assert getattr(info, name) == (None if name in absent else value), name


def test_a_real_connection_reads_sensibly() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        peer, _ = server.accept()
        with client, peer:
            client.sendall(b"x" * 100_000)
            got = 0
            while got < 100_000:
                got += len(peer.recv(65536))
            info = tcpinfo.read(client)
    if tcpinfo.TCP_INFO is None:
        assert info is None
        return
    assert info is not None
    assert info.state == 1  # ESTABLISHED
    assert info.srtt_us is not None
    assert 0 < info.srtt_us < 100_000  # loopback
    assert info.total_retrans == 0
    assert info.min_rtt_us is not None
    assert info.rttvar_us is not None
    assert info.min_rtt_us <= info.srtt_us + info.rttvar_us


def test_a_socket_that_is_not_tcp_reads_as_none() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        assert tcpinfo.read(udp) is None


def test_an_empty_tcp_info_is_all_none() -> None:
    assert parse(b"") == TcpInfo()


def test_the_witness_counts_retransmissions_per_exchange_and_restarts_per_connection() -> None:
    if tcpinfo.TCP_INFO is None:
        pytest.skip("TCP_INFO is Linux's")
    witness = tcpinfo.Witness()
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        peer, _ = server.accept()
        with client, peer:
            first = witness.testify(client, new_connection=True)
            client.sendall(b"ping")
            peer.recv(16)
            second = witness.testify(client, new_connection=False)
    assert first is not None
    assert second is not None
    assert (first.retransmits, second.retransmits) == (0, 0)
    assert first.attributes()["netgap.tcp.new_connection"] is True
    assert second.attributes()["netgap.tcp.new_connection"] is False
    assert set(second.attributes()) >= {"netgap.tcp.srtt_us", "netgap.tcp.retransmits"}
    assert witness.testify(None, new_connection=False) is None
