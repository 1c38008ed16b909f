"""The waterfall's rows and the pages' HTML, from traces with known answers."""

from dataclasses import replace

from netgap.tracepage import render_not_found, render_trace, trace_rows
from tests.netgap.traces import chain, with_phases


def test_rows_follow_the_tree_with_a_gap_row_under_each_call() -> None:
    spans, answer = chain()
    rows, horizon = trace_rows(spans)
    assert horizon == answer["total"]
    assert [(r.kind, r.service, r.label) for r in rows] == [
        ("server", "webtier", "GET /"),
        ("client", "webtier", "GET"),
        ("gap", "(network)", "remote calls webtier->apitier"),
        ("server", "apitier", "GET /"),
        ("internal", "apitier", "api-handler"),
        ("client", "apitier", "SELECT"),
        ("gap", "(network)", "remote calls apitier->db"),
        ("server", "db", "query"),
    ]
    gaps = [r for r in rows if r.kind == "gap"]
    assert [g.duration_ns for g in gaps] == [
        answer["webtier->apitier remote"],
        answer["apitier->db remote"],
    ]


def test_gap_legs_are_the_untraced_time_before_and_after_the_server_span() -> None:
    spans, _ = chain(web_api_remote=(150_000, 250_000))
    rows, _ = trace_rows(spans)
    gap = next(r for r in rows if r.kind == "gap")
    client = next(r for r in rows if r.kind == "client")
    assert gap.legs_ns == [
        (client.offset_ns, 150_000),
        (client.offset_ns + client.duration_ns - 250_000, 250_000),
    ]


def test_skewed_clocks_still_draw_the_gap_inside_the_client_span() -> None:
    spans, answer = chain(offsets={"apitier": 5_000_000_000}, with_db=False)
    rows, _ = trace_rows(spans)
    gap = next(r for r in rows if r.kind == "gap")
    assert [width for _, width in gap.legs_ns] == [answer["webtier->apitier remote"] // 2] * 2


def test_trace_page_shows_every_span_the_split_and_escapes_names() -> None:
    spans, answer = chain()
    spans[0] = replace(spans[0], name="<script>alert(1)</script>")
    html = render_trace(spans[0].trace_id, spans)
    assert html.count('data-span="') == len(spans)
    assert html.count('data-gap="1"') == 2
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;" in html
    assert f"{answer['webtier->apitier remote'] / 1e6:.3f} ms" in html
    assert "http://" not in html.replace('href="/', "")  # no external asset


def test_not_found_page() -> None:
    assert "no trace abc" in render_not_found("no trace abc")


def test_the_gap_splits_into_the_calls_phases_which_add_up_to_it() -> None:
    spans, answer = chain(web_api_remote=(150_000, 250_000), with_db=False)
    client = spans[1]
    server_ns = spans[2].duration_ns
    # connect 20 us, request 30 us, then the server, response 60 us; other = what remains
    spans[1] = with_phases(
        client, connect=20_000, request=30_000, waiting_total=100_000 + server_ns, response=60_000
    )
    spans[1] = replace(
        spans[1],
        attributes={
            **spans[1].attributes,
            "netgap.tcp.srtt_us": 40,
            "netgap.tcp.min_rtt_us": 10,
            "netgap.tcp.retransmits": 0,
        },
    )
    rows, _ = trace_rows(spans)
    gap = next(r for r in rows if r.kind == "gap")
    assert sum(ns for _, ns in gap.legs_ns) == answer["webtier->apitier remote"]
    by_phase: dict[str, int] = {}
    for (_, ns), phase in zip(gap.legs_ns, gap.leg_phases, strict=True):
        by_phase[phase] = by_phase.get(phase, 0) + ns
    assert by_phase == {
        "connect": 20_000,
        "request": 30_000,
        "waiting": 100_000,
        "response": 60_000,
        "other": 400_000 - 210_000,
    }
    marks = next(r for r in rows if r.kind == "client").marks
    assert [(m.name, m.at_ms) for m in marks] == [
        ("connect", 0.02),
        ("request sent", 0.05),
        ("first byte", (150_000 + server_ns) / 1e6),
        ("body done", (210_000 + server_ns) / 1e6),
    ]
    assert [(e.role, e.srtt_us, e.min_rtt_us, e.retransmits) for e in gap.kernel] == [
        ("caller", 40, 10, 0)
    ]
    # 0.4 ms over a 0.01 ms floor is within the diagnosis' noise (0.5 ms)
    assert gap.reading.startswith("no component moved beyond noise")


def test_a_call_without_phase_events_is_one_gap_colour_and_no_kernel_line() -> None:
    spans, _ = chain(with_db=False)
    rows, _ = trace_rows(spans)
    gap = next(r for r in rows if r.kind == "gap")
    assert gap.leg_phases == ["gap", "gap"]
    assert gap.kernel == []
    html = render_trace(spans[0].trace_id, spans)
    assert "no kernel testimony on this call" in html
