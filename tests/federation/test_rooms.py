"""Rooms across the two servers: invite, join, messages both ways and leave, with the room on
Synapse; joins by alias and by room ID, with the room on the peer."""
import nio

from clients import Watcher, api, check, close_all, new_user, q, run, unique


def test_room_on_synapse_invite_join_messages_leave(synapse, peer):
    run(_room_on_synapse(synapse, peer))


async def _room_on_synapse(synapse, peer):
    s = await new_user(synapse, "alice")
    p = await new_user(peer, "bob")
    try:
        ws, wp = Watcher(s, [peer]), Watcher(p, [synapse])
        await ws.sync_once(0)
        await wp.sync_once(0)

        created = check(await s.room_create(name="federation " + unique(""), invite=[p.user_id],
                                            preset=nio.RoomPreset.private_chat),
                        nio.RoomCreateResponse, "creating a room that invites the peer's user", s)
        room = created.room_id
        await wp.until(lambda w: room in w.invites, f"the invite to {room} (from {s.user_id}) under rooms.invite")

        # A real client joins an invite by room ID alone: the peer must find the room through
        # the invite (the inviting server), as Synapse does.
        check(await p.join(room), nio.JoinResponse, f"joining {room} over federation", p)
        await ws.until(lambda w: w.membership(room, p.user_id) == "join",
                       f"{p.user_id}'s join in {room} in Synapse's timeline")

        check(await s.room_send(room, "m.room.message", {"msgtype": "m.text", "body": "hello from synapse"}),
              nio.RoomSendResponse, "sending on Synapse", s)
        check(await p.room_send(room, "m.room.message", {"msgtype": "m.text", "body": "hello from the peer"}),
              nio.RoomSendResponse, "sending on the peer", p)
        both = {"hello from synapse", "hello from the peer"}
        await ws.until(lambda w: both <= set(w.bodies(room)), f"both messages in {room} on Synapse")
        await wp.until(lambda w: both <= set(w.bodies(room)), f"both messages in {room} on the peer")

        check(await p.room_leave(room), nio.RoomLeaveResponse, f"leaving {room}", p)
        await ws.until(lambda w: w.membership(room, p.user_id) == "leave",
                       f"{p.user_id}'s leave in {room} in Synapse's timeline")
        status, members = await api(s, "GET", f"/_matrix/client/v3/rooms/{q(room)}/joined_members")
        assert status == 200, f"joined_members on Synapse: {status} {members}"
        assert p.user_id not in members.get("joined", {}), \
            f"{p.user_id} left but is still in Synapse's member list: {members}"
        assert s.user_id in members.get("joined", {}), members
        await wp.until(lambda w: room in w.left, f"{room} under rooms.leave in the peer user's /sync")
    finally:
        await close_all(s, p)


def test_room_on_peer_joined_from_synapse_by_alias_and_by_id(synapse, peer):
    run(_room_on_peer(synapse, peer))


async def _room_on_peer(synapse, peer):
    p = await new_user(peer, "carol")
    by_alias = await new_user(synapse, "dave")
    by_id = await new_user(synapse, "erin")
    try:
        wp, wa, wi = Watcher(p, [synapse]), Watcher(by_alias, [peer]), Watcher(by_id, [peer])
        for w in (wp, wa, wi):
            await w.sync_once(0)
        local = unique("fed")
        created = check(await p.room_create(name="on the peer " + local, alias=local,
                                            visibility=nio.RoomVisibility.public,
                                            preset=nio.RoomPreset.public_chat),
                        nio.RoomCreateResponse, "creating a public room with an alias", p)
        room = created.room_id
        alias = f"#{local}:{peer.server_name}"

        # By alias: Synapse resolves it over federation (query/directory), then joins.
        joined = check(await by_alias.join(alias), nio.JoinResponse, f"joining {alias} from Synapse", by_alias)
        assert joined.room_id == room, f"{alias} resolved to {joined.room_id}, not {room}"
        # By ID: the client names the resident server, as a client that followed a link would.
        status, body = await api(by_id, "POST", f"/_matrix/client/v3/join/{q(room)}",
                                 body={}, query={"server_name": peer.server_name, "via": peer.server_name})
        assert status == 200 and body.get("room_id") == room, \
            f"joining {room} by ID via {peer.server_name} from Synapse: {status} {body}"

        await wp.until(lambda w: w.membership(room, by_alias.user_id) == "join"
                       and w.membership(room, by_id.user_id) == "join",
                       f"both Synapse users' joins in {room} on the peer")

        check(await p.room_send(room, "m.room.message", {"msgtype": "m.text", "body": "welcome from the peer"}),
              nio.RoomSendResponse, "sending on the peer", p)
        check(await by_alias.room_send(room, "m.room.message", {"msgtype": "m.text", "body": "came by alias"}),
              nio.RoomSendResponse, "sending on Synapse", by_alias)
        check(await by_id.room_send(room, "m.room.message", {"msgtype": "m.text", "body": "came by id"}),
              nio.RoomSendResponse, "sending on Synapse", by_id)
        every = {"welcome from the peer", "came by alias", "came by id"}
        for w in (wp, wa, wi):
            await w.until(lambda w: every <= set(w.bodies(room)), f"the three messages in {room}")

        status, members = await api(by_alias, "GET", f"/_matrix/client/v3/rooms/{q(room)}/joined_members")
        assert status == 200, f"joined_members on Synapse: {status} {members}"
        assert {p.user_id, by_alias.user_id, by_id.user_id} <= set(members.get("joined", {})), members
    finally:
        await close_all(p, by_alias, by_id)
