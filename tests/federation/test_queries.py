"""Federation queries answered by the peer and asked by Synapse for its clients: profile,
room directory (alias) and public rooms."""
import asyncio
import time

import nio

from clients import api, check, close_all, new_user, q, run, unique


def test_profile_of_peer_user_from_synapse(synapse, peer):
    run(_profile(synapse, peer))


async def _profile(synapse, peer):
    p = await new_user(peer, "frank")
    s = await new_user(synapse, "grace")
    try:
        name = "Frank " + unique("")
        check(await p.set_displayname(name), nio.ProfileSetDisplayNameResponse, "setting a display name", p)
        reply = check(await s.get_profile(p.user_id), nio.ProfileGetResponse,
                      f"GET /profile/{p.user_id} on Synapse (query/profile to the peer)", s)
        assert reply.displayname == name, f"Synapse returned {reply.displayname!r} for {p.user_id}, not {name!r}"
        # A user who does not exist on the peer: Synapse relays the peer's 404.
        status, body = await api(s, "GET", f"/_matrix/client/v3/profile/{q('@nobody' + unique('') + ':' + peer.server_name)}")
        assert status == 404, f"profile of an unknown peer user through Synapse: {status} {body}"
    finally:
        await close_all(p, s)


def test_directory_query_resolves_peer_alias(synapse, peer):
    run(_directory(synapse, peer))


async def _directory(synapse, peer):
    p = await new_user(peer, "heidi")
    s = await new_user(synapse, "ivan")
    try:
        local = unique("dir")
        room = check(await p.room_create(name="directory " + local, alias=local), nio.RoomCreateResponse,
                     "creating a room with an alias", p).room_id
        alias = f"#{local}:{peer.server_name}"
        reply = check(await s.room_resolve_alias(alias), nio.RoomResolveAliasResponse,
                      f"resolving {alias} on Synapse (query/directory to the peer)", s)
        assert reply.room_id == room, f"{alias} resolved to {reply.room_id}, not {room}"
        assert peer.server_name in reply.servers, f"{alias}: servers {reply.servers} lack {peer.server_name}"
        missing = f"#{unique('none')}:{peer.server_name}"
        status, body = await api(s, "GET", f"/_matrix/client/v3/directory/room/{q(missing)}")
        assert status == 404, f"resolving the unknown alias {missing} through Synapse: {status} {body}"
    finally:
        await close_all(p, s)


def test_public_rooms_of_peer_through_synapse(synapse, peer):
    run(_public_rooms(synapse, peer))


async def _public_rooms(synapse, peer):
    p = await new_user(peer, "judy")
    s = await new_user(synapse, "mallory")
    try:
        name = "public " + unique("")
        room = check(await p.room_create(name=name, visibility=nio.RoomVisibility.public,
                                         preset=nio.RoomPreset.public_chat),
                     nio.RoomCreateResponse, "creating a public room", p).room_id
        # Synapse caches a remote server's public room list for a while, keyed by the request:
        # each attempt asks with another limit so that a retry really asks the peer again.
        deadline, attempt, last = time.monotonic() + 30, 0, None
        while time.monotonic() < deadline:
            status, body = await api(s, "POST", "/_matrix/client/v3/publicRooms",
                                     body={"limit": 200 + attempt}, query={"server": peer.server_name})
            last = (status, body)
            if status == 200 and any(r.get("room_id") == room for r in body.get("chunk", [])):
                entry = next(r for r in body["chunk"] if r.get("room_id") == room)
                assert entry.get("name") == name, f"public room entry {entry} lacks the name {name!r}"
                assert entry.get("num_joined_members") == 1, entry
                return
            attempt += 1
            await asyncio.sleep(1)
        raise AssertionError(f"POST /publicRooms?server={peer.server_name} on Synapse never listed {room}: "
                             f"last reply {last}\n  see {synapse.describe()}\n  see {peer.describe()}")
    finally:
        await close_all(p, s)
