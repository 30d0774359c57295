"""The web app's JSON API, static page and start-up rules (rebalance_opt/server.py, issue 5)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from rebalance_opt import drift_report, load_account, plan_rebalance
from rebalance_opt import server
from rebalance_opt.errors import InputError, SolverFailed
from rebalance_opt.server import MAX_BODY_BYTES, create_app, is_loopback, run

ROOT = Path(__file__).resolve().parents[1]

ACCOUNT = """\
[account]
id = "household-1"
cash = 10000.00
as_of = "2026-11-24"

[tax]
short_term_rate = 0.37
long_term_rate = 0.20

[targets]
US_STOCK = 0.55
INTL_STOCK = 0.15
US_BOND = 0.30

[classes]
VTI = "US_STOCK"
VXUS = "INTL_STOCK"
BND = "US_BOND"

[prices]
VTI = 281.40
VXUS = 64.10
BND = 72.35

[[lots]]
id = "L1"
symbol = "VTI"
quantity = 120
cost_basis = 190.25
acquired = 2021-06-01

[[lots]]
id = "L2"
symbol = "VXUS"
quantity = 50
cost_basis = 70
acquired = "2021-06-01"

[policy]
max_tax = inf
"""

JSON_HEADERS = {"Content-Type": "application/json"}


@pytest.fixture
def account_file(tmp_path: Path) -> Path:
    path = tmp_path / "household.toml"
    path.write_text(ACCOUNT)
    return path


@pytest.fixture
def broken_file(tmp_path: Path) -> Path:
    path = tmp_path / "broken.toml"
    path.write_text(ACCOUNT.replace("VTI = 281.40", "VTI = -1.0"))
    return path


def client_for(*paths: Path, token: str | None = None, **kwargs) -> TestClient:
    app = create_app(list(paths), token=token, **kwargs)
    return TestClient(app, base_url="http://127.0.0.1:8765", raise_server_exceptions=False)


def roundtrip(data: dict) -> dict:
    return json.loads(json.dumps(data))


def assert_error(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    # SPEC's three keys; no feasible plan (409) adds the rules that failed
    assert set(body["error"]) == {"message", "path", "file"} | ({"constraints"} if status == 409 else set())
    assert "Traceback" not in response.text
    return body["error"]


# --- the API ----------------------------------------------------------------------------------
def test_lists_the_accounts_named_at_start_up(account_file, broken_file):
    accounts = client_for(account_file, broken_file).get("/api/accounts").json()
    good, bad = accounts
    assert good == {"key": "0", "index": 0, "file": str(account_file), "id": "household-1", "value": 46973.0,
                    "currency": "USD", "as_of": "2026-11-24", "error": None}
    assert bad["key"] == "1" and bad["id"] is None and bad["value"] is None
    assert bad["error"]["path"] == "prices.VTI" and bad["error"]["file"] == str(broken_file)


def test_no_accounts_is_an_empty_list():
    assert client_for().get("/api/accounts").json() == []


@pytest.mark.parametrize("key", ["0", "household-1"])
def test_drift_is_the_engine_report(account_file, key):
    response = client_for(account_file).get(f"/api/accounts/{key}/drift")
    assert response.status_code == 200
    assert response.json() == roundtrip(drift_report(load_account(account_file)).to_dict())
    assert [c["name"] for c in response.json()["classes"]][-1] == "CASH"


def test_plan_is_the_engine_plan_with_rows_after(account_file):
    response = client_for(account_file).post("/api/accounts/0/plan", json={})
    assert response.status_code == 200
    body = response.json()
    expected = roundtrip(plan_rebalance(load_account(account_file)).to_dict())
    for key in ("account", "status", "reason", "orders", "tax", "drift_before", "drift_after", "cash_before",
                "cash_after", "log_id"):
        assert body[key] == expected[key], key
    assert [(o["side"], o["symbol"]) for o in body["orders"]] == [("sell", "VTI"), ("buy", "VXUS"), ("buy", "BND")]
    rows = body["drift_after_rows"]
    assert [r["name"] for r in rows] == list(body["drift_after"])
    for r in rows:
        assert r["drift"] == pytest.approx(body["drift_after"][r["name"]])
        assert r["current_weight"] == pytest.approx(r["target_weight"] + r["drift"])
        assert r["value"] == pytest.approx(r["current_weight"] * body["value_after"])
        assert r["status"] == "in_band"
    assert body["value_after"] == pytest.approx(body["value"] - body["withdrawal"])


@pytest.mark.parametrize("account_id, key", [
    ("firm/hh 1", "firm%2Fhh%201"),                  # as the page sends it (encodeURIComponent)
    ("firm/hh 1", "firm/hh%201"),                    # the slash left as it is
    ("firm//hh 1/drift", "firm%2F%2Fhh%201%2Fdrift"),  # a route's own last segment inside the id
])
def test_an_account_id_with_a_slash_is_addressable(tmp_path, account_id, key):
    path = tmp_path / "slash.toml"
    path.write_text(ACCOUNT.replace('id = "household-1"', f'id = "{account_id}"'))
    client = client_for(path)
    account = load_account(path)
    assert account.id == account_id
    drift = client.get(f"/api/accounts/{key}/drift")
    assert drift.status_code == 200, drift.text
    assert drift.json() == roundtrip(drift_report(account).to_dict())
    plan = client.post(f"/api/accounts/{key}/plan", json={})
    assert plan.status_code == 200, plan.text
    assert plan.json()["orders"] == roundtrip(plan_rebalance(account).to_dict())["orders"]
    tax = client.get(f"/api/accounts/{key}/tax")
    assert tax.status_code == 200 and tax.json()["account"] == account_id
    assert_error(client.get("/api/accounts/firm%2Fnobody/drift"), 404)
    assert_error(client.get(f"/api/accounts/{key}/plan"), 405)


def test_plan_takes_a_reason(account_file):
    response = client_for(account_file).post("/api/accounts/household-1/plan", json={"reason": "Year-end review"})
    assert response.status_code == 200
    assert response.json()["reason"] == "Year-end review"


def test_files_are_re_read_on_every_request(account_file):
    client = client_for(account_file)
    before = client.get("/api/accounts/0/drift").json()
    account_file.write_text(ACCOUNT.replace("cash = 10000.00", "cash = 20000.00").replace("household-1", "renamed"))
    after = client.get("/api/accounts/0/drift").json()
    assert after["value"] == before["value"] + 10000
    assert client.get("/api/accounts/renamed/drift").status_code == 200
    assert_error(client.get("/api/accounts/household-1/drift"), 404)


# --- errors -----------------------------------------------------------------------------------
def test_a_malformed_file_is_422_with_the_clis_message(broken_file):
    error = assert_error(client_for(broken_file).get("/api/accounts/0/drift"), 422)
    with pytest.raises(InputError) as raised:
        load_account(broken_file)
    assert error == raised.value.to_dict()
    assert error["path"] == "prices.VTI" and error["file"] == str(broken_file)
    assert "-1.0" in error["message"]
    assert_error(client_for(broken_file).post("/api/accounts/0/plan", json={}), 422)


def test_the_message_is_the_one_the_cli_prints(broken_file):
    cli = subprocess.run([sys.executable, str(ROOT / "cli.py"), "rebalance", "check", str(broken_file), "--json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert cli.returncode == 2, cli.stderr
    api_error = assert_error(client_for(broken_file).get("/api/accounts/0/drift"), 422)
    assert json.loads(cli.stdout) == {"error": api_error}


def test_toml_syntax_errors_are_input_errors(tmp_path):
    path = tmp_path / "typo.toml"
    path.write_text("[account\nid = 1\n")
    error = assert_error(client_for(path).get("/api/accounts/0/drift"), 422)
    assert error["file"] == str(path) and "TOML" in error["message"]


def test_no_feasible_plan_is_409(tmp_path):
    path = tmp_path / "withdraw.toml"
    path.write_text(ACCOUNT.replace("max_tax = inf", "withdrawal = 1e9"))
    client = client_for(path)
    assert client.get("/api/accounts/0/drift").status_code == 200  # drift still shows
    error = assert_error(client.post("/api/accounts/0/plan", json={}), 409)
    assert "withdrawal" in error["message"]
    assert error["constraints"] == ["policy.withdrawal"]   # the rule, by key (no min_cash in ACCOUNT)


@pytest.mark.parametrize("key", ["1", "99", "nobody", "..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "household.toml"])
def test_unknown_accounts_are_404_and_no_path_is_ever_opened(account_file, key, monkeypatch):
    opened = []
    real = server.load_account
    monkeypatch.setattr(server, "load_account", lambda p: opened.append(Path(p)) or real(p))
    response = client_for(account_file).get(f"/api/accounts/{key}/drift")
    assert response.status_code == 404
    assert set(opened) <= {account_file}


def test_unknown_account_says_how_to_address_one(account_file, broken_file):
    error = assert_error(client_for(account_file, broken_file).get("/api/accounts/nobody/drift"), 404)
    assert "'nobody'" in error["message"] and "0, 1" in error["message"]
    assert "1 account file(s) could not be read" in error["message"]


def test_unknown_routes_and_methods_answer_json(account_file):
    client = client_for(account_file)
    assert assert_error(client.get("/api/nothing-here"), 404)["message"] == "Not Found"
    assert_error(client.get("/api/accounts/0/plan"), 405)
    assert_error(client.delete("/api/accounts/0/drift"), 405)


def test_unexpected_failures_are_500_without_internals(account_file, monkeypatch):
    def explode(account):
        raise RuntimeError("secret internals at /home/user/.ssh")

    monkeypatch.setattr(server, "drift_report", explode)
    error = assert_error(client_for(account_file).get("/api/accounts/0/drift"), 500)
    assert error["message"] == "internal error (RuntimeError); see the server log"
    assert "secret" not in error["message"]


def test_a_solver_failure_is_500_with_its_message(account_file, monkeypatch):
    def fail(account, reason=None):
        raise SolverFailed("no solver reached an accurate optimum")

    monkeypatch.setattr(server, "plan_rebalance", fail)
    error = assert_error(client_for(account_file).post("/api/accounts/0/plan", json={}), 500)
    assert error["message"] == "no solver reached an accurate optimum"


# --- request bodies ---------------------------------------------------------------------------
def test_plan_requires_a_json_content_type(account_file):
    client = client_for(account_file)
    assert_error(client.post("/api/accounts/0/plan"), 415)
    assert_error(client.post("/api/accounts/0/plan", content=b"reason=x",
                             headers={"Content-Type": "application/x-www-form-urlencoded"}), 415)
    assert client.post("/api/accounts/0/plan", headers=JSON_HEADERS).status_code == 200  # empty body = {}


@pytest.mark.parametrize("body, path", [
    (b"{not json", "body"),
    (b"[1, 2]", "body"),
    (b'{"reason": 5}', "body.reason"),
    (json.dumps({"reason": "x" * 501}).encode(), "body.reason"),
    (b'{"account": "../../etc/passwd"}', "body.account"),
    (b"[" * (MAX_BODY_BYTES - 1), "body"),  # nested too deeply for the parser: was a 500 (RecursionError)
])
def test_bad_plan_bodies_are_input_errors(account_file, body, path):
    response = client_for(account_file).post("/api/accounts/0/plan", content=body, headers=JSON_HEADERS)
    assert assert_error(response, 422)["path"] == path


@pytest.mark.parametrize("reason, shown", [(5, "(got 5)"), ([1], "(got 'list')"), (True, "(got True)")])
def test_a_reason_that_is_not_text_is_named_with_what_was_sent(account_file, reason, shown):
    # every other field's error says what it got; this one did not
    response = client_for(account_file).post("/api/accounts/0/plan", content=json.dumps({"reason": reason}).encode(),
                                             headers=JSON_HEADERS)
    assert assert_error(response, 422)["message"].endswith(shown)


def test_bodies_over_the_limit_are_refused(account_file):
    client = client_for(account_file)
    big = json.dumps({"reason": "x" * MAX_BODY_BYTES}).encode()
    assert_error(client.post("/api/accounts/0/plan", content=big, headers=JSON_HEADERS), 413)

    def chunks():  # no Content-Length: the limit holds while streaming
        for _ in range(MAX_BODY_BYTES // 1024 + 2):
            yield b" " * 1024

    response = client.post("/api/accounts/0/plan", content=chunks(), headers=JSON_HEADERS)
    assert_error(response, 413)
    assert "content-length" not in response.request.headers


# --- access -----------------------------------------------------------------------------------
def test_without_a_token_only_loopback_host_names_are_answered(account_file):
    client = client_for(account_file)
    for host in ("127.0.0.1:8765", "localhost:8765", "[::1]:8765", "localhost", "127.0.0.1"):
        assert client.get("/api/accounts", headers={"Host": host}).status_code == 200, host
    for host in ("evil.example", "evil.example:8765", "127.0.0.1.evil.example", "192.168.1.5:8765"):
        assert_error(client.get("/api/accounts", headers={"Host": host}), 400)



@pytest.mark.parametrize("host", ["127.0.0.2", "127.1.2.3", "0:0:0:0:0:0:0:1"])
def test_the_server_answers_the_address_it_serves_on(account_file, uvicorn_calls, capsys, host):
    # `--host 127.0.0.2` (loopback, so no token) printed http://127.0.0.2:PORT/ and then answered
    # every request to it with 400 "only requests addressed to localhost".
    run([account_file], host=host, port=9126)
    [(app, _)] = uvicorn_calls
    url = capsys.readouterr().err.split(" at ", 1)[1].split()[0]
    assert url == (f"http://[{host}]:9126/" if ":" in host else f"http://{host}:9126/")
    client = TestClient(app, base_url=url.rstrip("/"), raise_server_exceptions=False)
    assert client.get("/api/accounts").status_code == 200
    assert_error(client.get("/api/accounts", headers={"Host": "evil.example:9126"}), 400)


def test_a_token_is_required_on_every_api_request(account_file):
    token = "correct-horse-battery-staple"
    client = client_for(account_file, token=token)
    assert_error(client.get("/api/accounts"), 401)
    assert client.get("/api/accounts").headers["www-authenticate"] == "Bearer"
    assert_error(client.get("/api/accounts", headers={"Authorization": "Bearer wrong"}), 401)
    assert_error(client.get("/api/accounts", headers={"Authorization": token}), 401)
    assert_error(client.post("/api/accounts/0/plan", json={}), 401)
    ok = client.get("/api/accounts/0/drift", headers={"Authorization": f"Bearer {token}", "Host": "10.0.0.2:8765"})
    assert ok.status_code == 200
    # the scheme is case-insensitive (RFC 9110 11.1): "bearer" was a 401
    for header in (f"bearer {token}", f"BEARER  {token}"):
        assert client.get("/api/accounts", headers={"Authorization": header}).status_code == 200
    assert_error(client.get("/api/accounts", headers={"Authorization": f"Basic {token}"}), 401)


@pytest.mark.parametrize("token", ["", "has space", "tab\there"])
def test_malformed_tokens_are_refused(account_file, token):
    with pytest.raises(InputError):
        create_app([account_file], token=token)


def test_a_token_a_browser_cannot_send_is_refused_at_start_up(account_file, uvicorn_calls):
    # A non-ASCII token started the server, yet no request could carry it: fetch() refuses such a
    # header, and a client that sent its UTF-8 bytes was compared as Latin-1 (always 401).
    token = "ü" * 20
    with pytest.raises(InputError, match="ASCII") as raised:
        run([account_file], host="0.0.0.0", token=token)
    assert raised.value.path == "token" and uvicorn_calls == []


def test_a_missing_account_file_stops_start_up(tmp_path):
    with pytest.raises(InputError) as raised:
        create_app([tmp_path / "missing.toml"])
    assert raised.value.file == str(tmp_path / "missing.toml")



def test_an_account_file_replaced_by_a_pipe_is_that_files_error_not_a_hang(account_file, tmp_path):
    # Reading a named pipe blocks until something writes to it: every request reading the file
    # (the listing, for everyone) hung, each holding a worker thread. Named at start-up (`serve
    # <(cat a.toml)`), it was "account file not found".
    import os
    import threading

    other = tmp_path / "other.toml"
    other.write_text(ACCOUNT)
    client = client_for(account_file, other)
    other.unlink()
    os.mkfifo(other)
    answers = []
    reader = threading.Thread(target=lambda: answers.append(client.get("/api/accounts")), daemon=True)
    reader.start()
    reader.join(10)
    if reader.is_alive():  # let the test end: open the pipe for writing, so the read sees its end
        os.close(os.open(other, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(10)
        pytest.fail("listing the accounts hung on the pipe")
    listed = answers[0].json()
    assert listed[0]["id"] == "household-1"
    assert listed[1]["error"]["file"] == str(other) and "not a regular file" in listed[1]["error"]["message"]
    assert "not a regular file" in assert_error(client.get("/api/accounts/1/drift"), 422)["message"]
    with pytest.raises(InputError, match="not a regular file"):
        create_app([other])

def test_responses_carry_security_headers(account_file):
    response = client_for(account_file).get("/api/accounts")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert "default-src 'self'" in response.headers["content-security-policy"]


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.1.2.3", True), ("localhost", True), ("::1", True), ("[::1]", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.5", False), ("example.com", False), ("", False),
])
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


# --- run() ------------------------------------------------------------------------------------
@pytest.fixture
def uvicorn_runs(monkeypatch):
    """uvicorn.run's calls, none of them serving (run() still checks it could listen)."""
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    return calls


