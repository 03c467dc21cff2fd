"""`m.room.server_acl` on the peer (issue 17, item 5): once a room on the peer denies Synapse's
server, a Synapse user cannot join a room Synapse is not in (the peer refuses `make_join`), and
in a room Synapse is in, a join and a message it sends afterwards never reach the peer user (the
transaction's origin is denied), while a message before the ACL did."""
import asyncio

import nio

from clients import Watcher, api, check, close_all, new_user, q, run


def test_server_acl_on_peer_denies_synapse(synapse, peer):
    run(_acl(synapse, peer))


async def _acl(synapse, peer):
    p = await new_user(peer, "acl")
    s = await new_user(synapse, "member")
    late = await new_user(synapse, "late")
    try:
        wp = Watcher(p, [synapse])
        await wp.sync_once(0)
        room = check(await p.room_create(name="acl", preset=nio.RoomPreset.public_chat), nio.RoomCreateResponse,
                     "creating a public room", p).room_id
        via = {"server_name": peer.server_name, "via": peer.server_name}
        status, body = await api(s, "POST", f"/_matrix/client/v3/join/{q(room)}", body={}, query=via)
        assert status == 200, f"joining {room} from Synapse before the ACL: {status} {body}"
        check(await s.room_send(room, "m.room.message", {"msgtype": "m.text", "body": "before the acl"}),
              nio.RoomSendResponse, "sending before the ACL", s)
        await wp.until(lambda w: "before the acl" in w.bodies(room), "the Synapse member's message before the ACL")

        host = synapse.server_name.split(":")[0]
        status, body = await api(p, "PUT", f"/_matrix/client/v3/rooms/{q(room)}/state/m.room.server_acl/",
                                 body={"allow": ["*"], "deny": [host], "allow_ip_literals": True})
        assert status == 200, f"setting the server ACL: {status} {body}"

        # A room Synapse is not in, denying it from the start: the join needs make_join from
        # the peer, which refuses.
        closed = check(await p.room_create(name="closed", preset=nio.RoomPreset.public_chat, initial_state=[
            {"type": "m.room.server_acl", "state_key": "", "content": {"allow": ["*"], "deny": [host]}}]),
            nio.RoomCreateResponse, "creating a room denying Synapse", p).room_id
        status, body = await api(late, "POST", f"/_matrix/client/v3/join/{q(closed)}", body={}, query=via)
        assert status != 200, f"a Synapse user joined {closed} although its ACL denies {host}: {body}"

        # In the shared room Synapse is resident, so it joins its user by itself; the peer
        # must take neither that join nor a later message from the denied origin.
        status, body = await api(late, "POST", f"/_matrix/client/v3/join/{q(room)}", body={}, query=via)
        check(await s.room_send(room, "m.room.message", {"msgtype": "m.text", "body": "after the acl"}),
              nio.RoomSendResponse, "sending after the ACL (Synapse accepts it locally)", s)
        # A negative: give the message the time a delivered one takes (well under a second
        # here) many times over, then check it never arrived.
        deadline = asyncio.get_running_loop().time() + 8
        while asyncio.get_running_loop().time() < deadline:
            await wp.sync_once(1000)
        assert "after the acl" not in wp.bodies(room), \
            f"a message from a server the ACL denies reached the peer user: {wp.bodies(room)}"
        assert wp.membership(room, late.user_id) is None, f"{late.user_id}'s join from a denied server reached the peer"
        status, members = await api(p, "GET", f"/_matrix/client/v3/rooms/{q(room)}/joined_members")
        assert status == 200 and late.user_id not in members.get("joined", {}), members
    finally:
        await close_all(p, s, late)
