"""The scenario's report as files: the JSON for programs (ScenarioResult.to_json) and the
page for people (netgap.scenario.page), side by side in the run's output directory."""

import json
from pathlib import Path

from netgap.scenario.page import html_page
from netgap.scenario.result import ScenarioResult

JSON_NAME = "scenario.json"
HTML_NAME = "scenario.html"


def write(result: ScenarioResult, out: Path) -> tuple[Path, Path]:
    """Writes the JSON and the HTML page into `out`; their paths."""
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / JSON_NAME
    html_path = out / HTML_NAME
    json_path.write_text(json.dumps(result.to_json(), indent=2) + "\n")
    html_path.write_text(html_page(result))
    return json_path, html_path