@pytest.fixture
def uvicorn_calls(uvicorn_runs, monkeypatch):
    """As uvicorn_runs, and run() assumes it can listen (no port is bound, no IPv6 needed)."""
    monkeypatch.setattr(server, "_check_can_listen", lambda host, port: None)
    return uvicorn_runs


def test_run_serves_loopback_by_default(account_file, uvicorn_calls, capsys):
    run([account_file], port=9123)
    [(app, kw)] = uvicorn_calls
    assert kw["host"] == "127.0.0.1" and kw["port"] == 9123
    assert "http://127.0.0.1:9123/" in capsys.readouterr().err


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "example.com"])
def test_run_refuses_a_public_address_without_a_token(account_file, uvicorn_calls, host):
    with pytest.raises(InputError, match="without an access token"):
        run([account_file], host=host)
    with pytest.raises(InputError, match="at least 16 characters"):
        run([account_file], host=host, token="short")
    assert uvicorn_calls == []


def test_run_serves_a_public_address_with_a_token(account_file, uvicorn_calls, capsys):
    token = "a-long-enough-token-123"
    run([account_file], host="0.0.0.0", port=9124, token=token)
    [(app, kw)] = uvicorn_calls
    assert kw["host"] == "0.0.0.0"
    assert f"#token={token}" in capsys.readouterr().err
    client = TestClient(app, base_url="http://192.168.1.5:9124")
    assert client.get("/api/accounts").status_code == 401
    assert client.get("/api/accounts", headers={"Authorization": f"Bearer {token}"}).status_code == 200



