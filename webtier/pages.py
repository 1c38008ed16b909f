"""The HTML pages, from Jinja2 templates loaded once and autoescaped."""

from jinja2 import Environment, PackageLoader, select_autoescape


class Pages:
    def __init__(self, jaeger_ui_url: str | None) -> None:
        env = Environment(
            loader=PackageLoader("webtier", "templates"),
            autoescape=select_autoescape(default=True),
            # Loaded once; without this, every render stats the parent template's file.
            auto_reload=False,
        )
        self._index = env.get_template("index.html")
        self._error = env.get_template("error.html")
        self._jaeger_ui_url = jaeger_ui_url.rstrip("/") if jaeger_ui_url else None

    def index(self, api_body: str, trace_id: str | None) -> str:
        return self._index.render(
            api_body=api_body, trace_id=trace_id, trace_url=self._trace_url(trace_id)
        )

    def error(self, status_code: int, message: str, trace_id: str | None) -> str:
        return self._error.render(
            status_code=status_code,
            message=message,
            trace_id=trace_id,
            trace_url=self._trace_url(trace_id),
        )

    def _trace_url(self, trace_id: str | None) -> str | None:
        if self._jaeger_ui_url is None or trace_id is None:
            return None
        return f"{self._jaeger_ui_url}/trace/{trace_id}"
