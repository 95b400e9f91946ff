"""A TCP proxy that delays what it carries by DELAY seconds each way: an FTP server some way off,
for bench/ftp.sh's DELAY_MS. Only the control connection goes through it (EPSV and PASV name the
server's own address for data), so each command costs a round trip, as over a WAN.

Usage: python3 bench/delay_proxy.py LISTEN_PORT SERVER_PORT DELAY_SECONDS
"""
import asyncio
import sys


async def pipe(reader, writer, delay):
    try:
        while data := await reader.read(65536):
            await asyncio.sleep(delay)
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


async def main(listen, server, delay):
    async def handle(client_reader, client_writer):
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", server)
        await asyncio.gather(pipe(client_reader, server_writer, delay), pipe(server_reader, client_writer, delay))

    proxy = await asyncio.start_server(handle, "127.0.0.1", listen)
    async with proxy:
        await proxy.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
