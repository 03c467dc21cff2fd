"""The room directory of Synapse seen from the peer (issue 17, item 6; the other direction is in
test_queries.py): the peer user lists Synapse's public rooms (`/publicRooms?server=`, GET and
POST with a search term), resolves a Synapse alias (`/directory/room/{alias}`), previews the room
(`/v1/room_summary`, by alias and by ID with `via`), and joins by the alias."""
import asyncio
import time

import nio

from clients import Watcher, api, check, close_all, new_user, q, run, unique


def test_synapse_directory_from_the_peer(synapse, peer):
    run(_directory(synapse, peer))


async def _directory(synapse, peer):
    s = await new_user(synapse, "pub")
    p = await new_user(peer, "look")
    try:
        local = unique("syndir")
        name = "synapse public " + local
        room = check(await s.room_create(name=name, alias=local, topic="listed over federation",
                                         visibility=nio.RoomVisibility.public, preset=nio.RoomPreset.public_chat),
                     nio.RoomCreateResponse, "creating a public room with an alias", s).room_id
        alias = f"#{local}:{synapse.server_name}"

        status, body = await api(p, "GET", f"/_matrix/client/v3/directory/room/{q(alias)}")
        assert status == 200 and body.get("room_id") == room, f"resolving {alias} on the peer: {status} {body}"
        assert synapse.server_name in body.get("servers", []), body
        missing = f"#{unique('none')}:{synapse.server_name}"
        status, body = await api(p, "GET", f"/_matrix/client/v3/directory/room/{q(missing)}")
        assert status == 404, f"resolving the unknown {missing} on the peer: {status} {body}"

        # Synapse lists a new public room at once, but retry briefly in case it caches.
        deadline, entry, last = time.monotonic() + 20, None, None
        while entry is None and time.monotonic() < deadline:
            status, body = await api(p, "POST", "/_matrix/client/v3/publicRooms", query={"server": synapse.server_name},
                                     body={"limit": 50, "filter": {"generic_search_term": local}})
            last = (status, body)
            if status == 200:
                entry = next((r for r in body.get("chunk", []) if r.get("room_id") == room), None)
            if entry is None:
                await asyncio.sleep(1)
        assert entry is not None, f"POST /publicRooms?server={synapse.server_name} on the peer never listed {room}: {last}"
        assert entry.get("name") == name and entry.get("topic") == "listed over federation", entry
        assert entry.get("canonical_alias") == alias and entry.get("num_joined_members") == 1, entry
        status, body = await api(p, "GET", "/_matrix/client/v3/publicRooms", query={"server": synapse.server_name, "limit": 500})
        assert status == 200 and any(r.get("room_id") == room for r in body.get("chunk", [])), \
            f"GET /publicRooms?server= on the peer: {status} {body}"

        # A preview before joining (room summary, MSC3266): the peer asks Synapse's hierarchy.
        for target, query in ((alias, None), (room, {"via": synapse.server_name})):
            status, body = await api(p, "GET", f"/_matrix/client/v1/room_summary/{q(target)}", query=query)
            assert status == 200 and body.get("room_id") == room and body.get("name") == name, \
                f"room summary of {target} on the peer: {status} {body}"
            assert body.get("join_rule") == "public" and body.get("num_joined_members") == 1, body

        joined = check(await p.join(alias), nio.JoinResponse, f"joining {alias} from the peer", p)
        assert joined.room_id == room, f"{alias} joined {joined.room_id}, not {room}"
        ws = Watcher(s, [peer])
        await ws.until(lambda w: w.membership(room, p.user_id) == "join", f"{p.user_id}'s join by alias in {room}")
    finally:
        await close_all(s, p)
