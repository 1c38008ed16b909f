from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, PlainTextResponse
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from webtier.api_client import ApiClient, ApiError
from webtier.pages import Pages

router = APIRouter()


@router.get("/", response_class=HTMLResponse)
async def index(request: Request) -> HTMLResponse:
    api: ApiClient = request.state.api
    pages: Pages = request.state.pages
    span = trace.get_current_span()
    context = span.get_span_context()
    trace_id = trace.format_trace_id(context.trace_id) if context.is_valid else None
    try:
        reply = await api.fetch()
    except ApiError as exc:
        # An expected failure: a status, a short page, one log line; no traceback anywhere.
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, str(exc)))
        request.state.error = str(exc)
        page = pages.error(exc.status_code, str(exc), trace_id)
        return HTMLResponse(page, status_code=exc.status_code)
    request.state.reply = reply
    if reply.exchange.retried_ns is not None:  # on a new connection: the log line says so
        request.state.retried = True
    return HTMLResponse(pages.index(reply.body, trace_id))


@router.get("/healthz", response_class=PlainTextResponse)
async def healthz() -> PlainTextResponse:
    # Never calls the API: the web tier's health is not hostage to its dependency.
    return PlainTextResponse("ok")
