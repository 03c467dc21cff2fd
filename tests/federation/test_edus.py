"""EDUs both ways (issue 17, item 3): a Synapse user sees a peer user typing and reading, and
the peer user sees the Synapse user typing and reading (`m.typing` and `m.receipt` over
federation, as each server's `/sync` shows them under `rooms.join.<room>.ephemeral`)."""
import json
import time

from clients import DEFAULT_WAIT, Watcher, api, check, close_all, new_user, q, run, shared_room

import nio

EPHEMERAL_FILTER = json.dumps({
    "room": {"timeline": {"limit": 10}, "state": {"lazy_load_members": True},
             "ephemeral": {"types": ["m.typing", "m.receipt"]}, "account_data": {"not_types": ["*"]}},
    "presence": {"not_types": ["*"]}, "account_data": {"not_types": ["*"]},
})


class Ephemeral:
    """A raw /sync loop over one user's ephemeral events of one room: the latest typing list
    and every receipt seen."""

    def __init__(self, client, room, other):
        self.client, self.room, self.other = client, room, other
        self.since = None
        self.typing = []
        self.receipts = []  # (event_id, receipt type, user_id)
        self.seen = []

    async def sync(self, timeout_ms):
        query = {"timeout": str(timeout_ms), "filter": EPHEMERAL_FILTER}
        if self.since:
            query["since"] = self.since
        status, body = await api(self.client, "GET", "/_matrix/client/v3/sync", query=query, timeout=timeout_ms / 1000 + 20)
        if status != 200:
            return
        self.since = body.get("next_batch")
        room = body.get("rooms", {}).get("join", {}).get(self.room, {})
        for event in room.get("ephemeral", {}).get("events", []):
            self.seen.append(event)
            if event.get("type") == "m.typing":
                self.typing = event.get("content", {}).get("user_ids", [])
            elif event.get("type") == "m.receipt":
                for event_id, by_type in event.get("content", {}).items():
                    for receipt_type, by_user in by_type.items():
                        for user in by_user:
                            self.receipts.append((event_id, receipt_type, user))

    async def until(self, condition, what, timeout=DEFAULT_WAIT):
        deadline = time.monotonic() + timeout
        while not condition(self):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.client.user_id} on {self.client.server.server_name}: not seen within {timeout:.0f} s: {what}\n"
                    f"  ephemeral events seen (last 10): {self.seen[-10:]}\n"
                    f"  see {self.client.server.describe()}\n  see {self.other.describe()}\n")
            await self.sync(2000)


async def _send(client, room, body):
    reply = check(await client.room_send(room, "m.room.message", {"msgtype": "m.text", "body": body}),
                  nio.RoomSendResponse, "sending a message", client)
    return reply.event_id


def test_typing_both_ways(synapse, peer):
    run(_typing(synapse, peer))


async def _typing(synapse, peer):
    s = await new_user(synapse, "tsam")
    p = await new_user(peer, "tpat")
    try:
        ws, wp = Watcher(s, [peer]), Watcher(p, [synapse])
        await ws.sync_once(0)
        await wp.sync_once(0)
        room = await shared_room(s, p, ws, wp)
        es, ep = Ephemeral(s, room, peer), Ephemeral(p, room, synapse)
        await es.sync(0)
        await ep.sync(0)

        # The peer user types: Synapse's user sees it, then sees it stop.
        status, body = await api(p, "PUT", f"/_matrix/client/v3/rooms/{q(room)}/typing/{q(p.user_id)}",
                                 {"typing": True, "timeout": 30000})
        assert status == 200, body
        await es.until(lambda e: p.user_id in e.typing, f"{p.user_id} typing in {room} on Synapse")
        status, body = await api(p, "PUT", f"/_matrix/client/v3/rooms/{q(room)}/typing/{q(p.user_id)}", {"typing": False})
        assert status == 200, body
        await es.until(lambda e: p.user_id not in e.typing, f"{p.user_id} no longer typing on Synapse")

        # And the other way.
        status, body = await api(s, "PUT", f"/_matrix/client/v3/rooms/{q(room)}/typing/{q(s.user_id)}",
                                 {"typing": True, "timeout": 30000})
        assert status == 200, body
        await ep.until(lambda e: s.user_id in e.typing, f"{s.user_id} typing in {room} on the peer")
        status, body = await api(s, "PUT", f"/_matrix/client/v3/rooms/{q(room)}/typing/{q(s.user_id)}", {"typing": False})
        assert status == 200, body
        await ep.until(lambda e: s.user_id not in e.typing, f"{s.user_id} no longer typing on the peer")
    finally:
        await close_all(s, p)


def test_read_receipts_both_ways(synapse, peer):
    run(_receipts(synapse, peer))


async def _receipts(synapse, peer):
    s = await new_user(synapse, "rsam")
    p = await new_user(peer, "rpat")
    try:
        ws, wp = Watcher(s, [peer]), Watcher(p, [synapse])
        await ws.sync_once(0)
        await wp.sync_once(0)
        room = await shared_room(s, p, ws, wp)
        es, ep = Ephemeral(s, room, peer), Ephemeral(p, room, synapse)
        await es.sync(0)
        await ep.sync(0)

        # The peer user reads the Synapse user's message.
        from_s = await _send(s, room, "read me, peer")
        await wp.until(lambda w: "read me, peer" in w.bodies(room), "the Synapse message on the peer")
        status, body = await api(p, "POST", f"/_matrix/client/v3/rooms/{q(room)}/receipt/m.read/{q(from_s)}", {})
        assert status == 200, body
        await es.until(lambda e: (from_s, "m.read", p.user_id) in e.receipts,
                       f"{p.user_id}'s read receipt for {from_s} on Synapse")

        # The Synapse user reads the peer user's message.
        from_p = await _send(p, room, "read me, synapse")
        await ws.until(lambda w: "read me, synapse" in w.bodies(room), "the peer message on Synapse")
        status, body = await api(s, "POST", f"/_matrix/client/v3/rooms/{q(room)}/receipt/m.read/{q(from_p)}", {})
        assert status == 200, body
        await ep.until(lambda e: (from_p, "m.read", s.user_id) in e.receipts,
                       f"{s.user_id}'s read receipt for {from_p} on the peer")

        # A private receipt never leaves its server.
        from_s2 = await _send(s, room, "read me privately")
        await wp.until(lambda w: "read me privately" in w.bodies(room), "the second Synapse message on the peer")
        status, body = await api(p, "POST", f"/_matrix/client/v3/rooms/{q(room)}/receipt/m.read.private/{q(from_s2)}", {})
        assert status == 200, body
        # A public one sent after it arrives; the private one must not have come before it.
        from_s3 = await _send(s, room, "and read me publicly")
        await wp.until(lambda w: "and read me publicly" in w.bodies(room), "the third Synapse message on the peer")
        status, body = await api(p, "POST", f"/_matrix/client/v3/rooms/{q(room)}/receipt/m.read/{q(from_s3)}", {})
        assert status == 200, body
        await es.until(lambda e: (from_s3, "m.read", p.user_id) in e.receipts, f"{p.user_id}'s receipt for {from_s3}")
        assert not any(r[0] == from_s2 for r in es.receipts), f"a private receipt reached Synapse: {es.receipts}"
    finally:
        await close_all(s, p)
