"""The seed's private chat sessions seen by matrix-nio (PyPI): alice opens a session with bob
and writes through the session API; bob's nio client gets an ordinary invite to a direct
room, joins it, syncs alice's message as an ordinary RoomMessageText, and answers with an
ordinary nio room_send that alice then reads through the session API."""
import json
import urllib.request
import uuid

import nio

from nio_users import run, user

BASE = "/_synapse/enhanced/private_chat/sessions"


def _call(server, token, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(server + path, data=data, method=method,
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_private_chat_with_nio(open_server):
    async def flow():
        tag = uuid.uuid4().hex[:6]
        alice = await user(open_server, "alice" + tag)
        bob = await user(open_server, "bob" + tag)
        try:
            session = _call(open_server, alice.access_token, "POST", BASE, {"user_id": bob.user_id})
            room = session["room_id"]
            sent = _call(open_server, alice.access_token, "POST", f"{BASE}/{session['session_id']}/messages",
                         {"body": "hello through the session API"})

            synced = await bob.sync(timeout=0)
            assert isinstance(synced, nio.SyncResponse), synced
            assert room in synced.rooms.invite, list(synced.rooms.invite)
            assert isinstance(await bob.join(room), nio.JoinResponse)
            synced = await bob.sync(timeout=0, full_state=True)
            events = synced.rooms.join[room].timeline.events
            texts = [e for e in events if isinstance(e, nio.RoomMessageText)]
            assert [(e.sender, e.body, e.event_id) for e in texts] == \
                [(alice.user_id, "hello through the session API", sent["event_id"])], events
            # A direct, invite-only room to nio as well.
            assert bob.rooms[room].join_rule == "invite"

            answer = await bob.room_send(room, "m.room.message", {"msgtype": "m.text", "body": "hi from nio"})
            assert isinstance(answer, nio.RoomSendResponse), answer
            page = _call(open_server, alice.access_token, "GET", f"{BASE}/{session['session_id']}/messages?limit=10")
            bodies = [(e["sender"], e["content"].get("body")) for e in page["chunk"] if e["type"] == "m.room.message"]
            assert bodies[0] == (bob.user_id, "hi from nio"), page
        finally:
            await alice.close()
            await bob.close()

    run(flow())
