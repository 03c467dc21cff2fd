"""matrix-nio (PyPI) against the real server: register, log in, whoami, profile, devices,
account data, log out -- the accounts issue's "Judged by" flow, with nio's own parsing of
every response."""
import asyncio
import json
import urllib.parse

import nio


def run(coro):
    return asyncio.run(coro)


def test_nio_account_flow(server):
    async def flow():
        client = nio.AsyncClient(server, "niouser")
        try:
            reg = await client.register("niouser", "s3cret-pass", device_name="nio first")
            assert isinstance(reg, nio.RegisterResponse), reg
            assert reg.user_id == "@niouser:interop.test"
            first_device = reg.device_id

            first_token = reg.access_token
            # A second session, by password login from a second client (nio reuses its own
            # device id when it logs in again).
            await client.close()
            client = nio.AsyncClient(server, "niouser")
            login = await client.login("s3cret-pass", device_name="nio second")
            assert isinstance(login, nio.LoginResponse), login
            assert login.user_id == "@niouser:interop.test"
            assert login.device_id != first_device

            who = await client.whoami()
            assert isinstance(who, nio.WhoamiResponse), who
            assert who.user_id == "@niouser:interop.test"
            assert who.device_id == login.device_id
            assert who.is_guest is False

            assert isinstance(await client.set_displayname("Nio User"), nio.ProfileSetDisplayNameResponse)
            name = await client.get_displayname()
            assert isinstance(name, nio.ProfileGetDisplayNameResponse), name
            assert name.displayname == "Nio User"
            assert isinstance(await client.set_avatar("mxc://interop.test/avatar"), nio.ProfileSetAvatarResponse)
            avatar = await client.get_avatar()
            assert isinstance(avatar, nio.ProfileGetAvatarResponse), avatar
            assert avatar.avatar_url == "mxc://interop.test/avatar"
            profile = await client.get_profile()
            assert isinstance(profile, nio.ProfileGetResponse), profile
            assert profile.displayname == "Nio User"
            assert profile.avatar_url == "mxc://interop.test/avatar"

            devices = await client.devices()
            assert isinstance(devices, nio.DevicesResponse), devices
            by_id = {d.id: d for d in devices.devices}
            assert set(by_id) == {first_device, login.device_id}
            assert by_id[first_device].display_name == "nio first"
            assert by_id[login.device_id].last_seen_ip == "127.0.0.1"

            renamed = await client.update_device(first_device, {"display_name": "renamed by nio"})
            assert isinstance(renamed, nio.UpdateDeviceResponse), renamed
            devices = await client.devices()
            assert {d.id: d.display_name for d in devices.devices}[first_device] == "renamed by nio"

            # Deleting a device: the first round is the UIA challenge, the second authenticates.
            challenge = await client.delete_devices([first_device])
            assert isinstance(challenge, nio.DeleteDevicesAuthResponse), challenge
            assert ["m.login.password"] in [f["stages"] for f in challenge.flows]
            auth = {"type": "m.login.password", "session": challenge.session,
                    "identifier": {"type": "m.id.user", "user": "niouser"}, "password": "s3cret-pass"}
            deleted = await client.delete_devices([first_device], auth)
            assert isinstance(deleted, nio.DeleteDevicesResponse), deleted
            devices = await client.devices()
            assert [d.id for d in devices.devices] == [login.device_id]
            # The deleted device's token is revoked.
            revoked = await client.send("GET", "/_matrix/client/v3/account/whoami",
                                        headers={"Authorization": f"Bearer {first_token}"})
            assert revoked.status == 401
            assert (await revoked.json())["errcode"] == "M_UNKNOWN_TOKEN"

            # Account data, global and per room.
            user = urllib.parse.quote(client.user_id)
            headers = {"Authorization": f"Bearer {client.access_token}"}
            path = f"/_matrix/client/v3/user/{user}/account_data/org.myelin.interop"
            put = await client.send("PUT", path, json.dumps({"answer": 42}), headers=headers)
            assert put.status == 200
            got = await client.send("GET", path, headers=headers)
            assert got.status == 200
            assert await got.json() == {"answer": 42}

            logout = await client.logout()
            assert isinstance(logout, nio.LogoutResponse), logout
            client.access_token = login.access_token
            after = await client.whoami()
            assert isinstance(after, nio.WhoamiError)
            assert after.status_code == "M_UNKNOWN_TOKEN"
        finally:
            await client.close()

    run(flow())


def test_nio_errors(server):
    async def flow():
        client = nio.AsyncClient(server, "nioerrors")
        try:
            first = await client.register("nioerrors", "pw-one")
            assert isinstance(first, nio.RegisterResponse), first
            taken = await client.register("nioerrors", "pw-two")
            assert isinstance(taken, nio.responses.RegisterErrorResponse)
            assert taken.status_code == "M_USER_IN_USE"
            bad = await client.register("Upper Case", "pw")
            assert isinstance(bad, nio.responses.RegisterErrorResponse)
            assert bad.status_code == "M_INVALID_USERNAME"
            wrong = await client.login("not the password")
            assert isinstance(wrong, nio.LoginError)
            assert wrong.status_code == "M_FORBIDDEN"
        finally:
            await client.close()

    run(flow())
