"""`python -m bench.soak` as `make soak` runs it, for 60 s instead of 10 minutes: 100 req/s to
the traced web tier (calling the API tier, spans to a real collector) with zero errors, each
tier's RSS growth under the bound, open file descriptors flat, and every request's spans in the
collector; read back from the JSON it writes, so the test checks the figures, not the soak's own
verdict. Then the checks themselves on made-up samples (a leak must fail them), and bad flags.

The 60 s run is the same code as the 10-minute one (after a 15 s warm-up instead of 30 s), with
a 5% growth bound instead of 10%: a leak shows a tenth of its 10-minute growth in a minute, while
a healthy tier still grows a little after a short warm-up (+0.2% to +2% here). Keeping every
response in the web tier (~1.4 kB a request) grew it +11.5% in the minute.
"""

import json
import statistics
import subprocess
import sys
from dataclasses import dataclass, replace
from typing import Any

import pytest

import bench.soak
from bench.soak import Check, Limits, Sample, checks, curve, main, sample_times
from netgap.loadgen import LoadConfig, LoadResult
from tests.harness import ROOT

RATE = 100
DURATION_S = 60
WARMUP_S = 15
EVERY_S = 5
MAX_GROWTH_PCT = 5.0
FD_SLACK = 10
TIERS = ("web", "api")


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str
    document: dict[str, Any]

    @property
    def soak(self) -> list[dict[str, Any]]:
        return [s for s in self.document["samples"] if s["phase"] == "soak"]

    def growth_pct(self, tier: str) -> float:
        first, last = self.soak[0]["rss_mb"][tier], self.soak[-1]["rss_mb"][tier]
        return float((last - first) / first * 100)

    def shown(self) -> str:
        return f"{self.stdout}\n{self.stderr[-3000:]}"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    out = tmp_path_factory.mktemp("soak") / "soak.json"
    command = [
        sys.executable, "-m", "bench.soak", "--duration", f"{DURATION_S}s", "--rate", str(RATE),
        "--warmup", f"{WARMUP_S}s", "--every", f"{EVERY_S}s",
        "--max-growth", str(MAX_GROWTH_PCT), "--fd-slack", str(FD_SLACK), "--out", str(out),
    ]  # fmt: skip
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=DURATION_S + WARMUP_S + 90
    )
    assert out.exists(), f"no JSON written (exit {done.returncode}):\n{done.stderr[-3000:]}"
    return Run(done.returncode, done.stdout, done.stderr, json.loads(out.read_text()))


@pytest.mark.timeout(DURATION_S + WARMUP_S + 120)
def test_every_request_of_the_minute_is_answered(run: Run) -> None:
    load = run.document["load"]
    assert load["sent"] == RATE * (DURATION_S + WARMUP_S), load
    assert load["errors"] == 0, load
    assert load["ok"] == load["sent"], load
    assert load["latency_ms"]["p99"] < 1000, load  # answered, not merely eventually


def test_rss_of_each_tier_grows_less_than_the_bound(run: Run) -> None:
    for tier in TIERS:
        assert run.growth_pct(tier) < MAX_GROWTH_PCT, (tier, [s["rss_mb"] for s in run.soak])


