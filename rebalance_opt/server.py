"""The local web app: the drift visualizer page and a small JSON API over the engine.

``python cli.py serve ACCOUNT ...`` calls :func:`run`; tests build the app with :func:`create_app`.

Only the account files named at start-up can be read; a request addresses one by its position in
that list (``0``, ``1``, ...) or by its account id, never by a path. An id may hold ``/``: ``{key}``
is the rest of the URL path up to the route's last segment, percent-encoded (``firm%2Fhh-1``, as the
page sends it, with ``encodeURIComponent``) or not. Files are re-read on every request, so edits
show up on the next reload of the page.

API (every body is JSON; every error is ``{"error": {"message", "path", "file"}}``)::

    GET  /api/accounts              [{"key", "index", "id", "file", "value", "currency", "as_of", "error"}]
    GET  /api/accounts/{key}/drift  drift_report(account).to_dict()
    POST /api/accounts/{key}/plan   plan_rebalance(account).to_dict() + "drift_after_rows"
                                    optional body {"reason": TEXT}; Content-Type: application/json
    GET  /api/accounts/{key}/tax    tax_impact(account).to_dict(): each sell's tax against the
                                    drift it removes, and the alternatives (``rebalance tax``)
    GET  /api/log[?account=ID]      audit-log entries (summaries) of the accounts served
    GET  /api/log/{id}              one whole entry, if it belongs to an account served (an id
                                    that is not a whole number names no entry: 404)

The plan endpoint previews: it records nothing in the audit log (``rebalance generate`` does).

Requests are read as strictly as account files: a query parameter the route does not take, one
given twice, or a body key given twice is an input error (422), never silently ignored or
overridden.

Status codes: 422 for an input error (the CLI's exit 2, with the CLI's message) or an audit log
that is not intact (exit 4: damaged or tampered with), 409 when no plan is feasible (exit 3), 404
for an unknown account, route or log entry, 401 without the token when one is set, 413 for a body
over ``MAX_BODY_BYTES``, 500 (a message, never a traceback) for anything else.

Security: the server binds 127.0.0.1 by default and then answers only requests whose Host header
names the loopback interface (so a web page elsewhere cannot reach it by DNS rebinding). Binding
any other address requires a token, sent as ``Authorization: Bearer TOKEN``; the page reads it
from the URL fragment (``http://HOST:PORT/#token=TOKEN``), which browsers never send to a server.
"""
from __future__ import annotations

import errno
import hmac
import ipaddress
import json
import logging
import math
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from .account import Account
from .account_file import DuplicateJSONKey, json_object, load_account
from .audit import AuditLog, resolve_log
from .plan import MAX_REASON_CHARS, check_reason
from .drift import drift_report
from .errors import InputError, RebalanceError
from .impact import tax_impact
from .solve import plan_rebalance

__all__ = ["create_app", "run", "is_loopback", "WEB_DIR", "MAX_BODY_BYTES", "DEFAULT_PORT"]

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent / "web"   # `npm run build` in frontend2/ writes here
DEFAULT_PORT = 8765
MAX_BODY_BYTES = 16 * 1024        # the only body we accept is {"reason": ...}
MIN_REMOTE_TOKEN_CHARS = 16

# RebalanceError.exit_code -> HTTP status; any other exit code is a server-side failure (500). A
# damaged audit log (exit 4) is, like a malformed account file, a file the app reads that is not valid.
_STATUS_BY_EXIT_CODE = {2: 422, 3: 409, 4: 422}

_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                                "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
}


