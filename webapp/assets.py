"""Static files with content-hashed names, served by WhiteNoise with a year-long
cache lifetime and precompressed (brotli and gzip) copies.

At start the files under ``static/`` are copied once to
``instance/static-<digest>/`` as ``name.<hash>.ext`` and compressed there;
``url_for('static', filename='app.css')`` then builds the hashed address.
A changed file gets a new name, so a browser never keeps an old one.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path

from whitenoise import WhiteNoise
from whitenoise.compress import Compressor

#: what a hashed name looks like: ``app.0123456789ab.css``
HASHED = re.compile(r"\.[0-9a-f]{12}\.[A-Za-z0-9]+$")
YEAR = 365 * 24 * 3600


def init_assets(app):
    """Serve ``app.static_folder`` through WhiteNoise under hashed names."""
    source = Path(app.static_folder)
    manifest = {rel: hashed_name(rel, digest(source / rel)) for rel in _files(source)}
    build = _build(source, manifest, Path(app.instance_path))
    app.wsgi_app = WhiteNoise(app.wsgi_app, root=str(build), prefix="static/", max_age=YEAR,
                              immutable_file_test=lambda path, url: bool(HASHED.search(url)),
                              add_headers_function=_nosniff)

    @app.url_defaults
    def hashed_static(endpoint, values):
        if endpoint == "static" and values.get("filename") in manifest:
            values["filename"] = manifest[values["filename"]]


def _nosniff(headers, path, url):
    """WhiteNoise answers before Flask's after_request: the header it would add."""
    headers["X-Content-Type-Options"] = "nosniff"


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def hashed_name(rel: str, digest: str) -> str:
    stem, dot, ext = rel.rpartition(".")
    return f"{stem}.{digest}.{ext}" if dot and "/" not in ext else f"{rel}.{digest}"


def _build(source: Path, manifest: dict, instance: Path) -> Path:
    """The folder of hashed, compressed copies for this ``manifest``, made once.

    Several processes may start at once: each builds in a temporary folder and
    renames it into place; a rename that finds the folder made is dropped.
    """
    stamp = hashlib.sha256("".join(sorted(manifest.values())).encode()).hexdigest()[:12]
    build = instance / f"static-{stamp}"
    if build.is_dir():
        return build
    instance.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".static-", dir=instance))
    compressor = Compressor(quiet=True)
    for rel, hashed in manifest.items():
        target = work / hashed
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / rel, target)
        if compressor.should_compress(str(target)):
            compressor.compress(str(target))
    try:
        os.rename(work, build)
    except OSError:  # another process got there first: same content
        shutil.rmtree(work, ignore_errors=True)
    return build
