"""matrix-nio (PyPI) registers with a registration token created through the admin API
(`POST /_synapse/admin/v1/registration_tokens/new`), following Synapse's flow
(`m.login.registration_token`, then `m.login.dummy`) with nio's own `register_with_token`;
the token's counts move and a used-up token is refused."""
import asyncio
import hashlib
import hmac
import json
import urllib.error
import urllib.request

import nio
import pytest

from conftest import _start


@pytest.fixture(scope="module")
def token_server():
    yield from _start("server_name: interop.test\nregistration:\n  enabled: true\n  shared_secret: s3cret\n"
                      "security:\n  registration_requires_token: true\nrate_limits:\n  enabled: false\n"
                      "logging:\n  access_log: false\n")


def call(base, method, path, body=None, token=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def register_admin(base):
    _, nonce = call(base, "GET", "/_synapse/admin/v1/register")
    mac = hmac.new(b"s3cret", f"{nonce['nonce']}\0root\0rootpw\0admin".encode(), hashlib.sha1).hexdigest()
    status, body = call(base, "POST", "/_synapse/admin/v1/register",
                        {"nonce": nonce["nonce"], "username": "root", "password": "rootpw", "admin": True, "mac": mac})
    assert status == 200, body
    return body["access_token"]


def test_nio_registers_with_an_admin_token(token_server):
    admin = register_admin(token_server)
    status, created = call(token_server, "POST", "/_synapse/admin/v1/registration_tokens/new", {"uses_allowed": 1}, admin)
    assert status == 200, created
    token = created["token"]
    assert created["pending"] == 0 and created["completed"] == 0

    async def flow():
        client = nio.AsyncClient(token_server, "niotoken")
        try:
            response = await client.register_with_token("niotoken", "s3cret-pass", token, device_name="nio")
            assert isinstance(response, nio.RegisterResponse), response
            assert response.user_id == "@niotoken:interop.test"
            who = await client.whoami()
            assert isinstance(who, nio.WhoamiResponse), who
            assert who.user_id == "@niotoken:interop.test"
        finally:
            await client.close()
        # Used up: a second registration with it is refused.
        other = nio.AsyncClient(token_server, "niosecond")
        try:
            refused = await other.register_with_token("niosecond", "s3cret-pass", token)
            assert not isinstance(refused, nio.RegisterResponse), refused
        finally:
            await other.close()

    asyncio.run(flow())
    status, after = call(token_server, "GET", f"/_synapse/admin/v1/registration_tokens/{token}", token=admin)
    assert status == 200
    assert after["completed"] == 1 and after["pending"] == 0
    status, validity = call(token_server, "GET", f"/_matrix/client/v1/register/m.login.registration_token/validity?token={token}")
    assert validity == {"valid": False}
    status, available = call(token_server, "GET", "/_matrix/client/v3/register/available?username=niosecond")
    assert status == 200 and available == {"available": True}
