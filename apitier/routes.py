from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from apitier.query import SimulatedQuery

GREETING = "Hello, from the API tier!"

router = APIRouter()


@router.get("/", response_class=PlainTextResponse)
async def hello(request: Request) -> PlainTextResponse:
    query: SimulatedQuery = request.state.query
    with request.state.tracer.start_as_current_span("api-handler"):
        await query.run()
    return PlainTextResponse(GREETING)


@router.get("/healthz", response_class=PlainTextResponse)
async def healthz() -> PlainTextResponse:
    return PlainTextResponse("ok")