# --- JSON -------------------------------------------------------------------------------------
def _finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by null (JSON has no inf or NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


class _JSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        return json.dumps(_finite(content), allow_nan=False, ensure_ascii=False,
                          separators=(",", ":")).encode("utf-8")


def _error(status: int, message: str, *, path: str | None = None, file: str | None = None,
           headers: dict[str, str] | None = None) -> _JSON:
    return _JSON({"error": {"message": message, "path": path, "file": file}}, status_code=status, headers=headers)


# --- addresses --------------------------------------------------------------------------------
def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (``127.0.0.0/8``, ``::1``)."""
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # any other name may resolve to anything


def _host_name(host_header: str) -> str:
    """The host part of a Host header (``[::1]:8765`` -> ``::1``, ``localhost:80`` -> ``localhost``)."""
    host_header = host_header.strip().lower()
    if host_header.startswith("["):
        return host_header[1:].split("]", 1)[0]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def _check_token(token: str | None) -> str | None:
    if token is None:
        return None
    # ASCII only: a browser cannot put any other character in a header (fetch refuses it), and the
    # server reads header bytes as Latin-1, so a token of 'ü's started a server no request could pass.
    if (not isinstance(token, str) or not token or not token.isascii() or any(c.isspace() for c in token)
            or not token.isprintable()):
        raise InputError("the access token must be non-empty ASCII text without spaces", path="token")
    return token


# --- accounts ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Source:
    """An account file named at start-up; ``path`` is kept as given so messages match the CLI's."""

    index: int
    path: Path

    @property
    def file(self) -> str:
        return str(self.path)

    def check(self) -> None:
        """InputError unless the file is there and regular: a named pipe (``serve <(cat a.toml)``,
        or a file replaced by one) would block every request reading it until something wrote."""
        if self.path.exists() and not self.path.is_file():  # a missing one is the reader's to name
            raise InputError("is not a regular file (the server re-reads its account files on every request)",
                             file=self.file)

    def load(self) -> Account:
        """The account, read afresh. Whatever stops it from being read is that file's error
        (``InputError``), so one unreadable file never breaks the listing or the other accounts."""
        self.check()
        try:
            return load_account(self.path)
        except RebalanceError:
            raise
        except Exception as exc:  # noqa: BLE001 - a reader's bug on this file is still this file's fault
            raise InputError(f"cannot be read ({type(exc).__name__}: {exc})", file=self.file) from None


class _UnknownAccount(Exception):
    def __init__(self, key: str, unreadable: int, ids: list[str] | None = None):
        self.key = key
        self.unreadable = unreadable
        self.ids = ids  # where only an id is taken (/api/log): the served ids, not indexes


class _Accounts:
    """The start-up list of account files, looked up by index or account id, re-read every time."""

    def __init__(self, paths: Iterable[Path | str]):
        self.sources = tuple(_Source(i, Path(p)) for i, p in enumerate(paths))
        for src in self.sources:
            src.check()
            if not src.path.is_file():
                raise InputError("account file not found", file=src.file)

    def find(self, key: str) -> tuple[_Source, Account]:
        """The account ``key`` names: an index into the start-up list, else an account id."""
        digits = key.lstrip("0") or "0"
        if key.isdigit() and key.isascii() and len(digits) <= 18:  # int() refuses 4,301 digits (it was a 500)
            index = int(digits)
            if index < len(self.sources):
                src = self.sources[index]
                return src, src.load()
        unreadable = 0
        for src in self.sources:
            try:
                account = src.load()
            except RebalanceError:
                unreadable += 1
                continue
            if account.id == key:
                return src, account
        raise _UnknownAccount(key, unreadable)

    def summary(self, src: _Source) -> dict[str, Any]:
        entry: dict[str, Any] = {"key": str(src.index), "index": src.index, "file": src.file, "id": None,
                                 "value": None, "currency": None, "as_of": None, "error": None}
        try:
            account = src.load()
            report = drift_report(account)
        except RebalanceError as exc:
            entry["error"] = exc.to_dict()
            return entry
        entry.update(id=account.id, value=report.value, currency=report.currency, as_of=report.as_of)
        return entry


def _plan_payload(account: Account, reason: str | None) -> dict[str, Any]:
    plan = plan_rebalance(account, reason)
    payload = plan.to_dict()
    # The after-trade rows (weight, target, band, status, value per class) so the page can draw the
    # same chart after the plan; SPEC's drift_after map carries the drift alone.
    payload["drift_after_rows"] = [row.to_dict() for row in plan.drift_after.rows]
    payload["value_after"] = plan.drift_after.value
    return payload


async def _read_json_object(request: Request) -> dict[str, Any]:
    """The request body as a JSON object ({} when empty), read no further than MAX_BODY_BYTES."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise HTTPException(413, f"request body over {MAX_BODY_BYTES} bytes")
    if not body.strip():
        return {}
    try:
        data = json.loads(body, object_pairs_hook=json_object)
    except DuplicateJSONKey as exc:  # before ValueError, its base: JSON would keep the last silently
        raise InputError("request body is not valid JSON: a key is given twice", path="body", value=str(exc),
                         has_value=True) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"request body is not valid JSON: {exc}", path="body") from None
    except RecursionError:  # 16 KiB of "[" (was a 500), as an account file nested too deeply
        raise InputError("request body is not valid JSON: nested too deeply", path="body") from None
    if not isinstance(data, dict):
        raise InputError("request body must be a JSON object", path="body")
    return data


def _query(*allowed: str) -> Any:
    """A route dependency refusing query parameters the route does not take (as an account file
    refuses unknown keys: ``?acount=x`` would otherwise list every entry) and any given twice
    (FastAPI keeps one of them silently)."""
    def check(request: Request) -> None:
        seen: set[str] = set()
        for name, _ in request.query_params.multi_items():
            shown = name if len(name) <= 40 else name[:40] + "…"
            if name not in allowed:
                takes = f"takes only {', '.join(allowed)}" if allowed else "takes none"
                raise InputError(f"unknown query parameter (this request {takes})", path=f"query.{shown}")
            if name in seen:
                raise InputError("query parameter given twice: give it once", path=f"query.{shown}")
            seen.add(name)
    return Depends(check)


def _reason(body: dict[str, Any]) -> str | None:
    unknown = sorted(set(body) - {"reason"})
    if unknown:
        raise InputError("unknown key in request body", path=f"body.{unknown[0]}")
    reason = body.get("reason")
    if reason is None:
        return None
    if not isinstance(reason, str):
        raise InputError(f"reason must be text of at most {MAX_REASON_CHARS} characters", path="body.reason",
                         value=reason if isinstance(reason, (int, float, bool)) else type(reason).__name__,
                         has_value=True)
    return check_reason(reason, "body.reason") if reason.strip() else None  # a lone "\ud800" has no UTF-8 (was a 500)


# --- the app ----------------------------------------------------------------------------------
def create_app(account_paths: Sequence[Path | str], token: str | None = None, *,
               allowed_hosts: Iterable[str] | None = None, web_dir: Path | None = None,
               audit_path: str | Path | None = None) -> FastAPI:
    """The ASGI app serving ``account_paths`` (raises InputError if one is not a file).

    Without a token only loopback Host headers are answered (``allowed_hosts`` overrides that
    list); with a token every API request must carry ``Authorization: Bearer TOKEN``.
    """
    token = _check_token(token)
    accounts = _Accounts(account_paths)
    audit_log = AuditLog(resolve_log(audit_path))
    web = Path(web_dir) if web_dir is not None else WEB_DIR
    # Which Host headers are answered: without a token, any loopback name or address (the one bound
    # may be 127.0.0.2 or 0:0:0:0:0:0:0:1; a fixed list of three answered its own URL with 400).
    host_answered: Any
    if allowed_hosts is not None:
        host_answered = frozenset(h.lower() for h in allowed_hosts).__contains__
    else:
        host_answered = None if token else is_loopback
    expected_token = token.encode() if token else None

    def authorized(header: str) -> bool:
        """``Authorization: Bearer TOKEN``, the scheme in any case (RFC 9110 11.1: ``bearer`` was
        refused), the token compared in constant time."""
        scheme, _, credentials = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(credentials.lstrip(" ").encode(), expected_token)

    app = FastAPI(title="rebalance-opt", docs_url=None, redoc_url=None, openapi_url="/api/openapi.json",
                  default_response_class=_JSON)
    app.state.accounts = accounts

    @app.middleware("http")
    async def guard(request: Request, call_next):
        length = request.headers.get("content-length")
        if host_answered is not None and not host_answered(_host_name(request.headers.get("host", ""))):
            response: Response = _error(400, "this server answers only requests addressed to localhost")
        elif length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            response = _error(413, f"request body over {MAX_BODY_BYTES} bytes")
        elif (expected_token is not None and request.url.path.startswith("/api/")
              and not authorized(request.headers.get("authorization", ""))):
            response = _error(401, "missing or wrong access token", headers={"WWW-Authenticate": "Bearer"})
        else:
            response = await call_next(request)
        for name, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.exception_handler(RebalanceError)
    async def rebalance_error(_: Request, exc: RebalanceError):
        status = _STATUS_BY_EXIT_CODE.get(exc.exit_code, 500)
        if status == 500:
            log.error("engine failure: %s", exc)
        return _JSON({"error": exc.to_dict()}, status_code=status)

    @app.exception_handler(_UnknownAccount)
    async def unknown_account(_: Request, exc: _UnknownAccount):
        if exc.ids is not None:  # /api/log?account= filters by id; an index names no logged account
            known = ", ".join(repr(i) for i in exc.ids) or "none"
            return _error(404, f"unknown account {exc.key!r} (the log is filtered by account id: {known})")
        known = ", ".join(str(s.index) for s in accounts.sources) or "none"
        message = f"unknown account {exc.key!r} (use an account id or an index: {known})"
        if exc.unreadable:
            message += f"; {exc.unreadable} account file(s) could not be read, address them by index to see why"
        return _error(404, message)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError):
        # FastAPI's own answer is {"detail": [...]}; every error of this app is {"error": ...}.
        first = (exc.errors() or [{}])[0]
        where = ".".join(str(part) for part in first.get("loc", ()))
        return _error(422, str(first.get("msg", "invalid request")), path=where or None)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException):
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        return _error(exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception):
        # Starlette re-raises after this, so the traceback reaches the server log; the client
        # sees only this message.
        return _error(500, f"internal error ({type(exc).__name__}); see the server log")

    @app.get("/api/accounts", dependencies=[_query()])
    def list_accounts() -> list[dict[str, Any]]:
        return [accounts.summary(src) for src in accounts.sources]

    @app.get("/api/accounts/{key:path}/drift", dependencies=[_query()])
    def account_drift(key: str) -> dict[str, Any]:
        _, account = accounts.find(key)
        return drift_report(account).to_dict()

    @app.post("/api/accounts/{key:path}/plan", dependencies=[_query()])
    async def account_plan(key: str, request: Request) -> dict[str, Any]:
        content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type != "application/json":
            # Also keeps other web pages from posting here: a cross-site JSON request needs CORS.
            raise HTTPException(415, "send Content-Type: application/json (the body may be {})")
        reason = _reason(await _read_json_object(request))
        _, account = await run_in_threadpool(accounts.find, key)
        return await run_in_threadpool(_plan_payload, account, reason)

    @app.get("/api/accounts/{key:path}/tax", dependencies=[_query()])
    def account_tax(key: str) -> dict[str, Any]:
        _, account = accounts.find(key)
        return tax_impact(account).to_dict()

    def served_ids() -> set[str]:
        ids = set()
        for src in accounts.sources:
            try:
                ids.add(src.load().id)
            except RebalanceError:
                continue
        return ids

    @app.get("/api/log", dependencies=[_query("account")])
    def log_entries(account: str | None = None) -> list[dict[str, Any]]:
        ids = served_ids()
        if account is not None and account not in ids:
            raise _UnknownAccount(account, 0, sorted(ids))
        return [e.summary() for e in audit_log.entries(account=account) if e.row["account"] in ids]

    @app.get("/api/log/{entry_id}", dependencies=[_query()])
    def log_entry(entry_id: str) -> dict[str, Any]:
        # Taken as text: an `int` parameter made FastAPI answer `/api/log/abc` in its own
        # {"detail": ...} shape. Like any id that names no entry, it is a 404.
        if not (entry_id.isascii() and entry_id.isdigit()):
            raise HTTPException(404, f"no audit-log entry {entry_id[:40]!r}: entries are numbered 1, 2, 3, …")
        digits = entry_id.lstrip("0") or "0"
        entry = audit_log.get(int(digits)) if len(digits) <= 19 else None  # past 2**63: no entry
        if entry is None or entry.row["account"] not in served_ids():
            raise HTTPException(404, f"no audit-log entry {digits} for the accounts served")
        return entry.to_dict()

    app.mount("/assets", StaticFiles(directory=web / "assets", check_dir=False), name="assets")

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)  # HEAD: uptime checks (was 405)
    def index():
        page = web / "index.html"
        if not page.is_file():
            return _error(503, "the web page is not built: run `npm ci && npm run build` in frontend2/")
        return FileResponse(page, media_type="text/html", headers={"Cache-Control": "no-cache"})

    return app


def _check_can_listen(host: str, port: int) -> None:
    """Raise InputError unless ``host``:``port`` can be bound as uvicorn binds it (every address the
    name resolves to, address reuse on). uvicorn's own failure is a log line and exit 3, which is
    this CLI's "no feasible plan", after the "serving at" line."""
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        addresses = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
        raise InputError(f"cannot serve on {host!r}: not an address or a name of this machine ({reason})",
                         path="host") from None
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise InputError(f"port {port} is already in use on {address[0]}: stop what listens there "
                                     "or choose another --port", path="port") from None
                if exc.errno in (errno.EACCES, errno.EPERM):
                    raise InputError(f"no permission to listen on {shown} (ports below 1024 need privileges): "
                                     "choose another --port", path="port") from None
                raise InputError(f"cannot listen on {shown}: {exc.strerror or exc}", path="host") from None


def run(account_paths: Sequence[Path | str], host: str = "127.0.0.1", port: int = DEFAULT_PORT,
        token: str | None = None, *, log_level: str = "info", audit_path: str | Path | None = None) -> None:
    """Serve the app with uvicorn until interrupted.

    Raises InputError (exit 2) before binding anything when no account file is named (the app
    would serve nothing: the log lists only the entries of accounts served), ``host`` is not a
    loopback address and no token (of at least MIN_REMOTE_TOKEN_CHARS characters) is given, an
    account file is missing, or ``host``:``port`` cannot be listened on (in use, no such address).
    An IPv6 address may be given in brackets, as in a URL (``[::1]``).
    """
    if host.startswith("[") and host.endswith("]"):  # is_loopback took "[::1]", which no bind does
        host = host[1:-1]
    if not account_paths:
        raise InputError("name the account files to serve: `serve ACCOUNT.toml [ACCOUNT ...]` (without "
                         "one the page and the API would show nothing)", path="ACCOUNT")
    if not is_loopback(host):
        if not token:
            raise InputError(f"refusing to serve on {host!r} without an access token: anyone who can reach that "
                             "address could read the accounts. Serve on 127.0.0.1, or pass a token "
                             "(for example from `python -c \"import secrets; print(secrets.token_urlsafe())\"`)",
                             path="host")
        if len(token) < MIN_REMOTE_TOKEN_CHARS:
            raise InputError(f"the access token must be at least {MIN_REMOTE_TOKEN_CHARS} characters "
                             f"to serve on {host!r}", path="token")
    app = create_app(account_paths, token=token, audit_path=audit_path)
    _check_can_listen(host, port)
    import uvicorn  # only the server needs it

    shown = f"[{host}]" if ":" in host else host
    # Percent-encoded: the page reads the fragment as a query string, where `+` is a space and `&`
    # ends the value (a token `a+b&c…` was read as `a b` and every request was a 401).
    url = f"http://{shown}:{port}/" + (f"#token={quote(token, safe='')}" if token else "")
    print(f"rebalance-opt: serving {len(app.state.accounts.sources)} account file(s) at {url}", file=sys.stderr,
          flush=True)
    if not (WEB_DIR / "index.html").is_file():
        print("rebalance-opt: the web page is not built (run `npm ci && npm run build` in frontend2/); "
              "the JSON API works", file=sys.stderr, flush=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level, server_header=False, proxy_headers=False)
