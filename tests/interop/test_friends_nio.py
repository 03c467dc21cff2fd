"""The friend extension seen by matrix-nio (PyPI): alice asks bob through
/_matrix/client/v1/friends/request, bob accepts; bob's nio sync has the direct room joined with
both members and `m.direct` naming it under alice, and a second nio device of alice's learns
the friendship from its `m.friends` account data in sync."""
import json
import urllib.parse
import urllib.request
import uuid

import nio

from nio_users import run, user


def _call(server, token, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(server + path, data=data, method=method,
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _global_account_data(synced, event_type):
    for event in synced.account_data_events:
        if getattr(event, "type", None) == event_type:
            return event.content
    return None


def test_friend_request_accepted_with_nio(open_server):
    async def flow():
        tag = uuid.uuid4().hex[:6]
        alice = await user(open_server, "alice" + tag)
        bob = await user(open_server, "bob" + tag)
        other_device = nio.AsyncClient(open_server, "alice" + tag)
        try:
            assert isinstance(await other_device.login("pass-alice" + tag, device_name="second"), nio.LoginResponse)
            first = await other_device.sync(timeout=0)
            assert isinstance(first, nio.SyncResponse), first

            sent = _call(open_server, alice.access_token, "POST", "/_matrix/client/v1/friends/request",
                         {"user_id": bob.user_id, "message": "Hi!"})
            assert sent["status"] == "pending", sent
            incoming = _call(open_server, bob.access_token, "GET", "/_matrix/client/v1/friends/requests/incoming")
            assert [r["user_id"] for r in incoming["requests"]] == [alice.user_id]
            accepted = _call(open_server, bob.access_token, "POST",
                             f"/_matrix/client/v1/friends/request/{urllib.parse.quote(alice.user_id)}/accept")
            room = accepted["room_id"]

            synced = await bob.sync(timeout=0, full_state=True)
            assert isinstance(synced, nio.SyncResponse), synced
            assert room in synced.rooms.join, list(synced.rooms.join)
            assert set(bob.rooms[room].users) == {alice.user_id, bob.user_id}
            assert bob.rooms[room].join_rule == "invite"
            assert _global_account_data(synced, "m.direct") == {alice.user_id: [room]}

            # alice's other device: the change arrives in an incremental sync.
            later = await other_device.sync(timeout=5000, since=first.next_batch)
            assert isinstance(later, nio.SyncResponse), later
            friends = _global_account_data(later, "m.friends")
            assert friends is not None, [getattr(e, "type", None) for e in later.account_data_events]
            assert friends["friends"][bob.user_id]["room_id"] == room
            assert _global_account_data(later, "m.direct") == {bob.user_id: [room]}
        finally:
            for client in (alice, bob, other_device):
                await client.close()

    run(flow())
