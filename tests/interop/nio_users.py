"""Helpers shared by the matrix-nio interop tests."""
import asyncio

import nio


def run(coro):
    return asyncio.run(coro)


async def user(server, name):
    """A registered nio client for `name` (password derived from the name)."""
    client = nio.AsyncClient(server, name)
    reply = await client.register(name, "pass-" + name)
    assert isinstance(reply, nio.RegisterResponse), reply
    return client
