"""Rooms of every version 1-12 across the two servers (issue 17, item 5): for each version a room
created on Synapse is joined by a peer user, and a room created on the peer is joined by a
Synapse user; one message each way, a redaction and a leave in each room. The two directions of
one version run concurrently to keep the whole file near a minute."""
import asyncio

import nio
import pytest

from clients import Watcher, api, check, close_all, new_user, q, run

VERSIONS = [str(v) for v in range(1, 13)]


def test_capabilities_list_versions_1_to_12(synapse, peer):
    run(_capabilities(synapse, peer))


async def _capabilities(synapse, peer):
    p = await new_user(peer, "caps")
    try:
        status, body = await api(p, "GET", "/_matrix/client/v3/capabilities")
        assert status == 200, f"capabilities on the peer: {status} {body}"
        available = body["capabilities"]["m.room_versions"]["available"]
        assert set(VERSIONS) <= set(available), f"the peer lacks room versions: {available}"
    finally:
        await close_all(p)


@pytest.mark.parametrize("version", VERSIONS)
def test_room_version_joined_both_ways(synapse, peer, version):
    run(_both_ways(synapse, peer, version))


async def _both_ways(synapse, peer, version):
    s = await new_user(synapse, f"v{version}s")
    p = await new_user(peer, f"v{version}p")
    try:
        # One watcher per user and direction: a watcher's /sync position is not shared.
        watchers = [Watcher(c, [synapse, peer]) for c in (s, p, p, s)]
        for w in watchers:
            await w.sync_once(0)
        await asyncio.gather(_one_way(s, watchers[0], p, watchers[1], version, "synapse"),
                             _one_way(p, watchers[2], s, watchers[3], version, "peer"))
    finally:
        await close_all(s, p)


async def _one_way(owner, wo, joiner, wj, version, where):
    """`owner` creates a public room of `version`; `joiner` (other server) joins it by ID naming
    the owner's server; a message each way reaches both."""
    created = check(await owner.room_create(room_version=version, preset=nio.RoomPreset.public_chat,
                                            name=f"v{version} on {where}"),
                    nio.RoomCreateResponse, f"creating a version {version} room", owner)
    room = created.room_id
    status, body = await api(owner, "GET", f"/_matrix/client/v3/rooms/{q(room)}/state/m.room.create")
    assert status == 200 and body.get("room_version", "1") == version, \
        f"version {version} room on {where}: create content {status} {body}"
    home = owner.server.server_name
    status, body = await api(joiner, "POST", f"/_matrix/client/v3/join/{q(room)}", body={},
                             query={"server_name": home, "via": home})
    assert status == 200 and body.get("room_id") == room, \
        f"joining the version {version} room {room} (on {where}) from the other server: {status} {body}"
    await wo.until(lambda w: w.membership(room, joiner.user_id) == "join",
                   f"{joiner.user_id}'s join in the version {version} room {room} on {where}")
    await wj.until(lambda w: w.membership(room, joiner.user_id) == "join",
                   f"{joiner.user_id}'s own join in the version {version} room {room}")
    mine, theirs = f"v{version} {where} from owner", f"v{version} {where} from joiner"
    check(await owner.room_send(room, "m.room.message", {"msgtype": "m.text", "body": mine}),
          nio.RoomSendResponse, f"sending in the version {version} room", owner)
    check(await joiner.room_send(room, "m.room.message", {"msgtype": "m.text", "body": theirs}),
          nio.RoomSendResponse, f"sending in the version {version} room", joiner)
    both = {mine, theirs}
    await wo.until(lambda w: both <= set(w.bodies(room)), f"both messages in the version {version} room {room}")
    await wj.until(lambda w: both <= set(w.bodies(room)), f"both messages in the version {version} room {room}")
    # A redaction crosses too (the redaction algorithm and, v1-2, its own auth rule; v11+
    # `redacts` in content).
    message = next(e["event_id"] for e in wj.messages(room) if e.get("content", {}).get("body") == theirs)
    check(await joiner.room_redact(room, message, "test"), nio.RoomRedactResponse, "redacting own message", joiner)

    def redacted(w):
        return any(e.get("type") == "m.room.redaction"
                   and (e.get("redacts") or e.get("content", {}).get("redacts")) == message
                   for e in w.timelines.get(room, []))
    await wo.until(redacted, f"the redaction of {message} in the version {version} room {room}")
    # And a leave (make_leave/send_leave, the leave event's ID by the leaving server in v1-2).
    check(await joiner.room_leave(room), nio.RoomLeaveResponse, f"leaving the version {version} room", joiner)
    await wo.until(lambda w: w.membership(room, joiner.user_id) == "leave",
                   f"{joiner.user_id}'s leave of the version {version} room {room} on {where}")


@pytest.mark.parametrize("where", ["synapse", "peer"])
def test_v12_additional_creator_on_the_other_server(synapse, peer, where):
    run(_additional_creator(synapse, peer, where))


async def _additional_creator(synapse, peer, where):
    """A version 12 room naming a user of the other server in `additional_creators` (MSC4289):
    that user joins and, with a creator's unbounded power, renames the room; the owner's server
    accepts the rename."""
    home, away = (synapse, peer) if where == "synapse" else (peer, synapse)
    owner = await new_user(home, "own")
    creator = await new_user(away, "co")
    try:
        wo = Watcher(owner, [away])
        await wo.sync_once(0)
        room = await _create_v12(owner, creator.user_id)
        status, body = await api(creator, "POST", f"/_matrix/client/v3/join/{q(room)}", body={},
                                 query={"server_name": home.server_name, "via": home.server_name})
        assert status == 200, f"the additional creator joining {room} (on {where}): {status} {body}"
        status, body = await api(creator, "PUT", f"/_matrix/client/v3/rooms/{q(room)}/state/m.room.name/",
                                 body={"name": "renamed by a creator"})
        assert status == 200, f"the additional creator renaming {room}: {status} {body}"

        def renamed(w):
            return any(e.get("type") == "m.room.name" and e.get("sender") == creator.user_id
                       for e in w.timelines.get(room, []))
        await wo.until(renamed, f"the rename of {room} by the additional creator {creator.user_id}")
    finally:
        await close_all(owner, creator)


async def _create_v12(owner, additional):
    # nio's room_create has no creation_content: raw createRoom.
    status, body = await api(owner, "POST", "/_matrix/client/v3/createRoom", body={
        "room_version": "12", "preset": "private_chat", "invite": [additional],
        "power_level_content_override": {"state_default": 100},
        "creation_content": {"additional_creators": [additional]}})
    assert status == 200, f"createRoom v12 with additional_creators on {owner.server.server_name}: {status} {body}"
    return body["room_id"]
