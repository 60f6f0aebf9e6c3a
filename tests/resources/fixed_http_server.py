"""An HTTP/1.1 server that answers every request with the same small response, as fast as
asyncio can: a stand-in for "an endpoint that costs nothing", to measure a load generator.
Prints its port on stdout once it listens."""

import asyncio

RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 27\r\n"
            b"X-Request-Id: 0123456789abcdef\r\n\r\n{\"message\":\"Hello, World!\"}")


class Fixed(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(RESPONSE * data.count(b"\r\n\r\n"))


async def main():
    server = await asyncio.get_running_loop().create_server(Fixed, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


asyncio.run(main())
