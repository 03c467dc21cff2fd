"""A TLS-terminating TCP relay: accepts TLS on LISTEN_HOST:LISTEN_PORT with CERT/KEY and relays
the bytes to BACKEND_HOST:BACKEND_PORT in plain TCP.

Interim diagnostic only (FEDERATION_MYELIN_TLS_PROXY=1, docs/federation.md): lets the harness
reach a Myelin build whose listeners cannot yet serve TLS themselves. Remove once they can.

    python tls_proxy.py LISTEN_HOST LISTEN_PORT CERT KEY BACKEND_HOST BACKEND_PORT
"""
import asyncio
import ssl
import sys


async def pipe(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def main(listen_host, listen_port, cert, key, backend_host, backend_port):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["http/1.1"])

    async def handle(client_reader, client_writer):
        try:
            backend_reader, backend_writer = await asyncio.open_connection(backend_host, backend_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(pipe(client_reader, backend_writer), pipe(backend_reader, client_writer))

    server = await asyncio.start_server(handle, listen_host, listen_port, ssl=context, reuse_address=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    h, p, c, k, bh, bp = sys.argv[1:7]
    asyncio.run(main(h, int(p), c, k, bh, int(bp)))
