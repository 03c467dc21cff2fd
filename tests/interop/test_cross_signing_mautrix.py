"""Cross-signing with mautrix-python's crypto machine (python-olm) against the real server.

A first device bootstraps cross-signing as mautrix does it: secret storage key, the three
cross-signing keys (the master key signed by the device, the others by the master key)
through keys/device_signing/upload, then its own device signed by the self-signing key
through keys/signatures/upload. A second device of the same user restores the keys from
secret storage with the recovery key and signs itself. The server must accept each of those
requests and serve what was signed; a self-signing key signed by another key than the master
key is refused with 400 M_INVALID_SIGNATURE."""
import uuid

import olm
from mautrix.api import HTTPAPI
from mautrix.client import Client
from mautrix.client.state_store import MemoryStateStore
from mautrix.crypto import OlmMachine
from mautrix.crypto.signature import sign_olm
from mautrix.crypto.store import MemoryCryptoStore
from mautrix.errors import MatrixRequestError
from mautrix.types import CrossSigningKeys, CrossSigningUsage, KeyID, UserID

from nio_users import run


async def _machine(server, user_id, password, device_name):
    api = HTTPAPI(base_url=server)
    state = MemoryStateStore()
    client = Client(mxid=UserID(user_id), api=api, state_store=state)
    await client.login(identifier=user_id, password=password, initial_device_display_name=device_name)
    store = MemoryCryptoStore(client.mxid, "pickle")
    machine = OlmMachine(client, store, state)
    client.crypto = machine
    await machine.load()
    await machine.share_keys()
    return client, machine


async def _query(client, user_id):
    return await client.api.request("POST", "/_matrix/client/v3/keys/query", {"device_keys": {user_id: []}})


def test_mautrix_bootstraps_and_restores_cross_signing(open_server):
    async def flow():
        name = "xsign" + uuid.uuid4().hex[:6]
        password = "pass-" + name
        api = HTTPAPI(base_url=open_server)
        registered = await api.request("POST", "/_matrix/client/v3/register",
                                        {"username": name, "password": password, "auth": {"type": "m.login.dummy"}})
        await api.session.close()
        user_id = registered["user_id"]

        first, first_machine = await _machine(open_server, user_id, password, "first")
        second = None
        try:
            recovery_key = await first_machine.generate_recovery_key()
            assert recovery_key
            keys = await _query(first, user_id)
            public = first_machine._cross_signing_public_keys
            master_id = "ed25519:" + public.master_key
            ssk_id = "ed25519:" + public.self_signing_key
            assert master_id in keys["master_keys"][user_id]["keys"]
            assert ssk_id in keys["self_signing_keys"][user_id]["keys"]
            assert "ed25519:" + public.user_signing_key in keys["user_signing_keys"][user_id]["keys"]
            # The master key carries the first device's signature, the device the self-signing key's.
            assert f"ed25519:{first.device_id}" in keys["master_keys"][user_id]["signatures"][user_id]
            assert ssk_id in keys["device_keys"][user_id][first.device_id]["signatures"][user_id]

            # A second device restores the private keys from secret storage and signs itself.
            second, second_machine = await _machine(open_server, user_id, password, "second")
            await second_machine.verify_with_recovery_key(recovery_key)
            keys = await _query(second, user_id)
            assert ssk_id in keys["device_keys"][user_id][second.device_id]["signatures"][user_id]

            # A self-signing key signed by a key other than the master key is refused.
            forger = olm.PkSigning(olm.PkSigning.generate_seed())
            rogue = olm.PkSigning(olm.PkSigning.generate_seed())
            forged = CrossSigningKeys(user_id=UserID(user_id), usage=[CrossSigningUsage.SELF],
                                      keys={KeyID.ed25519(rogue.public_key): rogue.public_key})
            forged.signatures = {UserID(user_id): {KeyID.ed25519(public.master_key): sign_olm(forged, forger)}}
            try:
                await first.upload_cross_signing_keys(keys={CrossSigningUsage.SELF: forged})
                raise AssertionError("a forged self-signing key was accepted")
            except MatrixRequestError as e:
                assert e.http_status == 400 and e.errcode == "M_INVALID_SIGNATURE", (e.http_status, e.errcode)
            keys = await _query(first, user_id)
            assert ssk_id in keys["self_signing_keys"][user_id]["keys"]
        finally:
            await first.api.session.close()
            if second is not None:
                await second.api.session.close()

    run(flow())