def test_the_printed_page_address_carries_the_token_the_page_will_read(account_file, uvicorn_calls, capsys):
    # The page reads `#token=` with URLSearchParams, as a query string (`+` is a space, `&` ends
    # the value, `%41` is `A`; parse_qs reads it the same way): printed raw, `a+b&c…` reached the
    # page as "a b" and every request was refused.
    token = "a+b&c=d%41/?#xyz!'()*~"
    run([account_file], host="0.0.0.0", port=9125, token=token)
    fragment = capsys.readouterr().err.split("#", 1)[1].split()[0]
    from urllib.parse import parse_qs
    assert parse_qs(fragment, keep_blank_values=True) == {"token": [token]}


def test_a_port_in_use_is_an_input_error_before_serving(account_file, tmp_path, uvicorn_runs, capsys):
    # uvicorn logged "address already in use" and exited 3 (this CLI's "no feasible plan"), after
    # printing that it was serving.
    import socket

    from .conftest import cli

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, out, err = cli(capsys, "serve", str(account_file), "--port", str(port),
                             "--log", str(tmp_path / "audit.sqlite"))
    assert code == 2 and out == ""
    assert f"port {port} is already in use" in err and "--port" in err
    assert "serving" not in err and uvicorn_runs == []


@pytest.mark.parametrize("host", ["no-such-host.invalid", "999.1.1.1", "localhost:80", "192.0.2.1"])
def test_an_address_that_cannot_be_served_on_is_an_input_error(account_file, uvicorn_runs, capsys, host):
    # Each ended in uvicorn's "[Errno -2] Name or service not known" (or "cannot assign requested
    # address" for an address of another machine) and exit 3, after the "serving at" line.
    with pytest.raises(InputError, match="cannot (serve|listen) on") as raised:
        run([account_file], host=host, token="a-long-enough-token-123")
    assert raised.value.path == "host" and uvicorn_runs == []
    assert "serving" not in capsys.readouterr().err


