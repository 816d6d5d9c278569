"""`/docs`: Swagger UI served from the service's own files.

FastAPI's default page loads Swagger UI from a public CDN, which leaves it blank on a command
center's isolated network. The assets come from the `swagger-ui-bundle-v2` package (Swagger UI
5, which reads OpenAPI 3.1) and the page starts it from a script file of its own, so the page's
Content-Security-Policy needs no inline script (api/middleware.py sets it).
ReDoc is switched off: it would load from a CDN too.
"""

from __future__ import annotations

import html
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

from config.errors import NotFound

try:
    from swagger_ui_bundle import swagger_ui_path
except ImportError:  # pragma: no cover - a dependency of the project (pyproject.toml)
    swagger_ui_path = None

router = APIRouter(include_in_schema=False)

ASSETS = Path(swagger_ui_path) if swagger_ui_path else None
#: the asset files the page uses, and nothing else of the package's folder
SERVED = {"swagger-ui.css": "text/css", "swagger-ui-bundle.js": "text/javascript",
          "favicon-32x32.png": "image/png"}
START = """window.addEventListener("load", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.getAttribute("data-openapi-url"),
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset]
  });
});
"""


@router.get("/docs")
def docs_page(request: Request) -> HTMLResponse:
    openapi = html.escape(request.app.openapi_url or "/openapi.json")
    title = html.escape(f"{request.app.title} API")
    return HTMLResponse(f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<link rel="stylesheet" type="text/css" href="/docs/assets/swagger-ui.css">
<link rel="icon" type="image/png" href="/docs/assets/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{openapi}"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/assets/start.js"></script>
</body>
</html>
""")


@router.get("/docs/assets/{name}")
def docs_asset(name: str) -> Response:
    if name == "start.js":
        return Response(START, media_type="text/javascript")
    if name not in SERVED or ASSETS is None:
        raise NotFound(f"no docs asset {name!r}")
    return FileResponse(ASSETS / name, media_type=SERVED[name], headers={"Cache-Control": "public, max-age=86400"})
