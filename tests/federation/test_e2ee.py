"""End-to-end encryption across the two servers (issue 17, item 4): a matrix-nio client with
encryption (vodozemac, `matrix-nio[e2e]`) on Synapse and one on the peer share an encrypted room
and exchange Megolm messages, and each decrypts the other's. That needs, over federation: the
device keys of the other user (`user/keys/query`), a one-time key of each of their devices
(`user/keys/claim`), the Olm-encrypted room keys as to-device messages (`m.direct_to_device`),
and the device-list tracking that tells each client whom to share with."""
import asyncio
import time

import nio
import pytest

from clients import DEFAULT_WAIT, check, close_all, run, unique

# No lazy loading: the encrypting client must know every member of the room to share its keys.
E2E_FILTER = {
    "room": {"timeline": {"limit": 100}, "ephemeral": {"not_types": ["*"]},
             "account_data": {"not_types": ["*"]}},
    "presence": {"not_types": ["*"]},
    "account_data": {"not_types": ["*"]},
}


async def e2e_user(server, prefix, store):
    """A fresh user on `server` with an encrypting nio client (its Olm account in `store`),
    device keys and one-time keys uploaded."""
    login = await asyncio.to_thread(server.register, unique(prefix))
    config = nio.AsyncClientConfig(max_limit_exceeded=3, max_timeouts=1, max_timeout_retry_wait_time=2,
                                   store_sync_tokens=False, encryption_enabled=True)
    client = nio.AsyncClient(server.base_url, login["user_id"], device_id=login["device_id"],
                             store_path=str(store), ssl=server.ssl, config=config)
    client.restore_login(login["user_id"], login["device_id"], login["access_token"])
    client.server = server
    assert client.olm is not None, "matrix-nio has no encryption support (install matrix-nio[e2e])"
    check(await client.keys_upload(), nio.KeysUploadResponse, "uploading device keys", client)
    return client


class E2EWatcher:
    """One encrypting client's /sync loop: after each response it does what a client's sync
    loop does for encryption (upload keys, query changed device lists, claim keys, send queued
    to-device messages) and keeps the plaintext of every decrypted message per room, and the
    Megolm events it could not decrypt yet (retried when a room key arrives later)."""

    def __init__(self, client, other):
        self.client = client
        self.other = other
        self.since = None
        self.plain = {}  # room_id -> [(sender, body)]
        self.undecrypted = []
        self.joined = set()
        self.invites = set()
        self.errors = []

    async def maintain(self):
        c = self.client
        if c.should_upload_keys:
            await c.keys_upload()
        if c.should_query_keys:
            await c.keys_query()
        if c.should_claim_keys:
            await c.keys_claim(c.get_users_for_key_claiming())
        await c.send_to_device_messages()

    async def tick(self, timeout_ms=2000):
        c = self.client
        try:
            reply = await asyncio.wait_for(c.sync(timeout=timeout_ms, sync_filter=E2E_FILTER, since=self.since),
                                           timeout=timeout_ms / 1000 + 20)
        except Exception as e:
            self.errors.append(f"{type(e).__name__}: {e}")
            await asyncio.sleep(0.5)
            return
        if not isinstance(reply, nio.SyncResponse):
            self.errors.append(repr(reply))
            await asyncio.sleep(0.5)
            return
        self.since = reply.next_batch
        for room_id, room in reply.rooms.join.items():
            self.joined.add(room_id)
            self.invites.discard(room_id)
            for event in room.timeline.events:
                self.take(room_id, event)
        for room_id in reply.rooms.invite:
            self.invites.add(room_id)
        retry, self.undecrypted = self.undecrypted, []
        for room_id, event in retry:
            try:
                event.room_id = room_id
                self.take(room_id, c.decrypt_event(event))
            except Exception:
                self.undecrypted.append((room_id, event))
        await self.maintain()

    def take(self, room_id, event):
        if isinstance(event, nio.MegolmEvent):
            self.undecrypted.append((room_id, event))
        elif isinstance(event, nio.RoomMessageText):
            self.plain.setdefault(room_id, []).append((event.sender, event.body, event.decrypted))

    async def until(self, condition, what, timeout=DEFAULT_WAIT):
        deadline = time.monotonic() + timeout
        while not condition(self):
            if time.monotonic() > deadline:
                c = self.client
                raise AssertionError(
                    f"{c.user_id} on {c.server.server_name}: not seen within {timeout:.0f} s: {what}\n"
                    f"  decrypted: {self.plain}\n  undecrypted: {[(r, e.session_id) for r, e in self.undecrypted]}\n"
                    f"  device store: { {u: list(d) for u, d in c.device_store.items()} }\n"
                    f"  sync errors (last 5): {self.errors[-5:]}\n"
                    f"  see {c.server.describe()}\n  see {self.other.describe()}\n")
            await self.tick()

    def decrypted(self, room_id):
        return [(sender, body) for sender, body, decrypted in self.plain.get(room_id, []) if decrypted]


