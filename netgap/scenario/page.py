"""The scenario's HTML page, rendered from netgap/templates/scenario.html as the trace pages
are: one self-contained file (inline CSS and SVG, no scripts, no fonts, no links), saying what
the terminal's table and diagnosis say, with the plots beside them."""

import datetime as dt
import html
import re

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from netgap.scenario import plots
from netgap.scenario.diagnosis import kernel_note
from netgap.scenario.result import KernelInfo, PhaseResult, ScenarioResult
from netgap.scenario.text import duration, part_headers, phase_cells, seconds, window

_env = Environment(
    loader=PackageLoader("netgap", "templates"),
    autoescape=select_autoescape(default=True),
    auto_reload=False,
    keep_trailing_newline=True,
)


def keep_units(text: str) -> Markup:
    """Escaped, numbers kept whole and with their units; `p50 / p99` may break at the slash."""
    escaped = html.escape(text)
    escaped = re.sub(r"(\d)-(\d)", "\\1&#8209;\\2", escaped)  # 90-120 s: a non-breaking hyphen
    return Markup(re.sub(r"(\d) (ms|s)\b", "\\1&nbsp;\\2", escaped))  # noqa: S704 (escaped above)


_env.filters["keep_units"] = keep_units


def _svg(markup: str) -> Markup:
    # netgap.svg escapes every attribute and text it writes
    return Markup(markup)  # noqa: S704


def html_page(result: ScenarioResult) -> str:
    """The page for one run."""
    started = dt.datetime.fromtimestamp(result.start_ns / 1e9, dt.UTC)
    return _env.get_template("scenario.html").render(
        result=result,
        started=f"{started:%Y-%m-%d %H:%M:%S}",
        phases_line=phases_line(result),
        path=path(result),
        diagnosis=result.diagnosis.split("\n\n"),
        plot=_svg(plots.svg_plot(result)),
        log_plot=_svg(plots.svg_log_plot(result)),
        parts_legend=plots.parts_legend(),
        kernel_plots=[(title, _svg(svg)) for title, svg in plots.kernel_plots(result)],
        ends_legend=plots.ends_legend(),
        kernel_note=kernel_note(result) if plots.testified(result) else "",
        phase_header=phase_header(),
        phase_rows=[(phase, phase_row(result, phase)) for phase in result.phases],
        method_note=method_note(result),
        model=model_table(result),
        kernel_lines=kernel_lines(result.kernel),
        kernel_plans=kernel_plans(result.kernel),
    )


def phases_line(result: ScenarioResult) -> str:
    return ", then ".join(
        f"{phase.name} {(phase.end_ns - phase.start_ns) / 1e9:.0f} s" for phase in result.phases
    )


def path(result: ScenarioResult) -> str:
    """How the web tier reaches the API tier in this run."""
    kernel = result.kernel
    if kernel is None:
        return "through the fault proxy"
    via = " and the latency proxy" if kernel.latency_via == "userspace proxy" else ""
    return f"across a routed hop faulted by tc and iptables{via} (kernel mode, see below)"


def phase_header() -> list[str]:
    header = ["phase", "window", "faults", "sent", "ok", "errors", "traces", *part_headers()]
    return [*header, "expected remote (mean)", "measured remote (mean)"]


def phase_row(result: ScenarioResult, phase: PhaseResult) -> list[str]:
    """The page's cells of a phase: the terminal's, with its faults and the measured mean."""
    return [
        phase.name,
        window(result, phase),
        phase.faults_text,
        *phase_cells(result, phase),
        duration(phase.stat("remote", "mean")),
    ]


def method_note(result: ScenarioResult) -> str:
    """How the numbers were made: the windows, the sources, the placement, the exchange."""
    config = result.config
    text = (
        f"Each phase's statistics cover the requests that started in it, leaving out "
        f"{config.settle_s:g} s at either edge of the phase while the faults take hold or "
        "drain; a request started in the fault counts there even when it ended after it. "
        "Self and remote times come from the traces (netgap breakdown); sent, ok and errors "
        "from the load generator, per request started in the phase, with the web tier's cause "
        "of each non-200 answer from its log (logs/webtier.log). The web tier's timeout "
        f"for the API was {config.api_timeout_s:g} s."
    )
    if config.cores:
        placement = ", ".join(
            f"{name} on core {','.join(map(str, c))}" for name, c in config.cores.items()
        )
        text += f" As on separate nodes, each tier had a core of its own ({placement})."
    exchange = result.exchange
    text += (
        f" One exchange on the wire: {exchange.request_bytes} B request and "
        f"{exchange.response_bytes} B response (HTTP headers included; "
        f"{exchange.source})."
    )
    return text


ModelTable = tuple[str, list[tuple[str, str, str, bool]], tuple[str, str], list[tuple[str, str]]]


def model_table(result: ScenarioResult) -> ModelTable | None:
    """The model's intro, its terms (name, expected, how, dominant), its total (expected, the
    dominant term) and the measured remote time; None without a fault phase."""
    model = result.model
    fault = next((p for p in result.phases if p.expected), None)
    if model is None or fault is None or fault.expected is None:
        return None
    expectation = fault.expected
    dominant = expectation.dominant.name
    terms = [
        (term.name, seconds(term.seconds), term.formula, term.name == dominant)
        for term in expectation.terms
    ]
    measured = [
        (f"measured remote, {stat}", duration(fault.stat("remote", stat)))
        for stat in ("mean", "p50", "p99")
    ]
    load = model.load
    intro = (
        f"The model ({model.injector}) for the fault phase: "
        f"{load.requests_per_s:g} requests/s for {load.fault_s:g} s, "
        f"{load.new_connection_share:.0%} of calls on a new connection. Terms are means; "
        "see netgap/scenario/model.py for what each one counts and leaves out."
    )
    return intro, terms, (seconds(expectation.total_s), dominant), measured


def kernel_lines(kernel: KernelInfo | None) -> list[str]:
    """Kernel mode in words: where everything ran, what did which fault (empty otherwise)."""
    if kernel is None:
        return []
    proxy = kernel.latency_via != "netem"
    return [
        f"The API tier ran in network namespace {kernel.namespace} on "
        f"{kernel.api_address} ({kernel.api_device}); the web tier, the collector, the "
        f"load{' and the latency proxy' if proxy else ''} in the root namespace on "
        f"{kernel.web_address} ({kernel.web_device}); between them the hop namespace "
        f"{kernel.hop_namespace} routes every packet, and its two ends "
        f"({', '.join(kernel.hop_devices)}) carry the faults.",
        f"In the kernel: {kernel.kernel_faults}; latency via {kernel.latency_via}"
        + (f": {kernel.proxy_faults}." if proxy else "."),
        *kernel.notes,
    ]


def kernel_plans(kernel: KernelInfo | None) -> list[tuple[str, str]]:
    """Each side's tc/iptables commands: (heading, the commands applied and reverted)."""
    if kernel is None:
        return []
    out = []
    for side, commands in kernel.plan.items():
        text = "\n".join(["# apply", *commands["apply"], "# revert", *commands["revert"]])
        where = f" (in {kernel.namespace}, by ip netns exec)" if side == "api->web" else ""
        out.append((side + where, text))
    return out
