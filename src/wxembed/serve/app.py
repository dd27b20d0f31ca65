"""The web app: the page at ``/``, its JSON API under ``/api``, the OpenAPI page at ``/docs``.

:func:`create_app` builds a FastAPI app over one :class:`~wxembed.serve.explorer.Explorer`;
every route is a few lines over one of its methods (or :mod:`.regimes`). Routes that compute
are plain functions, which FastAPI runs on its thread pool; the explorer is thread-safe.

A request's mistakes get a 4xx and ``{"detail": "<one line>"}``: a value FastAPI's checks
refuse (400), a time, hour or choice the explorer refuses (400, or 404 for what is not there),
an upload too large (413) or of another kind (415), a clustering on a read-only server (403).
An upload's body is read with a size cap and a deadline, so no request can fill memory or hold
a worker.
"""

from __future__ import annotations

import contextlib
import logging
from importlib.resources import files
from typing import Annotated, Literal

import anyio
from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from wxembed.errors import ServeError, WxembedError
from wxembed.evaluation.metrics import strict_json
from wxembed.serve import regimes
from wxembed.serve.config import ServeConfig, parse_ints, parse_time
from wxembed.serve.explorer import Explorer, SearchFilters
from wxembed.serve.upload import upload_too_large

log = logging.getLogger(__name__)

STATIC = files("wxembed.serve") / "static"
UPLOAD_SECONDS = 30.0
"""How long an upload's body may take to arrive."""
PNG_HEADERS = {"Cache-Control": "max-age=300"}


class StrictJSONResponse(JSONResponse):
    """JSON with undefined scores (NaN) as null, which browsers' JSON.parse accepts."""

    def render(self, content) -> bytes:
        return strict_json(content, indent=None).encode("utf-8")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())[:500]


def _error(status: int, detail: str) -> StrictJSONResponse:
    return StrictJSONResponse({"detail": _one_line(detail)}, status_code=status)


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "path"))
        return _error(400, f"{where}: {first.get('msg', 'invalid')}" if where else first["msg"])

    @app.exception_handler(ServeError)
    async def refused(request: Request, exc: ServeError):
        return _error(exc.status, str(exc))

    @app.exception_handler(WxembedError)
    async def mistaken(request: Request, exc: WxembedError):
        return _error(400, str(exc))

    @app.exception_handler(HTTPException)
    async def http(request: Request, exc: HTTPException):
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception):
        log.exception("%s %s failed", request.method, request.url.path)
        return _error(500, f"internal error ({type(exc).__name__}); the server log has the details")


def search_filters(
    k: Annotated[int, Query(ge=1, le=1000, description="How many hours.")] = 5,
    metric: Annotated[Literal["euclidean", "cosine"], Query()] = "euclidean",
    exclude_hours: Annotated[
        float, Query(ge=0, le=1e6, description="Leave out hours this close to the query's time.")
    ] = 24.0,
    no_exclusion: Annotated[bool, Query(description="Leave out nothing.")] = False,
    months: Annotated[str | None, Query(max_length=40, description="e.g. 6,7,8")] = None,
    hours: Annotated[str | None, Query(max_length=100, description="UTC hours, e.g. 12,18")] = None,
    start: Annotated[str | None, Query(max_length=40, description="Only from this time.")] = None,
    end: Annotated[str | None, Query(max_length=40, description="Only before this time.")] = None,
    coverage_weight: Annotated[
        float | None,
        Query(
            ge=0,
            le=1000,
            description="How much the amount of echo counts (0: pattern alone; 1: hours with as "
            "much echo first; default: as the model was trained).",
        ),
    ] = None,
) -> SearchFilters:
    """The filters of ``wxembed search``, from the query string."""
    return SearchFilters(
        k=k,
        metric=metric,
        exclude_hours=None if no_exclusion else exclude_hours,
        months=parse_ints(months, 1, 12, "months"),
        hours=parse_ints(hours, 0, 23, "hours"),
        start=parse_time(start, "start") if start else None,
        end=parse_time(end, "end") if end else None,
        coverage_weight=coverage_weight,
    )


Filters = Annotated[SearchFilters, Depends(search_filters)]
HourPath = Annotated[str, Path(max_length=40, description="An hour, e.g. 2024-07-01T18")]
Width = Annotated[int | None, Query(ge=16, le=8192, description="At most this many pixels wide.")]


def png(data: bytes) -> Response:
    return Response(content=data, media_type="image/png", headers=PNG_HEADERS)


