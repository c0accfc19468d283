"""``/api/v1/reference``: the OpenAPI document as a page, rendered on the server from
the very document flask-smorest serves (no script, no CDN)."""
from flask import Blueprint, current_app, render_template

bp = Blueprint("api_docs", __name__, url_prefix="/api/v1")


@bp.get("/reference")
def reference():
    spec = current_app.extensions["api_spec"].to_dict()
    return render_template("api/reference.html", spec=spec,
                           schemas=spec.get("components", {}).get("schemas", {}))
