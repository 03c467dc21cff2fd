"""EDUs both ways (issue 17, item 3): a Synapse user sees a peer user typing and reading, and
the peer user sees the Synapse user typing and reading (`m.typing` and `m.receipt` over
federation, as each server's `/sync` shows them under `rooms.join.<room>.ephemeral`)."""
import asyncio
import base64
import json
import os
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
    s, p, ws, wp, room, es, ep = await _pair_in_room(synapse, peer, "tsam", "tpat")
    try:
        # The peer user types: Synapse's user sees it, then sees it stop; and the other way.
        await _typing_seen(p, room, es, "on Synapse")
        await _typing_seen(s, room, ep, "on the peer")
    finally:
        await close_all(s, p)


async def _pair_in_room(synapse, peer, synapse_name, peer_name):
    """A new user on each server in a new shared room, each with a Watcher and an Ephemeral
    view of the room, both synced once."""
    s = await new_user(synapse, synapse_name)
    p = await new_user(peer, peer_name)
    ws, wp = Watcher(s, [peer]), Watcher(p, [synapse])
    await ws.sync_once(0)
    await wp.sync_once(0)
    room = await shared_room(s, p, ws, wp)
    es, ep = Ephemeral(s, room, peer), Ephemeral(p, room, synapse)
    await es.sync(0)
    await ep.sync(0)
    return s, p, ws, wp, room, es, ep


async def _typing_seen(typist, room, observer, where):
    """`typist` starts typing, then stops; `observer` (the other server's Ephemeral) sees both."""
    path = f"/_matrix/client/v3/rooms/{q(room)}/typing/{q(typist.user_id)}"
    status, body = await api(typist, "PUT", path, {"typing": True, "timeout": 30000})
    assert status == 200, body
    await observer.until(lambda e: typist.user_id in e.typing, f"{typist.user_id} typing in {room} {where}")
    status, body = await api(typist, "PUT", path, {"typing": False})
    assert status == 200, body
    await observer.until(lambda e: typist.user_id not in e.typing, f"{typist.user_id} no longer typing {where}")


def test_read_receipts_both_ways(synapse, peer):
    run(_receipts(synapse, peer))


async def _receipts(synapse, peer):
    s, p, ws, wp, room, es, ep = await _pair_in_room(synapse, peer, "rsam", "rpat")
    try:

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


def _device_keys(user_id, device_id, curve):
    return {"user_id": user_id, "device_id": device_id,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {f"curve25519:{device_id}": curve, f"ed25519:{device_id}": "ed" + curve},
            "signatures": {user_id: {f"ed25519:{device_id}": "sig"}}}


class DeviceLists:
    """Raw incremental /sync of one user, collecting `device_lists.changed`."""

    def __init__(self, client):
        self.client = client
        self.since = None
        self.changed = set()

    async def sync(self, timeout_ms=0):
        query = {"timeout": str(timeout_ms), "filter": EPHEMERAL_FILTER}
        if self.since:
            query["since"] = self.since
        status, body = await api(self.client, "GET", "/_matrix/client/v3/sync", query=query, timeout=timeout_ms / 1000 + 20)
        if status == 200:
            self.since = body.get("next_batch")
            self.changed.update(body.get("device_lists", {}).get("changed", []))


async def _eventually(what, probe, client, other, timeout=DEFAULT_WAIT):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        ok, last = await probe()
        if ok:
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"{client.user_id} on {client.server.server_name}: not within {timeout:.0f} s: {what}\n"
                         f"  last seen: {last}\n  see {client.server.describe()}\n  see {other.describe()}\n")


async def _second_device(client, localpart):
    """Logs `client`'s user in again (a new device) and uploads its keys; returns the device ID
    and a token for it."""
    status, body = await api(client, "POST", "/_matrix/client/v3/login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": localpart}, "password": "pw-" + localpart})
    assert status == 200, f"second login of {localpart} on {client.server.server_name}: {status} {body}"
    device, token = body["device_id"], body["access_token"]
    saved = client.access_token
    client.access_token = token
    try:
        status, body = await api(client, "POST", "/_matrix/client/v3/keys/upload",
                                 {"device_keys": _device_keys(client.user_id, device, "second" + device)})
        assert status == 200, body
    finally:
        client.access_token = saved
    return device, token


async def _delete_device(client, localpart, device):
    path = f"/_matrix/client/v3/devices/{q(device)}"
    status, body = await api(client, "DELETE", path, {})
    assert status == 401, body
    status, body = await api(client, "DELETE", path, {"auth": {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": localpart},
        "password": "pw-" + localpart, "session": body.get("session")}})
    assert status == 200, f"deleting {device} on {client.server.server_name}: {status} {body}"


