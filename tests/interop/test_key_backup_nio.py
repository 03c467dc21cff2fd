"""Server-side key backup with matrix-nio (its vodozemac machine) against the real server.

matrix-nio has no key-backup API of its own, so this test plays the part a client's backup
module plays, with nio's own sessions and vodozemac's `m.megolm_backup.v1.curve25519-aes-sha2`
(PkEncryption/PkDecryption, the libolm-compatible scheme the specification describes):

1. Alice (device A) and Bob talk in an encrypted room; A holds two Megolm inbound sessions
   (her own, and Bob's that came over Olm).
2. A creates a backup version whose auth_data carries the backup's public key (signed by A's
   device key), encrypts each session's export for it and uploads them with
   `PUT /room_keys/keys`.
3. Alice logs in on a NEW device B, which has no room keys: the history from `/messages` does
   not decrypt. B reads the backup (`GET /room_keys/version`, `GET /room_keys/keys`), decrypts
   each `session_data` with the backup's private key (as a user would give it), imports the
   sessions into nio's store, and `/messages` now decrypts to the plaintext bodies.
"""
import asyncio
import json
import tempfile
import uuid

import aiohttp
import nio
import vodozemac
from unpaddedbase64 import encode_base64

ALGORITHM = "m.megolm_backup.v1.curve25519-aes-sha2"


async def api(client, method, path, body=None):
    """One client-server call with the client's access token; returns (status, json)."""
    async with aiohttp.ClientSession() as session:
        async with session.request(method, client.homeserver + "/_matrix/client/v3" + path, json=body,
                                   headers={"Authorization": "Bearer " + client.access_token}) as reply:
            return reply.status, await reply.json()


async def e2e_client(server, user, store):
    config = nio.AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False)
    return nio.AsyncClient(server, user, store_path=store, config=config)


async def messages(client, room):
    reply = await client.room_messages(room, start="", limit=50)
    assert isinstance(reply, nio.RoomMessagesResponse), reply
    return reply.chunk


async def sync_until(client, predicate, rounds=6):
    for _ in range(rounds):
        reply = await client.sync(timeout=2000)
        assert isinstance(reply, nio.SyncResponse), reply
        if predicate():
            return
    raise AssertionError("condition not reached after syncing")


def encrypt_for_backup(public_key, session, room_id):
    """A session's `KeyBackupData` (spec: "Backup algorithm: m.megolm_backup.v1.curve25519-aes-sha2")."""
    backed_up = {
        "algorithm": "m.megolm.v1.aes-sha2",
        "sender_key": session.sender_key,
        "session_key": session.export_session(session.first_known_index),
        "sender_claimed_keys": {"ed25519": session.ed25519},
        "forwarding_curve25519_key_chain": session.forwarding_chain,
    }
    message = vodozemac.PkEncryption.from_key(vodozemac.Curve25519PublicKey.from_base64(public_key)) \
        .encrypt(json.dumps(backed_up).encode())
    return {
        "first_message_index": session.first_known_index,
        "forwarded_count": len(session.forwarding_chain),
        "is_verified": False,
        "session_data": {"ephemeral": encode_base64(message.ephemeral_key),
                         "ciphertext": encode_base64(message.ciphertext),
                         "mac": encode_base64(message.mac)},
    }


def decrypt_from_backup(decryption, session_data):
    message = vodozemac.Message.from_base64(session_data["ciphertext"], session_data["mac"], session_data["ephemeral"])
    return json.loads(decryption.decrypt(message))