def test_an_ipv6_address_in_brackets_is_served(account_file, uvicorn_calls, capsys):
    # is_loopback("[::1]") let it through without a token; uvicorn then could not resolve "[::1]"
    # (exit 3), and the address was printed as http://[[::1]]:PORT/.
    run([account_file], host="[::1]", port=9127)
    [(_, kw)] = uvicorn_calls
    assert kw["host"] == "::1"
    assert "http://[::1]:9127/" in capsys.readouterr().err

# --- the page ---------------------------------------------------------------------------------
def test_serves_the_built_page_and_its_assets(tmp_path, account_file):
    web = tmp_path / "web"
    (web / "assets").mkdir(parents=True)
    (web / "index.html").write_text('<!doctype html><script src="/assets/app-1.js"></script>')
    (web / "assets" / "app-1.js").write_text("console.log(1)")
    client = client_for(account_file, web_dir=web)
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-cache"
    head = client.head("/")  # an uptime check's request (was 405)
    assert head.status_code == 200 and head.content == b"" and head.headers["content-type"].startswith("text/html")
    asset = client.get("/assets/app-1.js")
    assert asset.status_code == 200 and asset.text == "console.log(1)"
    assert client.get("/assets/missing.js").status_code == 404
    assert client.get("/assets/../../household.toml").status_code == 404


