"""Inbound federation requests to the peer without a valid X-Matrix signature get 401
M_UNAUTHORIZED and change nothing. The same request signed with Synapse's real key (the harness
wrote that key) gets 200, so the 401s come from authentication and not from a missing route."""
import asyncio
import json
import time
import urllib.parse

import nio
import signedjson.sign

from clients import Watcher, check, close_all, new_user, q, run, shared_room, unique


def x_matrix(origin, destination, key_id, signature):
    return f'X-Matrix origin="{origin}",destination="{destination}",key="{key_id}",sig="{signature}"'


def sign(federation, method, uri, destination, content=None, origin=None):
    """The X-Matrix header of a request signed with Synapse's own signing key
    (server-server API, "Request Authentication")."""
    key_id, key = federation.synapse.signing_key()
    origin = origin or federation.synapse.server_name
    request = {"method": method, "uri": uri, "origin": origin, "destination": destination}
    if content is not None:
        request["content"] = content
    signed = signedjson.sign.sign_json(request, origin, key)
    return x_matrix(origin, destination, key_id, signed["signatures"][origin][key_id])


def expect_401(peer, method, uri, body, headers, what):
    status, reply = peer.request(method, uri, body=body, headers=headers)
    assert status == 401, f"{what}: {method} {uri} -> {status} {reply}, not 401\n  see {peer.describe()}"
    assert isinstance(reply, dict) and reply.get("errcode") == "M_UNAUTHORIZED", \
        f"{what}: 401 without errcode M_UNAUTHORIZED: {reply}"


def test_query_without_valid_signature_is_401(federation, synapse, peer):
    user = peer.register(unique("trent"))["user_id"]
    uri = "/_matrix/federation/v1/query/profile?" + urllib.parse.urlencode({"user_id": user})
    origin, dest = synapse.server_name, peer.server_name
    key_id, _ = federation.synapse.signing_key()

    expect_401(peer, "GET", uri, None, {}, "no Authorization header")
    expect_401(peer, "GET", uri, None, {"Authorization": "Bearer not-a-server"}, "a Bearer token")
    expect_401(peer, "GET", uri, None, {"Authorization": x_matrix(origin, dest, key_id, "A" * 86)},
               "a signature of the right length that does not verify")
    expect_401(peer, "GET", uri, None, {"Authorization": x_matrix(origin, dest, "ed25519:nokey", "A" * 86)},
               "an unknown key ID")
    expect_401(peer, "GET", uri, None, {"Authorization": sign(federation, "GET", uri, "127.0.0.9:8448")},
               "a valid signature for another destination")
    other = "/_matrix/federation/v1/query/profile?" + urllib.parse.urlencode({"user_id": "@x:" + dest})
    expect_401(peer, "GET", uri, None, {"Authorization": sign(federation, "GET", other, dest)},
               "a valid signature of another URI")

    # Control: the same request, correctly signed, is answered.
    status, reply = peer.request("GET", uri, headers={"Authorization": sign(federation, "GET", uri, dest)})
    assert status == 200, f"a correctly signed query/profile got {status} {reply}\n  see {peer.describe()}"


def test_send_transaction_with_bad_signature_is_401_and_changes_nothing(federation, synapse, peer):
    run(_forged_transaction(federation, synapse, peer))


async def _forged_transaction(federation, synapse, peer):
    s = await new_user(synapse, "victor")
    p = await new_user(peer, "walter")
    try:
        ws, wp = Watcher(s, [peer]), Watcher(p, [synapse])
        await ws.sync_once(0)
        await wp.sync_once(0)
        room = await shared_room(s, p, ws, wp)

        forged_body = "forged " + unique("")
        now = int(time.time() * 1000)
        pdu = {"type": "m.room.message", "room_id": room, "sender": s.user_id, "origin": synapse.server_name,
               "origin_server_ts": now, "content": {"msgtype": "m.text", "body": forged_body},
               "depth": 100, "prev_events": [], "auth_events": [], "hashes": {"sha256": "A" * 43},
               "signatures": {}}
        txn = {"origin": synapse.server_name, "origin_server_ts": now, "pdus": [pdu], "edus": []}
        dest = peer.server_name
        key_id, _ = federation.synapse.signing_key()
        for what, auth in [
            ("no Authorization header", None),
            ("a signature that does not verify", x_matrix(synapse.server_name, dest, key_id, "A" * 86)),
            ("a signature over another body", None),
        ]:
            uri = f"/_matrix/federation/v1/send/{q(unique('txn'))}"
            if what == "a signature over another body":
                auth = sign(federation, "PUT", uri, dest, content={**txn, "pdus": []})
            headers = {"Authorization": auth} if auth else {}
            await asyncio.to_thread(expect_401, peer, "PUT", uri, txn, headers, what)

        # Nothing changed: a real message sent after the forgeries reaches the peer user, and the
        # forged one, which would have come first, never did.
        check(await s.room_send(room, "m.room.message", {"msgtype": "m.text", "body": "genuine"}),
              nio.RoomSendResponse, "sending a genuine message", s)
        await wp.until(lambda w: "genuine" in w.bodies(room), "the genuine message")
        assert forged_body not in wp.bodies(room), f"the forged event reached the peer user: {wp.bodies(room)}"
    finally:
        await close_all(s, p)
