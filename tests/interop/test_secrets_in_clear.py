"""Tokens and passwords never appear in clear in the database or the logs: a server with its
access log on is driven through registration, login (passwords in bodies), authenticated
requests (tokens in the header and in the query string), refresh and OpenID; then its log
output and every file of its data directory are searched for each secret."""
import json
import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

from conftest import _binary, _free_port


def call(base, method, path, body=None, token=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def test_no_secret_in_logs_or_database():
    port = _free_port()
    data = tempfile.mkdtemp(prefix="myelin-secrets-")
    config = os.path.join(data, "myelin.yaml")
    with open(config, "w") as f:
        f.write("server_name: secrets.test\nlogging:\n  access_log: true\n  level: debug\n")
    log_path = os.path.join(data, "server.log")
    with open(log_path, "w") as log:
        proc = subprocess.Popen([_binary(), "serve", "--config", config, "--listen", f"127.0.0.1:{port}",
                                 "--data-dir", os.path.join(data, "data")], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        password = "Pa55word-in-clear-9f3c"
        v3 = "/_matrix/client/v3"
        status, reg = call(base, "POST", v3 + "/register", {
            "username": "secretive", "password": password, "refresh_token": True,
            "auth": {"type": "m.login.dummy"}})
        assert status == 200, reg
        status, login = call(base, "POST", v3 + "/login", {
            "type": "m.login.password", "user": "secretive", "password": password})
        assert status == 200, login
        secrets = [password, reg["access_token"], reg["refresh_token"], login["access_token"]]
        status, _ = call(base, "GET", v3 + "/account/whoami?access_token=" + login["access_token"])
        assert status == 200
        status, _ = call(base, "GET", v3 + "/account/whoami", token=reg["access_token"])
        assert status == 200
        status, refreshed = call(base, "POST", "/_matrix/client/v1/refresh", {"refresh_token": reg["refresh_token"]})
        assert status == 200, refreshed
        secrets += [refreshed["access_token"], refreshed["refresh_token"]]
        status, openid = call(base, "POST", v3 + "/user/@secretive:secrets.test/openid/request_token", {},
                              token=login["access_token"])
        assert status == 200, openid
        secrets.append(openid["access_token"])
        status, _ = call(base, "GET", "/_matrix/federation/v1/openid/userinfo?access_token=" + openid["access_token"])
        assert status == 200
        # A wrong password in a login body is not logged either.
        status, _ = call(base, "POST", v3 + "/login", {
            "type": "m.login.password", "user": "secretive", "password": "wrong-" + password})
        assert status == 403
    finally:
        proc.terminate()
        assert proc.wait(timeout=15) == 0
    with open(log_path, "rb") as f:
        log_bytes = f.read()
    assert b"access_token=<redacted>" in log_bytes  # the access log was on and saw the query
    for secret in secrets:
        assert secret.encode() not in log_bytes, "secret in the log"
    for root, _, files in os.walk(os.path.join(data, "data")):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                content = f.read()
            for secret in secrets:
                assert secret.encode() not in content, f"secret in {name}"