def test_open_fds_of_each_tier_stay_flat(run: Run) -> None:
    quarter = max(3, len(run.soak) // 4)
    for tier in TIERS:
        fds = [s["fds"][tier] for s in run.soak]
        gained = statistics.median(fds[-quarter:]) - statistics.median(fds[:quarter])
        assert gained <= FD_SLACK, (tier, fds)


def test_the_collector_stored_every_requests_spans(run: Run) -> None:
    spans = run.document["spans"]
    assert spans["stored"] == 5 * run.document["load"]["ok"], spans


def test_it_samples_every_5_s_prints_the_curve_and_passes(run: Run) -> None:
    times = [s["t_s"] for s in run.document["samples"]]
    assert times == pytest.approx(sample_times(WARMUP_S, DURATION_S, EVERY_S), abs=1.0)
    assert len(run.soak) == DURATION_S // EVERY_S + 1
    for sample in run.document["samples"]:
        assert set(sample["rss_mb"]) == set(sample["fds"]) == set(TIERS), sample
        assert all(10 < mb < 1000 for mb in sample["rss_mb"].values()), sample
    for line in ("web RSS", "API RSS", "web fds", "API fds", "zero errors", "soak: pass"):
        assert line in run.stdout, run.shown()
    assert run.document["pass"] is True
    assert run.returncode == 0, run.shown()


# -- the checks on made-up samples -----------------------------------------------------------


def made_up(web_mb: list[float], web_fds: list[int]) -> list[Sample]:
    """Soak samples a second apart: the web tier's as given, the API tier's steady."""
    pairs = enumerate(zip(web_mb, web_fds, strict=True))
    return [
        Sample(
            float(i), "soak", 100 * i, 100 * i, 0, {"web": mb, "api": 60.0}, {"web": fd, "api": 12}
        )
        for i, (mb, fd) in pairs
    ]


def result(sent: int, errors: dict[str, int] | None = None) -> LoadResult:
    errors = errors or {}
    config = LoadConfig("http://127.0.0.1:1/", rate=100)
    ok = sent - sum(errors.values())
    return LoadResult(config, 10.0, sent, ok, errors, {"p50": 1.0}, 0.0)


def failed(found: list[Check]) -> list[str]:
    return [c.name for c in found if not c.passed]


def test_the_checks_pass_a_steady_run_and_fail_a_leak_errors_and_lost_spans() -> None:
    limits = Limits(max_growth_pct=10.0, fd_slack=10)
    # a burst of connections in the middle and at the very end is not a leak
    steady = made_up(
        [70.0, 70.4, 70.2, 70.6, 70.5, 70.6, 70.6, 70.7], [14, 16, 15, 40, 16, 15, 14, 60]
    )
    assert failed(checks(result(300), steady, 1500, limits)) == []
    leaking = made_up(
        [70.0, 71.0, 72.0, 73.0, 74.0, 75.0, 76.0, 78.0], [14, 20, 26, 32, 38, 44, 50, 56]
    )
    assert failed(checks(result(300), leaking, 1500, limits)) == [
        "web tier RSS growth",
        "web tier open fds flat",
    ]
    assert failed(checks(result(300, {"5xx": 1}), steady, 1495, limits)) == ["zero errors"]
    assert failed(checks(result(300), steady, 1499, limits)) == ["every request traced"]
    assert failed(checks(result(300), steady, None, limits)) == ["every request traced"]
    warm_up_growth = [
        replace(s, phase="warm-up", rss_mb={"web": 40.0, "api": 40.0}) for s in steady
    ]
    assert failed(checks(result(300), warm_up_growth[:1] + steady, 1500, limits)) == []


def test_a_curve_spans_its_own_range() -> None:
    assert curve([1.0, 2.0, 3.0]) == "▁▅█"
    assert curve([5.0, 5.0]) == "▁▁"
    assert len(curve([float(i) for i in range(500)])) == 60
    assert curve([70.0, 70.5, 71.0], least_span=7.0) == "▁▁▂"  # 1 MB of a 7 MB limit


# -- the command line -------------------------------------------------------------------------


def refuse_to_run(*args: object) -> int:
    raise AssertionError("the command line was accepted")


def test_help_says_what_it_does(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--duration", "--rate", "--warmup", "--every", "--max-growth", "--fd-slack"):
        assert flag in text
    assert "zero errors" in text


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--duration", "0"], "argument --duration: must be more than 0"),
        (["--duration", "soon"], "argument --duration: not a duration: 'soon'"),
        (["--rate", "-5"], "argument --rate: must be more than 0"),
        (["--rate", "nan"], "argument --rate: must be more than 0"),
        (["--warmup=-1s"], "argument --warmup: must not be negative"),
        (["--warmup", "later"], "argument --warmup: not a duration"),
        (["--every", "0"], "argument --every: must be more than 0"),
        (["--every", "40s", "--duration", "1m"], "argument --every: 40 s leaves fewer than 3"),
        (["--max-growth", "0"], "argument --max-growth: must be more than 0"),
        (["--fd-slack", "-1"], "argument --fd-slack: must be 0 or more"),
        (["--fd-slack", "some"], "argument --fd-slack: not a whole number"),
        (["--soak"], "unrecognized arguments: --soak"),
    ],
)
def test_a_bad_flag_is_one_line_naming_it_and_exit_2(
    args: list[str], says: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A flag let through by mistake must fail here at once, not start a 10-minute soak.
    monkeypatch.setattr(bench.soak, "soak", refuse_to_run)
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1, captured.err
    assert says in captured.err