def test_an_unbuilt_page_says_how_to_build_it(tmp_path, account_file):
    error = assert_error(client_for(account_file, web_dir=tmp_path / "nothing").get("/"), 503)
    assert "npm run build" in error["message"]
    assert client_for(account_file, web_dir=tmp_path / "nothing").get("/api/accounts").status_code == 200


def test_the_packaged_page_references_assets_that_are_served(account_file):
    if not (server.WEB_DIR / "index.html").is_file():
        pytest.skip("frontend2 not built (npm run build writes rebalance_opt/web/)")
    client = client_for(account_file)
    html = client.get("/").text
    assets = [part.split('"')[0] for part in html.split('"/assets/')[1:]]
    assert assets, html
    for name in assets:
        assert client.get(f"/assets/{name}").status_code == 200, name


def test_non_finite_numbers_become_null():
    response = server._JSON({"a": float("inf"), "b": [float("nan"), 1.5], "c": {"d": -float("inf")}})
    assert json.loads(response.body) == {"a": None, "b": [None, 1.5], "c": {"d": None}}


def test_tax_endpoint_is_the_engines_tax_impact(account_file):
    from rebalance_opt.impact import tax_impact
    with client_for(account_file) as client:
        response = client.get("/api/accounts/0/tax")
    assert response.status_code == 200
    expected = roundtrip(tax_impact(load_account(account_file)).to_dict())
    body = response.json()
    assert body["sells"] == expected["sells"] and body["alternatives"] == expected["alternatives"]


