"""The web page at `/` (static files, KaTeX vendored) and the offline API docs at `/docs`."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"

# The page loads nothing from elsewhere; the policy makes the browser enforce that.
_PAGE_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


def install_pages(app: FastAPI) -> None:
    """Mount the page's static files and add `/` and `/docs` (left out of the OpenAPI schema)."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Content-Security-Policy": _PAGE_CSP})

    try:  # Swagger UI's files, shipped inside the fastapi-offline package (the [serve] extra)
        docs_assets = resources.files("fastapi_offline") / "static"
    except ModuleNotFoundError:
        docs_assets = None
    if docs_assets is not None:
        app.mount("/docs-assets", StaticFiles(directory=str(docs_assets)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        if docs_assets is None:
            return HTMLResponse(
                "<!doctype html><title>texscribe API</title><p>The interactive docs need the "
                "<code>fastapi-offline</code> package (<code>pip install texscribe[serve]</code>). "
                'The API description is at <a href="/openapi.json">/openapi.json</a>.</p>'
            )
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title="texscribe API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon.png",
            swagger_ui_parameters={"validatorUrl": None},
        )
