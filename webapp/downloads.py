"""CSV downloads: streamed row by row (nothing cut short), safe to open in a
spreadsheet (no cell is ever run as a formula), and holding no database
transaction while the client reads: a client may read slowly, or stop
reading and keep the connection open, for as long as it likes.
"""
from __future__ import annotations

import csv
import io

from flask import Response, stream_with_context
from sqlalchemy import and_, or_

from .clock import app_clock
from .extensions import db

#: rows a download reads from the database at a time, each batch in a short
#: transaction of its own (a few hundred kB of CSV)
CHUNK_ROWS = 500


def safe_cell(value) -> str:
    """A CSV cell a spreadsheet shows as text: never a formula."""
    text = "" if value is None else str(value)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text
    return text


def in_chunks(statement, keys, convert, *, newest_first=False):
    """What ``convert`` makes of each entity ``statement`` selects, in the order of
    ``keys`` (columns that together are unique, like a time and the id), read
    ``CHUNK_ROWS`` at a time.

    Each batch is its own query for the rows after the last key seen (keyset
    pagination: no offset to count past, and rows written meanwhile neither
    repeat nor shift the rest), converted while loaded, and the session closed
    before the batch is handed on: between batches no transaction is open and no
    connection held, however slowly the client reads. Reading them all up front
    would do the same but hold every row in memory, and the history and the
    trail grow without bound.
    """
    order = [key.desc() if newest_first else key.asc() for key in keys]
    after = None
    while True:
        batch = statement.order_by(None).order_by(*order).limit(CHUNK_ROWS)
        if after is not None:
            batch = batch.where(beyond(keys, after, newest_first))
        found = db.session.scalars(batch).all()
        rows = [convert(entity) for entity in found]
        if found:
            after = tuple(getattr(found[-1], key.key) for key in keys)
        db.session.close()
        yield from rows
        if len(found) < CHUNK_ROWS:
            return


def beyond(keys, values, newest_first):
    """``keys`` come after ``values`` in the download's order (a row comparison spelt
    out, which every database reads the same way)."""
    ahead = []
    for i, key in enumerate(keys):
        step = key < values[i] if newest_first else key > values[i]
        ahead.append(and_(*[k == v for k, v in zip(keys[:i], values[:i])], step))
    return or_(*ahead)


def csv_download(rows, name: str) -> Response:
    """Stream ``rows`` (the header first) as ``<name>-<time>.csv``. The view's own
    reads are over by now: its session is closed, so its transaction does not last
    as long as the client takes to read."""
    db.session.close()

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