def test_nio_backs_up_room_keys_and_a_new_device_restores_them(open_server):
    async def flow():
        tag = uuid.uuid4().hex[:6]
        with tempfile.TemporaryDirectory() as a_store, tempfile.TemporaryDirectory() as b_store, \
                tempfile.TemporaryDirectory() as bob_store:
            alice = await e2e_client(open_server, "alice" + tag, a_store)
            bob = await e2e_client(open_server, "bob" + tag, bob_store)
            alice_b = None
            try:
                assert isinstance(await alice.register("alice" + tag, "pass-alice"), nio.RegisterResponse)
                assert isinstance(await bob.register("bob" + tag, "pass-bob"), nio.RegisterResponse)
                for client in (alice, bob):
                    assert isinstance(await client.keys_upload(), nio.KeysUploadResponse)
                    assert isinstance(await client.sync(timeout=0), nio.SyncResponse)

                created = await alice.room_create(
                    name="History", invite=[bob.user_id],
                    initial_state=[{"type": "m.room.encryption", "state_key": "",
                                    "content": {"algorithm": "m.megolm.v1.aes-sha2"}}])
                assert isinstance(created, nio.RoomCreateResponse), created
                room = created.room_id
                await bob.sync(timeout=3000)
                assert isinstance(await bob.join(room), nio.JoinResponse)
                await bob.sync(timeout=0)
                await sync_until(alice, lambda: room in alice.rooms and bob.user_id in alice.rooms[room].users)
                if alice.should_query_keys:
                    await alice.keys_query()
                sent = await alice.room_send(room, "m.room.message", {"msgtype": "m.text", "body": "alice's secret"},
                                             ignore_unverified_devices=True)
                assert isinstance(sent, nio.RoomSendResponse), sent
                # Bob gets Alice's room key and answers in the room; Alice gets his.
                await sync_until(bob, lambda: alice.olm.account.identity_keys["curve25519"]
                                 in bob.olm.inbound_group_store[room])
                if bob.should_query_keys:
                    await bob.keys_query()
                answer = await bob.room_send(room, "m.room.message", {"msgtype": "m.text", "body": "bob's reply"},
                                             ignore_unverified_devices=True)
                assert isinstance(answer, nio.RoomSendResponse), answer
                await sync_until(alice, lambda: bob.olm.account.identity_keys["curve25519"]
                                 in alice.olm.inbound_group_store[room])
                sessions = list(alice.olm.inbound_group_store)
                assert len(sessions) == 2, sessions

                # Device A backs its room keys up.
                backup_key = vodozemac.PkDecryption()
                public_key = backup_key.public_key.to_base64()
                auth_data = {"public_key": public_key}
                canonical = json.dumps(auth_data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
                signature = alice.olm.account.sign(canonical)
                auth_data["signatures"] = {alice.user_id: {"ed25519:" + alice.device_id: signature}}
                status, created_version = await api(alice, "POST", "/room_keys/version",
                                                    {"algorithm": ALGORITHM, "auth_data": auth_data})
                assert status == 200, created_version
                version = created_version["version"]
                upload = {"rooms": {room: {"sessions": {s.id: encrypt_for_backup(public_key, s, room) for s in sessions}}}}
                status, stored = await api(alice, "PUT", f"/room_keys/keys?version={version}", upload)
                assert status == 200, stored
                assert stored["count"] == 2
                # Uploading the same keys again changes nothing: same etag.
                status, again = await api(alice, "PUT", f"/room_keys/keys?version={version}", upload)
                assert again == stored

                # Device B: a new login of Alice, without any room key.
                alice_b = await e2e_client(open_server, alice.user_id, b_store)
                login = await alice_b.login("pass-alice", device_name="restored")
                assert isinstance(login, nio.LoginResponse), login
                assert alice_b.device_id != alice.device_id
                assert isinstance(await alice_b.keys_upload(), nio.KeysUploadResponse)
                await alice_b.sync(timeout=0)
                before = await messages(alice_b, room)
                assert any(isinstance(e, nio.MegolmEvent) for e in before), before
                assert not any(getattr(e, "body", None) in ("alice's secret", "bob's reply") for e in before)

                # B finds the backup and checks it is the one whose key the user gave.
                status, info = await api(alice_b, "GET", "/room_keys/version")
                assert status == 200, info
                assert info["version"] == version and info["algorithm"] == ALGORITHM and info["count"] == 2
                assert info["etag"] == stored["etag"]
                decryption = vodozemac.PkDecryption.from_key(
                    vodozemac.Curve25519SecretKey.from_base64(backup_key.key.to_base64()))
                assert decryption.public_key.to_base64() == info["auth_data"]["public_key"]
                status, backup = await api(alice_b, "GET", f"/room_keys/keys?version={version}")
                assert status == 200, backup
                restored = 0
                for room_id, entry in backup["rooms"].items():
                    for session_id, key in entry["sessions"].items():
                        data = decrypt_from_backup(decryption, key["session_data"])
                        session = nio.crypto.InboundGroupSession.import_session(
                            data["session_key"], data["sender_claimed_keys"]["ed25519"], data["sender_key"], room_id,
                            data["forwarding_curve25519_key_chain"])
                        assert session.id == session_id
                        if alice_b.olm.inbound_group_store.add(session):
                            alice_b.olm.save_inbound_group_session(session)
                            restored += 1
                assert restored == 2

                after = await messages(alice_b, room)
                bodies = {e.body for e in after if isinstance(e, nio.RoomMessageText)}
                assert {"alice's secret", "bob's reply"} <= bodies, after
                decrypted = [e for e in after if isinstance(e, nio.RoomMessageText)]
                assert all(e.decrypted for e in decrypted)
            finally:
                for client in (alice, bob, alice_b):
                    if client is not None:
                        await client.close()

    asyncio.run(flow())