def test_log_endpoint_lists_only_entries_of_the_accounts_served(account_file, tmp_path):
    from rebalance_opt.audit import AuditLog, LogLocation
    from rebalance_opt.account_file import account_to_dict
    from rebalance_opt.solve import plan_rebalance
    log_path = tmp_path / "log.sqlite"
    log = AuditLog(LogLocation(log_path, "--log"))
    account = load_account(account_file)
    mine = log.append(plan_rebalance(account).to_dict(), account_to_dict(account))
    other = account.replace(id="someone-else")
    theirs = log.append(plan_rebalance(other).to_dict(), account_to_dict(other))
    with client_for(account_file, audit_path=log_path) as client:
        listed = client.get("/api/log").json()
        assert [e["id"] for e in listed] == [mine.id]
        assert client.get(f"/api/log/{mine.id}").json()["id"] == mine.id
        assert_error(client.get(f"/api/log/{theirs.id}"), 404)
        assert_error(client.get("/api/log", params={"account": "someone-else"}), 404)
        # the log is filtered by id only: the message named indexes (0), which it refuses too
        error = assert_error(client.get("/api/log", params={"account": "0"}), 404)
        assert "index" not in error["message"] and "'household-1'" in error["message"], error


@pytest.mark.parametrize("entry_id", ["abc", "1.5", "-1", "0x1", "%20", "\u0661"])
def test_a_log_entry_id_that_is_not_a_number_is_a_404_in_the_apps_error_shape(account_file, entry_id):
    # `/api/log/abc` was FastAPI's own 422 {"detail": [...]}; an id that names no entry is a 404.
    error = assert_error(client_for(account_file).get(f"/api/log/{entry_id}"), 404)
    assert "numbered 1, 2, 3" in error["message"]