async def send_encrypted(watcher, room, body):
    """Sends `body` encrypted: members loaded, device lists queried, Olm sessions claimed and
    the Megolm session shared (nio does the last two inside room_send)."""
    c = watcher.client
    check(await c.joined_members(room), nio.JoinedMembersResponse, f"members of {room}", c)
    await watcher.maintain()
    reply = await c.room_send(room, "m.room.message", {"msgtype": "m.text", "body": body},
                              ignore_unverified_devices=True)
    check(reply, nio.RoomSendResponse, f"sending an encrypted message in {room}", c)


@pytest.mark.parametrize("creator", ["synapse", "peer"])
def test_megolm_messages_both_ways(synapse, peer, creator, tmp_path):
    run(_megolm_both_ways(synapse, peer, creator, tmp_path), budget=240)


async def _megolm_both_ways(synapse, peer, creator, tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "p").mkdir()
    s = await e2e_user(synapse, "ealice", tmp_path / "s")
    p = await e2e_user(peer, "ebob", tmp_path / "p")
    try:
        ws, wp = E2EWatcher(s, peer), E2EWatcher(p, synapse)
        await ws.tick(0)
        await wp.tick(0)
        owner, guest = (ws, wp) if creator == "synapse" else (wp, ws)
        encryption = {"type": "m.room.encryption", "state_key": "",
                      "content": {"algorithm": "m.megolm.v1.aes-sha2"}}
        created = check(await owner.client.room_create(invite=[guest.client.user_id], preset=nio.RoomPreset.private_chat,
                                                       initial_state=[encryption]),
                        nio.RoomCreateResponse, "creating an encrypted room", owner.client)
        room = created.room_id
        await guest.until(lambda w: room in w.invites, f"the invite to {room}")
        check(await guest.client.join(room), nio.JoinResponse, f"joining {room}", guest.client)
        await guest.until(lambda w: room in w.joined and w.client.rooms.get(room) is not None
                          and w.client.rooms[room].encrypted, f"{room} joined and encrypted")
        await owner.until(lambda w: w.client.rooms.get(room) is not None
                          and guest.client.user_id in w.client.rooms[room].users, f"{guest.client.user_id}'s join")

        from_s, from_p = f"secret from synapse {unique('')}", f"secret from the peer {unique('')}"
        await send_encrypted(ws, room, from_s)
        await wp.until(lambda w: (s.user_id, from_s) in w.decrypted(room),
                       f"the Synapse user's Megolm message decrypted on the peer")
        await send_encrypted(wp, room, from_p)
        await ws.until(lambda w: (p.user_id, from_p) in w.decrypted(room),
                       f"the peer user's Megolm message decrypted on Synapse")
        # A second message from each side reuses the Megolm session both already hold.
        await send_encrypted(ws, room, from_s + " again")
        await send_encrypted(wp, room, from_p + " again")
        await wp.until(lambda w: (s.user_id, from_s + " again") in w.decrypted(room), "the second Synapse message")
        await ws.until(lambda w: (p.user_id, from_p + " again") in w.decrypted(room), "the second peer message")
    finally:
        await close_all(s, p)
