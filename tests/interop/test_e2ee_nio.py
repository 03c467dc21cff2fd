"""matrix-nio with end-to-end encryption (its vodozemac machine) against the real server.

Alice and Bob upload device and one-time keys; Alice creates an encrypted room, invites Bob
and sends a message. nio learns Bob's device from sync's device_lists and /keys/query,
claims one of his one-time keys, sends him the room key over to-device (Olm), and Bob's nio
decrypts the message from his own sync -- every piece of the key API and of sync's key
fields as a real client uses them."""
import asyncio
import tempfile
import uuid

import nio


async def e2e_user(server, name, store):
    config = nio.AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False)
    client = nio.AsyncClient(server, name, store_path=store, config=config)
    reply = await client.register(name, "pass-" + name)
    assert isinstance(reply, nio.RegisterResponse), reply
    assert client.olm is not None, "nio's encryption support is not installed"
    return client


def test_encrypted_message_between_nio_clients(open_server):
    async def flow():
        tag = uuid.uuid4().hex[:6]
        with tempfile.TemporaryDirectory() as alice_store, tempfile.TemporaryDirectory() as bob_store:
            alice = await e2e_user(open_server, "alice" + tag, alice_store)
            bob = await e2e_user(open_server, "bob" + tag, bob_store)
            try:
                for client in (alice, bob):
                    assert client.should_upload_keys
                    uploaded = await client.keys_upload()
                    assert isinstance(uploaded, nio.KeysUploadResponse), uploaded
                    assert uploaded.signed_curve25519_count > 0
                    first = await client.sync(timeout=0)
                    assert isinstance(first, nio.SyncResponse), first
                    # The server's count matches what nio uploaded: nothing more to upload.
                    assert not client.should_upload_keys

                created = await alice.room_create(
                    name="Secret room", invite=[bob.user_id],
                    initial_state=[{"type": "m.room.encryption", "state_key": "",
                                    "content": {"algorithm": "m.megolm.v1.aes-sha2"}}])
                assert isinstance(created, nio.RoomCreateResponse), created
                room = created.room_id
                await bob.sync(timeout=5000)
                assert isinstance(await bob.join(room), nio.JoinResponse)
                await bob.sync(timeout=0)

                # Alice's sync reports Bob's device list as changed (he joined her room).
                synced = await alice.sync(timeout=5000)
                assert isinstance(synced, nio.SyncResponse), synced
                assert alice.rooms[room].encrypted
                assert bob.user_id in alice.rooms[room].users
                if alice.should_query_keys:
                    queried = await alice.keys_query()
                    assert isinstance(queried, nio.KeysQueryResponse), queried
                assert bob.device_id in alice.device_store[bob.user_id]

                sent = await alice.room_send(room, "m.room.message", {"msgtype": "m.text", "body": "for bob only"},
                                             ignore_unverified_devices=True)
                assert isinstance(sent, nio.RoomSendResponse), sent

                # Bob's sync brings the room key (to-device, Olm) and the Megolm message.
                decrypted = None
                for _ in range(5):
                    reply = await bob.sync(timeout=3000)
                    assert isinstance(reply, nio.SyncResponse), reply
                    if room in reply.rooms.join:
                        for event in reply.rooms.join[room].timeline.events:
                            if event.event_id == sent.event_id:
                                decrypted = event
                    if decrypted is not None:
                        break
                assert isinstance(decrypted, nio.RoomMessageText), decrypted
                assert decrypted.decrypted
                assert decrypted.body == "for bob only"

                # Alice's claim used one of Bob's one-time keys: his sync count went down.
                assert reply.device_key_count.signed_curve25519 == uploaded.signed_curve25519_count - 1
            finally:
                await alice.close()
                await bob.close()

    asyncio.run(flow())