def _keys_probe(asker, user, check):
    async def probe():
        status, body = await api(asker, "POST", "/_matrix/client/v3/keys/query", {"device_keys": {user: []}})
        return (status == 200 and check(body)), (status, body)
    return probe


def test_device_list_and_signing_key_updates_both_ways(synapse, peer):
    run(_device_lists(synapse, peer), budget=240)


async def _device_lists(synapse, peer):
    s = await new_user(synapse, "dsam")
    p = await new_user(peer, "dpat")
    try:
        ws, wp = Watcher(s, [peer]), Watcher(p, [synapse])
        await ws.sync_once(0)
        await wp.sync_once(0)
        room = await shared_room(s, p, ws, wp)
        for c in (s, p):
            status, body = await api(c, "POST", "/_matrix/client/v3/keys/upload",
                                     {"device_keys": _device_keys(c.user_id, c.device_id, "first" + c.device_id)})
            assert status == 200, body
        ds, dp = DeviceLists(s), DeviceLists(p)
        await ds.sync()
        await dp.sync()
        # Each sees the other's first device (the peer fills its cache through user/devices).
        await _eventually("the Synapse user's device in the peer's /keys/query",
                          _keys_probe(p, s.user_id, lambda b: s.device_id in b["device_keys"].get(s.user_id, {})), p, synapse)
        await _eventually("the peer user's device in Synapse's /keys/query",
                          _keys_probe(s, p.user_id, lambda b: p.device_id in b["device_keys"].get(p.user_id, {})), s, peer)

        # A new device on each side: the other user's /sync says the user changed, and the
        # new device is in /keys/query (m.device_list_update over federation).
        s_local, p_local = s.user_id[1:].split(":")[0], p.user_id[1:].split(":")[0]
        s2, _ = await _second_device(s, s_local)
        p2, _ = await _second_device(p, p_local)

        async def changed(lists, user):
            await lists.sync(1000)
            return user in lists.changed, sorted(lists.changed)
        await _eventually(f"{s.user_id} in the peer user's device_lists.changed", lambda: changed(dp, s.user_id), p, synapse)
        await _eventually(f"{p.user_id} in the Synapse user's device_lists.changed", lambda: changed(ds, p.user_id), s, peer)
        await _eventually(f"the Synapse user's new device {s2} on the peer",
                          _keys_probe(p, s.user_id, lambda b: s2 in b["device_keys"].get(s.user_id, {})), p, synapse)
        await _eventually(f"the peer user's new device {p2} on Synapse",
                          _keys_probe(s, p.user_id, lambda b: p2 in b["device_keys"].get(p.user_id, {})), s, peer)

        # Deleted devices disappear on the other side.
        await _delete_device(s, s_local, s2)
        await _delete_device(p, p_local, p2)
        await _eventually(f"the Synapse user's deleted device {s2} gone on the peer",
                          _keys_probe(p, s.user_id, lambda b: s2 not in b["device_keys"].get(s.user_id, {})
                                      and s.device_id in b["device_keys"].get(s.user_id, {})), p, synapse)
        await _eventually(f"the peer user's deleted device {p2} gone on Synapse",
                          _keys_probe(s, p.user_id, lambda b: p2 not in b["device_keys"].get(p.user_id, {})
                                      and p.device_id in b["device_keys"].get(p.user_id, {})), s, peer)

        # Cross-signing master keys (m.signing_key_update). Synapse wants a real ed25519 key
        # (32 bytes, unpadded base64).
        masters = {}
        for c in (s, p):
            public = base64.b64encode(os.urandom(32)).decode().rstrip("=")
            masters[c.user_id] = "ed25519:" + public
            master = {"user_id": c.user_id, "usage": ["master"], "keys": {"ed25519:" + public: public}}
            status, body = await api(c, "POST", "/_matrix/client/v3/keys/device_signing/upload", {"master_key": master})
            assert status == 200, f"cross-signing upload on {c.server.server_name}: {status} {body}"
        await _eventually("the Synapse user's master key on the peer",
                          _keys_probe(p, s.user_id, lambda b: masters[s.user_id] in
                                      b.get("master_keys", {}).get(s.user_id, {}).get("keys", {})), p, synapse)
        await _eventually("the peer user's master key on Synapse",
                          _keys_probe(s, p.user_id, lambda b: masters[p.user_id] in
                                      b.get("master_keys", {}).get(p.user_id, {}).get("keys", {})), s, peer)
        _ = room
    finally:
        await close_all(s, p)
