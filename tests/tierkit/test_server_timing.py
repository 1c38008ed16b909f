import pytest

from tierkit.server_timing import server_timing_durations, server_timing_header


def test_round_trip() -> None:
    header = server_timing_header([("web", 1.25), ("net", 0.5), ("api", 2.0)])
    assert header == "web;dur=1.250, net;dur=0.500, api;dur=2.000"
    assert server_timing_durations(header) == {"web": 1.25, "net": 0.5, "api": 2.0}


@pytest.mark.parametrize(
    ("header", "parsed"),
    [
        (None, {}),
        ("", {}),
        ('app;desc="x";dur=3', {"app": 3.0}),
        ("app;dur=", {}),
        ("app;dur=-1", {}),
        ("app;dur=nan, db;dur=2", {"db": 2.0}),
        ("cache, app;DUR=1", {"app": 1.0}),
        (";dur=1", {}),
    ],
)
def test_parsing_skips_what_it_cannot_use(header: str | None, parsed: dict[str, float]) -> None:
    assert server_timing_durations(header) == parsed
