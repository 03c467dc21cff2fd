"""The users admin API as a Matrix client sees it (matrix-nio from PyPI): an admin made by the
real `myelin register-user`, a user created by PUT /_synapse/admin/v2/users, then locked
(nio's sync gets M_USER_LOCKED with soft_logout and its token survives), suspended (nio's
send gets M_USER_SUSPENDED, its sync still works) and given a new password (nio's old token
is refused)."""
import asyncio
import json
import os
import subprocess
import tempfile
import urllib.error
import urllib.request

import nio
import pytest

from conftest import _binary, _start

SECRET = "interop-s3cret"


@pytest.fixture(scope="module")
def admin_server():
    yield from _start(f"server_name: interop.test\nregistration:\n  shared_secret: {SECRET}\n"
                      "rate_limits:\n  enabled: false\nlogging:\n  access_log: false\n")


def call(base, method, path, token=None, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def register_admin(base):
    """`myelin register-user` (the real binary) with a configuration file naming the server."""
    port = base.rsplit(":", 1)[1]
    config = os.path.join(tempfile.mkdtemp(prefix="myelin-cli-"), "myelin.yaml")
    with open(config, "w") as f:
        f.write(f"server_name: interop.test\nlisteners:\n  - host: 127.0.0.1\n    port: {port}\n"
                f"registration:\n  shared_secret: {SECRET}\n")
    done = subprocess.run([_binary(), "register-user", "-c", config, "-u", "root", "-p", "root-pass", "--admin"],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "@root:interop.test" in done.stdout
    status, body = call(base, "POST", "/_matrix/client/v3/login",
                        body={"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "root"},
                              "password": "root-pass"})
    assert status == 200, body
    return body["access_token"]


def test_nio_sees_lock_suspension_and_password_reset(admin_server):
    base = admin_server
    admin = register_admin(base)
    status, created = call(base, "PUT", "/_synapse/admin/v2/users/@niomod:interop.test", admin,
                           {"password": "first-pass", "displayname": "Nio Mod"})
    assert status == 201, created

    async def flow():
        client = nio.AsyncClient(base, "niomod")
        try:
            login = await client.login("first-pass", device_name="nio")
            assert isinstance(login, nio.LoginResponse), login
            first = await client.sync(timeout=0)
            assert isinstance(first, nio.SyncResponse), first
            room = await client.room_create(name="before")
            assert isinstance(room, nio.RoomCreateResponse), room

            # Locked: nio's sync fails with the spec's error and soft logout; the token survives.
            assert call(base, "PUT", "/_matrix/client/v1/admin/lock/@niomod:interop.test", admin, {"locked": True})[0] == 200
            locked = await client.sync(timeout=0)
            assert isinstance(locked, nio.SyncError), locked
            assert locked.status_code == "M_USER_LOCKED"
            assert locked.soft_logout is True
            assert not client.logged_in  # nio drops its token on a soft logout...
            assert call(base, "PUT", "/_matrix/client/v1/admin/lock/@niomod:interop.test", admin, {"locked": False})[0] == 200
            client.access_token = login.access_token  # ...which the server kept: it works again
            assert isinstance(await client.sync(timeout=0), nio.SyncResponse)

            # Suspended: sending is refused, syncing works.
            assert call(base, "PUT", "/_matrix/client/v1/admin/suspend/@niomod:interop.test", admin,
                        {"suspended": True})[0] == 200
            sent = await client.room_send(room.room_id, "m.room.message", {"msgtype": "m.text", "body": "hi"})
            assert isinstance(sent, nio.RoomSendError), sent
            assert sent.status_code == "M_USER_SUSPENDED"
            assert isinstance(await client.sync(timeout=0), nio.SyncResponse)
            assert call(base, "PUT", "/_matrix/client/v1/admin/suspend/@niomod:interop.test", admin,
                        {"suspended": False})[0] == 200
            sent = await client.room_send(room.room_id, "m.room.message", {"msgtype": "m.text", "body": "hi"})
            assert isinstance(sent, nio.RoomSendResponse), sent

            # A password reset logs nio out; the new password logs in.
            status, _ = call(base, "POST", "/_synapse/admin/v1/reset_password/@niomod:interop.test", admin,
                             {"new_password": "second-pass"})
            assert status == 200
            who = await client.whoami()
            assert isinstance(who, nio.WhoamiError), who
            assert who.status_code == "M_UNKNOWN_TOKEN"
            again = nio.AsyncClient(base, "niomod")
            try:
                relogin = await again.login("second-pass")
                assert isinstance(relogin, nio.LoginResponse), relogin
            finally:
                await again.close()
        finally:
            await client.close()

    asyncio.run(flow())