def test_a_log_entry_id_may_have_leading_zeros(account_file, tmp_path):
    from rebalance_opt.account_file import account_to_dict
    from rebalance_opt.audit import AuditLog
    log_path = tmp_path / "log.sqlite"
    account = load_account(account_file)
    AuditLog(log_path).append(plan_rebalance(account).to_dict(), account_to_dict(account))
    with client_for(account_file, audit_path=log_path) as client:
        assert client.get("/api/log/0001").json()["id"] == 1
        assert "entry 0 " in assert_error(client.get("/api/log/000"), 404)["message"]


def test_a_request_fastapi_refuses_answers_in_the_apps_error_shape(account_file):
    app = create_app([account_file])

    @app.get("/api/probe/{n}")
    def probe(n: int) -> dict:
        return {"n": n}

    client = TestClient(app, base_url="http://127.0.0.1:8765", raise_server_exceptions=False)
    error = assert_error(client.get("/api/probe/abc"), 422)
    assert error["path"] == "path.n" and error["message"]


def test_a_plan_body_with_a_key_given_twice_is_an_input_error(account_file):
    # JSON keeps the last "reason" silently; an account file refuses a key given twice (account_file.json_object)
    body = b'{"reason": "quarterly review", "reason": "client asked"}'
    response = client_for(account_file).post("/api/accounts/0/plan", content=body, headers=JSON_HEADERS)
    error = assert_error(response, 422)
    assert error["path"] == "body" and "a key is given twice" in error["message"] and "'reason'" in error["message"]


def test_a_query_parameter_given_twice_is_an_input_error(account_file, tmp_path):
    # ?account=a&account=b listed b's entries, a ignored
    with client_for(account_file, audit_path=tmp_path / "log.sqlite") as client:
        assert client.get("/api/log?account=household-1").status_code == 200
        error = assert_error(client.get("/api/log?account=household-1&account=household-1"), 422)
        assert error["path"] == "query.account" and "given twice" in error["message"]


@pytest.mark.parametrize("url", ["/api/accounts?x=1", "/api/accounts/0/drift?debug", "/api/accounts/0/tax?key=1",
                                 "/api/log?acount=household-1", "/api/log/1?account=household-1"])
def test_unknown_query_parameters_of_the_api_are_input_errors(account_file, tmp_path, url):
    # they were ignored: `?acount=` (a typo) listed every account's entries
    with client_for(account_file, audit_path=tmp_path / "log.sqlite") as client:
        error = assert_error(client.get(url), 422)
        assert error["path"] == "query." + url.split("?")[1].split("=")[0] and "unknown query parameter" in error["message"]
        response = client.post("/api/accounts/0/plan?reason=x", headers=JSON_HEADERS)
        assert assert_error(response, 422)["path"] == "query.reason"
        assert client.get("/?utm_source=mail").status_code in (200, 503)  # the page itself takes any


def test_ctrl_c_stops_the_server_gracefully_with_exit_0(tmp_path):
    # The command line's Ctrl-C note (rebalance_opt.interrupts) kept asyncio from installing its
    # handler, so uvicorn's graceful stop went on to exit 130 (0 before, as uvicorn's own command)
    import signal
    import socket
    import subprocess
    import sys
    import time

    from .conftest import ROOT
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "serve", str(ROOT / "examples" / "household.toml"),
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until it listens
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0 and "Traceback" not in err and "Application shutdown complete" in err, err
