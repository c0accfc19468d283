"""The read-only JSON API (``/api/v1``) for finance scripts: bearer tokens
(``services.tokens``), JSON answers and errors, CSV on the lists. It reads only what the
dashboard already knows -- the shared cache and the history tables, through the same
services as the pages -- and never calls upstream.

flask-smorest publishes the OpenAPI 3 document at ``/api/v1/openapi.json`` from the
views' own schemas (``schemas``: each reply is dumped through its schema), and
``/api/v1/reference`` renders it as a page, server-side, with no script."""
from __future__ import annotations

from flask_smorest import Api

from .docs import bp as docs_bp
from .views import bp


class DocumentedApi(Api):
    """flask-smorest's Api without its own "default" error reply in the document: every
    error the API gives is documented per endpoint with the one shape it has."""

    DEFAULT_ERROR_RESPONSE_NAME = None


def _csv_too(spec) -> None:
    """The lists' 200 answer in the document is text/csv too (``format=csv``):
    flask-smorest writes one content type a reply, and apispec merges an operation's
    documentation shallowly, so the CSV is added to the built operations."""
    for operations in spec._paths.values():  # apispec keeps them there, as it serves them
        get = operations.get("get", {})
        if any(p.get("name") == "format" for p in get.get("parameters", [])):
            get["responses"]["200"]["content"]["text/csv"] = {"schema": {"type": "string"}}


def init_api(app) -> DocumentedApi:
    """The API's blueprint, its OpenAPI document and its reference page on ``app``.
    Call before the app's own error handlers are registered: flask-smorest registers
    one for every HTTP error, which the dashboard's (HTML, or JSON under /api/)
    replace."""
    app.config.update(API_TITLE="WithGiga Usage & Billing dashboard API", API_VERSION="v1",
                      OPENAPI_VERSION="3.0.3", OPENAPI_URL_PREFIX="/api/v1",
                      OPENAPI_JSON_PATH="openapi.json",
                      API_SPEC_OPTIONS={"info": {"description": bp.description},
                                        "security": [{"bearer": []}]})
    api = DocumentedApi(app)
    api.spec.components.security_scheme("bearer", {
        "type": "http", "scheme": "bearer",
        "description": "a token from Settings › API tokens: wgb_<id>_<secret>_<checksum>"})
    api.register_blueprint(bp)
    _csv_too(api.spec)
    app.register_blueprint(docs_bp)
    app.extensions["api_spec"] = api.spec
    return api
