"""Push rules with real clients: matrix-nio changes rules through its push-rule calls, a second
device of the same user receives them in `account_data` and nio parses every rule (its schema
drops rules it cannot read, so a count mismatch is a format error), nio's own matcher agrees
with the server's counts, and mautrix reads, writes and deletes rules with its own API."""
import asyncio
import uuid

import nio
from mautrix.api import HTTPAPI
from mautrix.client import Client
from mautrix.types import PushActionType, PushRuleKind, PushRuleScope, RoomID, UserID

from nio_users import run, user


def _push_rules(sync):
    events = [e for e in sync.account_data_events if isinstance(e, nio.PushRulesEvent)]
    return events[-1] if events else None


def test_push_rules_with_nio(open_server):
    async def flow():
        tag = uuid.uuid4().hex[:6]
        alice = await user(open_server, "alice" + tag)
        bob = await user(open_server, "bob" + tag)
        laptop = nio.AsyncClient(open_server, "bob" + tag)
        try:
            assert isinstance(await laptop.login("pass-bob" + tag), nio.LoginResponse)
            initial = await laptop.sync(timeout=0)
            rules = _push_rules(initial)
            assert rules is not None, "no m.push_rules in the initial sync"
            # nio keeps every rule the server sends (none fails its schema).
            assert rules.global_rules.override[0].id == ".m.rule.master"
            assert [r.id for r in rules.global_rules.content] == [".m.rule.contains_user_name"]
            assert ".m.rule.is_user_mention" in [r.id for r in rules.global_rules.override]
            assert ".m.rule.encrypted_room_one_to_one" in [r.id for r in rules.global_rules.underride]

            created = await alice.room_create(invite=[bob.user_id])
            room = created.room_id
            assert isinstance(await bob.join(room), nio.JoinResponse)

            # Phone: mute the room, add a keyword, change a default's actions, disable another.
            muted = await bob.set_pushrule("global", nio.PushRuleKind.room, room, actions=[])
            assert isinstance(muted, nio.SetPushRuleResponse), muted
            keyword = await bob.set_pushrule("global", nio.PushRuleKind.content, "lunch", pattern="lunch",
                                             actions=[nio.PushNotify(), nio.PushSetTweak("highlight", True)])
            assert isinstance(keyword, nio.SetPushRuleResponse), keyword
            override = await bob.set_pushrule(
                "global", nio.PushRuleKind.override, "calls", actions=[nio.PushNotify()],
                conditions=[nio.PushEventMatch("type", "m.call.invite"), nio.PushRoomMemberCount(2, "==")])
            assert isinstance(override, nio.SetPushRuleResponse), override
            actions = await bob.set_pushrule_actions("global", nio.PushRuleKind.underride, ".m.rule.message",
                                                     [nio.PushNotify(), nio.PushSetTweak("sound", "default")])
            assert isinstance(actions, nio.SetPushRuleActionsResponse), actions
            disabled = await bob.enable_pushrule("global", nio.PushRuleKind.override, ".m.rule.suppress_notices", False)
            assert isinstance(disabled, nio.EnablePushRuleResponse), disabled
            refused = await bob.set_pushrule("global", nio.PushRuleKind.room, room, before="!nosuch:interop.test",
                                             actions=[])
            assert isinstance(refused, nio.SetPushRuleError), refused

            # Laptop: the next sync has them all, parsed by nio.
            changed = None
            for _ in range(5):
                reply = await laptop.sync(timeout=5000)
                changed = _push_rules(reply) or changed
                if changed and changed.global_rules.room:
                    break
            assert changed is not None
            g = changed.global_rules
            assert [r.id for r in g.room] == [room] and g.room[0].actions == []
            assert [r.id for r in g.content] == ["lunch", ".m.rule.contains_user_name"]
            assert g.content[0].pattern == "lunch"
            assert [r.id for r in g.override[:2]] == [".m.rule.master", "calls"]
            assert [c.__class__ for c in g.override[1].conditions] == [nio.PushEventMatch, nio.PushRoomMemberCount]
            message = next(r for r in g.underride if r.id == ".m.rule.message")
            assert [a.as_value for a in message.actions] == ["notify", {"set_tweak": "sound", "value": "default"}]
            assert not next(r for r in g.override if r.id == ".m.rule.suppress_notices").enabled

            # The muted room does not count for bob; nio's matcher picks the same rule.
            sent = await alice.room_send(room, "m.room.message", {"msgtype": "m.text", "body": "anyone there?"})
            assert isinstance(sent, nio.RoomSendResponse), sent
            counts = None
            for _ in range(5):
                reply = await laptop.sync(timeout=5000)
                if room in reply.rooms.join and reply.rooms.join[room].timeline.events:
                    counts = reply.rooms.join[room].unread_notifications
                    event = reply.rooms.join[room].timeline.events[-1]
                    break
            assert counts is not None
            assert (counts.notification_count, counts.highlight_count) == (0, 0)
            matched = g.matching_rule(event, laptop.rooms[room], "bob" + tag)
            assert matched is not None and matched.id == room

            # Unmuted, the keyword highlights.
            assert isinstance(await bob.delete_pushrule("global", nio.PushRuleKind.room, room), nio.DeletePushRuleResponse)
            assert isinstance(await alice.room_send(room, "m.room.message", {"msgtype": "m.text", "body": "lunch now"}),
                              nio.RoomSendResponse)
            for _ in range(5):
                reply = await laptop.sync(timeout=5000)
                if room in reply.rooms.join and reply.rooms.join[room].timeline.events:
                    counts = reply.rooms.join[room].unread_notifications
                    break
            assert (counts.notification_count, counts.highlight_count) == (1, 1)
        finally:
            for client in (alice, bob, laptop):
                await client.close()

    run(flow())


def test_push_rules_with_mautrix(open_server):
    async def flow():
        tag = uuid.uuid4().hex[:6]
        nio_client = await user(open_server, "carol" + tag)
        await nio_client.close()
        api = HTTPAPI(base_url=open_server, token=nio_client.access_token)
        client = Client(mxid=UserID(nio_client.user_id), api=api)
        try:
            master = await client.get_push_rule(PushRuleScope.GLOBAL, PushRuleKind.OVERRIDE, ".m.rule.master")
            assert master.default and not master.enabled
            await client.set_push_rule(PushRuleScope.GLOBAL, PushRuleKind.SENDER, "@spam:interop.test",
                                       actions=[])
            rule = await client.get_push_rule(PushRuleScope.GLOBAL, PushRuleKind.SENDER, "@spam:interop.test")
            assert rule.rule_id == "@spam:interop.test" and rule.enabled and not rule.default and rule.actions == []
            await client.set_push_rule(PushRuleScope.GLOBAL, PushRuleKind.CONTENT, "cake", pattern="cake*lie",
                                       actions=[PushActionType.NOTIFY])
            cake = await client.get_push_rule(PushRuleScope.GLOBAL, PushRuleKind.CONTENT, "cake")
            assert cake.pattern == "cake*lie"
            await client.remove_push_rule(PushRuleScope.GLOBAL, PushRuleKind.SENDER, "@spam:interop.test")
            try:
                await client.get_push_rule(PushRuleScope.GLOBAL, PushRuleKind.SENDER, "@spam:interop.test")
                raise AssertionError("a deleted rule is still served")
            except Exception as error:  # mautrix raises MNotFound
                assert "M_NOT_FOUND" in str(getattr(error, "errcode", "")) or "NotFound" in type(error).__name__, error
        finally:
            await api.session.close()

    run(flow())
