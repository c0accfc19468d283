"""The certified OpenID provider (node ``oidc-provider``, tests/support/oidc_node/provider.mjs)
as a real process on loopback, and a person signing in at its pages with ``requests``.

It is strict where real providers are: PKCE with S256 for every client, email and groups
only from userinfo (never in the ID token of the code flow), redirect URIs matched exactly.
Its accounts are a JSON file read again at every look-up, so ``set_account`` between two
sign-ins is what the provider says the next time.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import requests

from .net import closed_port
from .processes import stop_process

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).resolve().parent / "oidc_node" / "provider.mjs"


class NodeProvider:
    """``node provider.mjs`` on a free loopback port, with ``clients`` (dicts of
    client_id, client_secret, redirect_uris, post_logout_redirect_uris) and ``accounts``
    ({login: {sub, email, email_verified, groups, name}}, ``sub`` by default ``sub-<login>``);
    its files live in ``folder``. Raises ``RuntimeError`` (with the process's stderr) when
    it does not start."""

    def __init__(self, folder: Path, clients: list[dict], accounts: dict | None = None,
                 timeout: float = 20, host: str = "127.0.0.1"):
        if shutil.which("node") is None:
            raise RuntimeError("node is not installed (the strict OIDC tests need Node.js 20+)")
        if not (ROOT / "node_modules" / "oidc-provider").is_dir():
            raise RuntimeError("node_modules/oidc-provider is missing: run `npm install` at the "
                               "project's root")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = closed_port()
        # it listens on 127.0.0.1; ``host="localhost"`` names it so that its pages are
        # another site than a dashboard on 127.0.0.1, as a real provider's are
        self.issuer = f"http://{host}:{self.port}"
        self.clients = clients
        self.accounts_file = self.folder / "accounts.json"
        self._accounts: dict = {}
        self._write_accounts({login: {"sub": f"sub-{login}", **entry}
                              for login, entry in (accounts or {}).items()})
        config = self.folder / "provider.json"
        config.write_text(json.dumps({"port": self.port, "issuer": self.issuer,
                                      "clients": clients,
                                      "accounts_file": str(self.accounts_file)}))
        self._stderr_path = self.folder / "provider.stderr"
        self._stderr = open(self._stderr_path, "wb")
        self.proc = subprocess.Popen(["node", str(SCRIPT), str(config)], cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=self._stderr,
                                     start_new_session=True)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        lines: list[bytes] = []
        ready = threading.Event()

        def read():
            for line in self.proc.stdout:
                lines.append(line)
                if line.startswith(b"listening "):
                    ready.set()
            ready.set()  # the process closed its stdout: it has ended

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        if ready.wait(timeout) and lines and lines[-1].startswith(b"listening "):
            return
        ended = self.proc.poll()
        what = (f"ended with status {ended}" if ended is not None
                else f"did not say it was listening within {timeout:g} s")
        raise RuntimeError(f"the node OpenID provider {what}; stdout: "
                           f"{b''.join(lines).decode(errors='replace')!r}; stderr: "
                           f"{self.stderr()!r}")

    def stderr(self) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        return self._stderr_path.read_text(errors="replace")

    @property
    def client(self) -> dict:
        return self.clients[0]

    @property
    def discovery_url(self) -> str:
        return self.issuer + "/.well-known/openid-configuration"

    def _write_accounts(self, accounts: dict) -> None:
        self._accounts = accounts
        spare = self.accounts_file.with_suffix(".tmp")
        spare.write_text(json.dumps(accounts))
        os.replace(spare, self.accounts_file)  # the provider never reads half a file

    def set_account(self, login: str, **claims) -> None:
        """Add ``login`` or change what the provider says of them (``groups=[...]``...);
        the claims not named stay as they were."""
        accounts = {name: dict(entry) for name, entry in self._accounts.items()}
        accounts.setdefault(login, {"sub": f"sub-{login}"}).update(claims)
        self._write_accounts(accounts)

    def stop(self) -> None:
        stop_process(self.proc, 10)
        self._reader.join(5)  # it ends at the closed stdout
        self.proc.stdout.close()
        self._stderr.close()


def new_client(redirect_uris: list[str], post_logout_redirect_uris: list[str] | None = None,
               client_id: str = "giga-dashboard") -> dict:
    """A confidential web client (client_secret_basic, Authlib's default)."""
    return {"client_id": client_id, "client_secret": secrets.token_urlsafe(24),
            "redirect_uris": redirect_uris,
            "post_logout_redirect_uris": post_logout_redirect_uris or []}


class _Page(HTMLParser):
    """The forms (action, fields) and links of one of the provider's pages."""

    def __init__(self):
        super().__init__()
        self.forms: list[dict] = []
        self.links: list[tuple[str, str]] = []
        self._href: str | None = None
        self._text = ""

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.forms.append({"action": attrs.get("action") or "", "id": attrs.get("id"),
                               "fields": {}})
        elif tag == "input" and self.forms and attrs.get("name") \
                and attrs.get("type") in ("hidden", None):
            self.forms[-1]["fields"][attrs["name"]] = attrs.get("value") or ""
        elif tag == "a":
            self._href, self._text = attrs.get("href"), ""

    def handle_data(self, data):
        if self._href is not None:
            self._text += data

    def handle_endtag(self, tag):
        if tag == "a" and self._href is not None:
            self.links.append((self._text.strip(), self._href))
            self._href = None


def _origin(url: str) -> tuple:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port


def _walk(http: requests.Session, authorize_url: str, login: str | None, password: str,
          deny: bool) -> str:
    """Go through the provider's pages from ``authorize_url`` until it sends the browser
    away from itself; that Location (at the client's redirect_uri) is returned unfollowed."""
    provider = _origin(authorize_url)
    response = http.get(authorize_url, allow_redirects=False, timeout=10)
    seen = []
    for _ in range(12):
        if response.is_redirect:
            location = urljoin(response.url, response.headers["Location"])
            if _origin(location) != provider:
                return location
            response = http.get(location, allow_redirects=False, timeout=10)
            continue
        page = _Page()
        page.feed(response.text)
        prompt = next((f["fields"].get("prompt") for f in page.forms
                       if f["fields"].get("prompt")), None)
        if response.status_code != 200 or prompt is None:
            raise RuntimeError(f"the provider answered {response.status_code} at "
                               f"{response.url}: {response.text[:500]}")
        seen.append(prompt)
        if seen.count(prompt) > 1:
            raise RuntimeError(f"the provider asked for {prompt} again at {response.url}")
        if deny:
            cancel = next(href for text, href in page.links if "Cancel" in text)
            response = http.get(urljoin(response.url, cancel), allow_redirects=False,
                                timeout=10)
            continue
        form = next(f for f in page.forms if f["fields"].get("prompt") == prompt)
        data = dict(form["fields"])
        if prompt == "login":
            data.update(login=login, password=password)
        response = http.post(urljoin(response.url, form["action"]), data=data,
                             allow_redirects=False, timeout=10)
    raise RuntimeError(f"the provider kept the browser past {len(seen)} pages")


def sign_in_at_node_provider(http: requests.Session, authorize_url: str, login: str,
                             password: str = "any") -> str:
    """Sign in as ``login`` at the provider's own pages (any password), consent, and
    return where the provider sends the browser back (the client's redirect_uri with
    ``code`` and ``state``, or ``error``), not followed. With the provider's session
    still in ``http``'s cookies, no page is shown and the answer comes at once."""
    return _walk(http, authorize_url, login, password, deny=False)


def deny_at_node_provider(http: requests.Session, authorize_url: str) -> str:
    """Press "[ Cancel ]" on the provider's first page: the redirect back carries
    ``error=access_denied``."""
    return _walk(http, authorize_url, None, "", deny=True)


def sign_out_at_node_provider(http: requests.Session, end_session_url: str) -> str:
    """Open the provider's end-session URL and confirm ("Yes, sign me out": the provider
    always asks, even with an ``id_token_hint``). Returns the post-logout redirect's
    Location, or the provider's own "Signed out" page URL when none was asked for."""
    response = http.get(end_session_url, allow_redirects=False, timeout=10)
    page = _Page()
    page.feed(response.text)
    form = next((f for f in page.forms if f["id"] == "op.logoutForm"), None)
    if form is None:
        raise RuntimeError(f"no sign-out form at {response.url}: {response.text[:500]}")
    response = http.post(urljoin(response.url, form["action"]),
                         data={**form["fields"], "logout": "yes"}, allow_redirects=False,
                         timeout=10)
    for _ in range(5):
        if not response.is_redirect:
            return response.url
        location = urljoin(response.url, response.headers["Location"])
        if _origin(location) != _origin(end_session_url):
            return location
        response = http.get(location, allow_redirects=False, timeout=10)
    raise RuntimeError("the provider kept redirecting after sign-out")

