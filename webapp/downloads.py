"""CSV downloads: streamed row by row (nothing cut short), and safe to open in a
spreadsheet (no cell is ever run as a formula)."""
from __future__ import annotations

import csv
import io

from flask import Response, stream_with_context

from .clock import app_clock


def safe_cell(value) -> str:
    """A CSV cell a spreadsheet shows as text: never a formula."""
    text = "" if value is None else str(value)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text
    return text


def csv_download(rows, name: str) -> Response:
    """Stream ``rows`` (the header first) as ``<name>-<time>.csv``."""
    def lines():
        out = io.StringIO()
        writer = csv.writer(out)
        for row in rows:
            writer.writerow([safe_cell(v) for v in row])
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    stamp = app_clock().now().strftime("%Y%m%d-%H%M")
    return Response(stream_with_context(lines()), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{name}-{stamp}.csv"'})
