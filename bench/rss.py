"""Item 6: each tier's resident memory (RSS) after a stretch at load on the lab stack."""

import time

from bench import stack
from bench.http import wrk
from bench.report import Figure
from bench.run import Run


def rss_at_load(run: Run, lab: stack.Tiers) -> None:
    """Both tiers' RSS sampled every `soak_step_s` of `soak_s` at load."""
    plan = run.plan
    run.say(f"RSS: {plan.soak_s:g} s at {plan.connections} connections on the lab stack ...")
    samples = [{"t_s": 0.0, "web_mb": lab.web.rss_mb(), "api_mb": lab.api.rss_mb()}]
    started = time.monotonic()
    requests = 0
    while time.monotonic() - started < plan.soak_s - 0.5:
        step = min(plan.soak_step_s, plan.soak_s - (time.monotonic() - started))
        result = wrk(lab.url, plan.connections, max(1.0, step), run.wrk_on_last)
        requests += result.requests
        samples.append(
            {
                "t_s": round(time.monotonic() - started, 1),
                "web_mb": lab.web.rss_mb(),
                "api_mb": lab.api.rss_mb(),
                "rate": round(result.rate, 1),
            }
        )
    run.rounds["rss"] = {"samples": samples, "requests": requests}
    first, last = samples[0], samples[-1]
    after = f"after {last['t_s']:.0f} s at load"
    run.add(
        Figure(6, f"web tier RSS {after}", last["web_mb"], "MB", "<=", 100),
        Figure(6, f"API tier RSS {after}", last["api_mb"], "MB", "<=", 100),
        Figure(6, "  web tier RSS growth over it", last["web_mb"] - first["web_mb"], "MB"),
        Figure(6, "  API tier RSS growth over it", last["api_mb"] - first["api_mb"], "MB"),
    )  # fmt: skip