async def read_body(request: Request, limit: int) -> bytes:
    """The request's body, refused (413) past ``limit`` bytes or after ``UPLOAD_SECONDS``."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ServeError("Content-Length is not a number")
        if int(declared) > limit:
            raise ServeError(upload_too_large(int(declared), limit), 413)
    chunks, size = [], 0
    try:
        with anyio.fail_after(UPLOAD_SECONDS):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise ServeError(upload_too_large(None, limit), 413)
                chunks.append(chunk)
    except TimeoutError:
        raise ServeError(f"the upload took longer than {UPLOAD_SECONDS:.0f} s", 408) from None
    return b"".join(chunks)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("wxembed")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "unknown"


def create_app(config: ServeConfig | Explorer) -> FastAPI:  # long: one route per action
    """The app serving ``config`` (or an explorer already open): the page and the API. An
    explorer the app opened itself is closed (its index connection too) when the app stops."""
    owned = not isinstance(config, Explorer)
    ex = Explorer(config) if owned else config
    ex.warm()

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        if owned:
            ex.close()

    app = FastAPI(
        lifespan=lifespan,
        title="wxembed explorer",
        summary="Browse a radar archive, find similar weather, see regimes and reconstructions.",
        version=_version(),
        default_response_class=StrictJSONResponse,
        docs_url=None,
        redoc_url=None,
    )
    app.state.explorer = ex
    _install_errors(app)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    _add_docs(app)

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(str(STATIC / "index.html"), media_type="text/html")

    @app.get("/api/info", summary="What is served: archive, model, index, options")
    def info():
        return ex.info()

    @app.get("/api/manifest", summary="Every hour of the archive: status, reason, source")
    def manifest():
        return ex.manifest_rows()[0]

    @app.get("/api/hours/{time}", summary="One hour's manifest row and its pictures")
    def hour(time: HourPath):
        return ex.hour(parse_time(time))

    @app.get("/api/hours/{time}/image.png", summary="One hour as a PNG (cached)")
    def hour_image(
        time: HourPath,
        view: Literal["original", "reconstruction", "matched", "difference"] = "original",
        width: Width = None,
    ):
        return png(ex.hour_png(parse_time(time), view, width))

    @app.get("/api/hours/{time}/reconstruction", summary="The model's reconstruction's scores")
    def reconstruction(time: HourPath):
        return ex.reconstruction(parse_time(time))

    @app.get("/api/hours/{time}/similar", summary="The hours most like this one")
    def similar(time: HourPath, filters: Filters):
        return ex.similar(parse_time(time), filters)

    @app.post(
        "/api/similar",
        summary="The hours most like an uploaded field (GRIB2 or .npy as the request body)",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/octet-stream": {"schema": {"type": "string"}}},
            }
        },
    )
    async def similar_upload(request: Request, filters: Filters):
        body = await read_body(request, ex.config.max_upload_bytes)
        return await run_in_threadpool(ex.similar_to_upload, body, filters)

    @app.get("/api/clusters", summary="The clusterings stored in the index")
    def clusters():
        return regimes.clusterings(ex)

    @app.get("/api/clusters/{k}", summary="A stored clustering: sizes, occurrence, centroids")
    def clustering(k: Annotated[int, Path(ge=1, le=1000)]):
        return regimes.clustering(ex, k)

    @app.post("/api/clusters", summary="Run k-means (only with --allow-clustering)")
    def cluster(
        k: Annotated[int, Query(ge=1, le=1000)],
        seed: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    ):
        return regimes.run_clustering(ex, k, seed)

    @app.get("/api/clusters/{k}/{cluster}/image.png", summary="A decoded centroid as a PNG")
    def centroid_image(
        k: Annotated[int, Path(ge=1, le=1000)],
        cluster: Annotated[int, Path(ge=0, le=1000)],
        width: Width = None,
    ):
        return png(regimes.centroid_png(ex, k, cluster, width))

    @app.get("/api/interpolate", summary="Decoded midpoint of two hours against the truth")
    def interpolate(
        start: Annotated[str, Query(max_length=40)],
        end: Annotated[str, Query(max_length=40)],
        weight: Annotated[float, Query(ge=0, le=1)] = 0.5,
    ):
        return regimes.interpolation(ex, parse_time(start, "start"), parse_time(end, "end"), weight)

    @app.get("/api/interpolate/image.png", summary="One picture of an interpolation")
    def interpolate_image(
        start: Annotated[str, Query(max_length=40)],
        end: Annotated[str, Query(max_length=40)],
        panel: Literal["truth", "embedding_midpoint", "pixel_average"],
        weight: Annotated[float, Query(ge=0, le=1)] = 0.5,
        width: Width = None,
    ):
        t0, t1 = parse_time(start, "start"), parse_time(end, "end")
        return png(regimes.interpolation_png(ex, t0, t1, weight, panel, width))

    @app.get("/api/scores", summary="The scores wxembed evaluate wrote (evaluation.json)")
    def scores():
        return ex.scores()

    return app


def _add_docs(app: FastAPI) -> None:
    """The OpenAPI page at ``/docs``: Swagger UI served from the ``swagger-ui-bundle`` package
    when it is installed (nothing fetched from the internet), else a link to the schema."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        swagger_ui_path = None
    if swagger_ui_path is not None:
        app.mount("/docs-assets", StaticFiles(directory=swagger_ui_path), name="docs-assets")
    app.openapi_version = "3.0.3"  # what the bundled Swagger UI 4 reads

    @app.get("/docs", include_in_schema=False)
    def docs():
        from fastapi.openapi.docs import get_swagger_ui_html
        from fastapi.responses import HTMLResponse

        if swagger_ui_path is None:
            return HTMLResponse('<p>The API schema: <a href="/openapi.json">/openapi.json</a></p>')
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="wxembed explorer API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
        )


__all__ = ["StrictJSONResponse", "create_app", "read_body", "search_filters"]
