"""matrix-nio (PyPI) against the real server and the room administration API: a member
syncing with nio sees the room an admin deleted (v2, with purge) in its `leave` section and
the new room it was moved into, with the admin's message; a user receives a server notice in
a room nio sees as joined and tagged `m.server_notice`."""
import asyncio
import hashlib
import hmac
import json
import urllib.parse
import urllib.request
import uuid

import nio
import pytest

from conftest import _start
from nio_users import run, user

SECRET = "interop-secret"


@pytest.fixture(scope="module")
def admin_server():
    yield from _start("server_name: interop.test\nregistration:\n  enabled: true\n  shared_secret: " + SECRET + "\n"
                      "rate_limits:\n  enabled: false\nserver_notices:\n  auto_join: true\n"
                      "logging:\n  access_log: false\n")


def _call(base, method, path, body=None, token=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", "Bearer " + token)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"{}")


def _admin_token(base, name):
    nonce = _call(base, "GET", "/_synapse/admin/v1/register")["nonce"]
    mac = hmac.new(SECRET.encode(), "\0".join([nonce, name, "pw", "admin"]).encode(), hashlib.sha1).hexdigest()
    reply = _call(base, "POST", "/_synapse/admin/v1/register",
                  {"nonce": nonce, "username": name, "password": "pw", "admin": True, "mac": mac})
    return reply["access_token"]


def _q(text):
    return urllib.parse.quote(text, safe="")


def test_deleted_room_and_server_notice_with_nio(admin_server):
    async def flow():
        tag = uuid.uuid4().hex[:6]
        token = _admin_token(admin_server, "root" + tag)
        admin_id = f"@root{tag}:interop.test"
        alice = await user(admin_server, "alice" + tag)
        bob = await user(admin_server, "bob" + tag)
        try:
            created = await alice.room_create(name="Doomed", preset=nio.RoomPreset.public_chat)
            assert isinstance(created, nio.RoomCreateResponse), created
            room = created.room_id
            assert isinstance(await bob.join(room), nio.JoinResponse)
            await alice.room_send(room, "m.room.message", {"msgtype": "m.text", "body": "before"})
            first = await bob.sync(timeout=0)
            assert room in first.rooms.join

            started = await asyncio.to_thread(_call, admin_server, "DELETE", "/_synapse/admin/v2/rooms/" + _q(room),
                                              {"purge": True, "block": True, "new_room_user_id": admin_id,
                                               "room_name": "Moved", "message": "Your room was closed"}, token)
            delete_id = started["delete_id"]
            status = {}
            for _ in range(200):
                status = await asyncio.to_thread(_call, admin_server, "GET",
                                                 "/_synapse/admin/v2/rooms/delete_status/" + delete_id, None, token)
                if status["status"] in ("complete", "failed"):
                    break
                await asyncio.sleep(0.05)
            assert status["status"] == "complete", status
            new_room = status["shutdown_room"]["new_room_id"]

            # nio sees the leave of the purged room and its new room with the message.
            seen_leave, seen_message = False, False
            for _ in range(20):
                reply = await bob.sync(timeout=1000)
                assert isinstance(reply, nio.SyncResponse), reply
                if room in reply.rooms.leave:
                    events = reply.rooms.leave[room].timeline.events
                    assert any(isinstance(e, nio.RoomMemberEvent) and e.membership == "leave"
                               and e.state_key == bob.user_id for e in events), events
                    seen_leave = True
                if new_room in reply.rooms.join:
                    bodies = [getattr(e, "body", None) for e in reply.rooms.join[new_room].timeline.events]
                    seen_message = seen_message or "Your room was closed" in bodies
                if seen_leave and seen_message:
                    break
            assert seen_leave and seen_message
            refused = await bob.join(room)
            assert isinstance(refused, nio.JoinError) and refused.status_code == "M_FORBIDDEN", refused

            # A server notice: alice is joined to a notices room tagged m.server_notice.
            await asyncio.to_thread(_call, admin_server, "POST", "/_synapse/admin/v1/send_server_notice",
                                    {"user_id": alice.user_id, "content": {"msgtype": "m.text", "body": "Notice!"}}, token)
            found = False
            for _ in range(20):
                reply = await alice.sync(timeout=1000)
                assert isinstance(reply, nio.SyncResponse), reply
                for room_id, info in reply.rooms.join.items():
                    if "Notice!" in [getattr(e, "body", None) for e in info.timeline.events]:
                        tags = [e for e in info.account_data if isinstance(e, nio.TagEvent)]
                        assert any("m.server_notice" in e.tags for e in tags) or \
                            "m.server_notice" in (alice.rooms[room_id].tags if room_id in alice.rooms else {})
                        found = True
                if found:
                    break
            assert found
        finally:
            await alice.close()
            await bob.close()

    run(flow())
