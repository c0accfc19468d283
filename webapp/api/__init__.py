"""The read-only JSON API (``/api/v1``) for finance scripts: bearer tokens
(``services.tokens``), JSON answers and errors, CSV on the lists. It reads only what the
dashboard already knows -- the shared cache and the history tables, through the same
services as the pages -- and never calls upstream."""
