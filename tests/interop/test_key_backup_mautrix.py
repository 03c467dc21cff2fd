"""Server-side key backup driven by mautrix-python (PyPI) against the real server.

mautrix-python 0.21 has no key-backup methods (mautrix-go has them); what it has is the rest of
what a backup needs, and this test uses it as a client would: its HTTP API (`api.request` with
its `Path` builder, its errors keyed by errcode), its login, its account data, and its secret
storage (SSSS) to keep the backup's private key under `m.megolm_backup.v1`, as Element does.

Device A makes a real Megolm session (vodozemac), encrypts a message with it, backs the session
up (`m.megolm_backup.v1.curve25519-aes-sha2`) and stores the backup key in secret storage under
a passphrase. Device B -- a new mautrix login of the same user -- unlocks secret storage with the
passphrase, takes the backup key, finds the backup, downloads the session at the three levels and
decrypts the message with it. Then the version, key and error rules as mautrix sees them.
"""
import asyncio
import base64
import json
import uuid

import pytest
import vodozemac
from unpaddedbase64 import encode_base64

ALGORITHM = "m.megolm_backup.v1.curve25519-aes-sha2"
PASSPHRASE = "correct horse battery staple"


def test_mautrix_key_backup_round_trip(open_server):
    from mautrix.api import HTTPAPI, Method, Path
    from mautrix.client import Client
    from mautrix.crypto.ssss import Machine as SecretStorage
    from mautrix.errors import MatrixRequestError, MNotFound
    from mautrix.types import EventType, UserID

    async def login(user, password, device_name):
        api = HTTPAPI(base_url=open_server)
        client = Client(api=api)
        await client.login(identifier=UserID(user), password=password, device_name=device_name)
        return client

    async def flow():
        name = "mautrixbackup" + uuid.uuid4().hex[:6]
        password = "pass-" + name
        api = HTTPAPI(base_url=open_server)
        registered = await api.request(Method.POST, Path.v3.register, {
            "username": name, "password": password, "auth": {"type": "m.login.dummy"}})
        await api.session.close()
        user = registered["user_id"]
        a = await login(user, password, "device A")
        b = None
        try:
            # A: a Megolm session and a message encrypted with it.
            outbound = vodozemac.GroupSession()
            room = "!backup:interop.test"
            inbound = vodozemac.InboundGroupSession(outbound.session_key)
            ciphertext = outbound.encrypt(b"history from before").to_base64()
            session_id = inbound.session_id

            # A: the backup version, its key kept in secret storage under a passphrase.
            backup_key = vodozemac.PkDecryption()
            public_key = backup_key.public_key.to_base64()
            created = await a.api.request(Method.POST, Path.v3.room_keys.version,
                                          {"algorithm": ALGORITHM, "auth_data": {"public_key": public_key}})
            version = created["version"]
            ssss_a = SecretStorage(a)
            storage_key = await ssss_a.generate_and_upload_key(PASSPHRASE)
            await ssss_a.set_default_key_id(storage_key.id)
            await ssss_a.set_encrypted_account_data(
                EventType.MEGOLM_BACKUP_V1, base64.b64encode(backup_key.key.to_bytes()).decode(), storage_key)

            # A: the session, encrypted for the backup, uploaded at the session level.
            backed_up = {"algorithm": "m.megolm.v1.aes-sha2", "sender_key": "SENDERCURVE",
                         "session_key": inbound.export_at(0).to_base64(),
                         "sender_claimed_keys": {"ed25519": "SENDERED"}, "forwarding_curve25519_key_chain": []}
            message = vodozemac.PkEncryption.from_key(backup_key.public_key).encrypt(json.dumps(backed_up).encode())
            key_data = {"first_message_index": 0, "forwarded_count": 0, "is_verified": True,
                        "session_data": {"ephemeral": encode_base64(message.ephemeral_key),
                                         "ciphertext": encode_base64(message.ciphertext),
                                         "mac": encode_base64(message.mac)}}
            put = await a.api.request(Method.PUT, Path.v3.room_keys.keys[room][session_id], key_data,
                                      query_params={"version": version})
            assert put["count"] == 1

            # B: a new login; secret storage gives it the backup key.
            b = await login(user, password, "device B")
            assert b.device_id != a.device_id
            ssss_b = SecretStorage(b)
            key_id, metadata = await ssss_b.get_default_key_data()
            unlocked = metadata.verify_passphrase(key_id, PASSPHRASE)
            secret = await ssss_b.get_decrypted_account_data(EventType.MEGOLM_BACKUP_V1, unlocked)
            decryption = vodozemac.PkDecryption.from_key(
                vodozemac.Curve25519SecretKey.from_bytes(base64.b64decode(secret)))
            info = await b.api.request(Method.GET, Path.v3.room_keys.version)
            assert info["version"] == version and info["count"] == 1 and info["etag"] == put["etag"]
            assert info["auth_data"]["public_key"] == decryption.public_key.to_base64()

            # B: the key at the three levels, the same each time; it decrypts the message.
            query = {"version": version}
            everything = await b.api.request(Method.GET, Path.v3.room_keys.keys, query_params=query)
            of_room = await b.api.request(Method.GET, Path.v3.room_keys.keys[room], query_params=query)
            one = await b.api.request(Method.GET, Path.v3.room_keys.keys[room][session_id], query_params=query)
            assert everything["rooms"][room]["sessions"][session_id] == one == of_room["sessions"][session_id]
            data = one["session_data"]
            plain = json.loads(decryption.decrypt(
                vodozemac.Message.from_base64(data["ciphertext"], data["mac"], data["ephemeral"])))
            restored = vodozemac.InboundGroupSession.import_session(vodozemac.ExportedSessionKey(plain["session_key"]))
            assert restored.session_id == session_id
            decrypted = restored.decrypt(vodozemac.MegolmMessage.from_base64(ciphertext))
            assert decrypted.plaintext == b"history from before"

            # The rules as mautrix sees them: a worse key does not replace a better one.
            worse = dict(key_data, is_verified=False, session_data={"ephemeral": "x", "ciphertext": "y", "mac": "z"})
            unchanged = await b.api.request(Method.PUT, Path.v3.room_keys.keys[room][session_id], worse,
                                            query_params=query)
            assert unchanged == put
            with pytest.raises(MNotFound):
                await b.api.request(Method.GET, Path.v3.room_keys.keys[room]["unknown"], query_params=query)
            # A newer version makes the old one read-only: M_WRONG_ROOM_KEYS_VERSION with the current one.
            newer = (await b.api.request(Method.POST, Path.v3.room_keys.version,
                                         {"algorithm": ALGORITHM, "auth_data": {"public_key": public_key}}))["version"]
            with pytest.raises(MatrixRequestError) as refused:
                await a.api.request(Method.PUT, Path.v3.room_keys.keys[room][session_id], key_data, query_params=query)
            assert refused.value.errcode == "M_WRONG_ROOM_KEYS_VERSION" and refused.value.http_status == 403
            assert (await a.api.request(Method.GET, Path.v3.room_keys.version[version]))["count"] == 1
            # Update, delete keys, delete versions.
            await b.api.request(Method.PUT, Path.v3.room_keys.version[newer],
                                {"algorithm": ALGORITHM, "auth_data": {"public_key": public_key, "note": "updated"},
                                 "version": newer})
            assert (await a.api.request(Method.GET, Path.v3.room_keys.version))["auth_data"]["note"] == "updated"
            deleted = await a.api.request(Method.DELETE, Path.v3.room_keys.keys[room], query_params=query)
            assert deleted["count"] == 0 and deleted["etag"] != put["etag"]
            for number in (newer, version):
                await a.api.request(Method.DELETE, Path.v3.room_keys.version[number])
            with pytest.raises(MNotFound):
                await a.api.request(Method.GET, Path.v3.room_keys.version)
        finally:
            for client in (a, b):
                if client is not None:
                    await client.api.session.close()

    asyncio.run(flow())
