"""The server extension's EventRelay: the gateway's admin event stream onto Jupyter's event
bus (what the sidebar reads), against a real gateway and jupyter_events' own EventLogger."""

from __future__ import annotations

import asyncio
import logging

from jupyter_events import EventLogger

from control_plane_helpers import start_gateway, stop_gateway

from edgebook.client import AdminClient
from edgebook.jupyter import extension
from edgebook.jupyter.extension import EVENT_SCHEMA_ID, EventRelay, RemoteGateway

TOKEN = "relay-token"


async def next_event(events: asyncio.Queue, kind: str, timeout: float = 10.0) -> dict:
    async def find() -> dict:
        while True:
            event = await events.get()
            if event["type"] == kind:
                return event
    return await asyncio.wait_for(find(), timeout)


def test_the_relay_emits_hello_events_heartbeats_and_disconnected(tmp_path, monkeypatch):
    monkeypatch.setattr(extension, "HEARTBEAT", 0.1)

    async def main():
        gateway, _, server, url = await start_gateway(str(tmp_path), token=TOKEN)
        bus = EventLogger()
        events: asyncio.Queue = asyncio.Queue()

        async def listener(logger, schema_id, data):
            assert schema_id == EVENT_SCHEMA_ID
            events.put_nowait(data)

        relay = EventRelay(RemoteGateway(url, TOKEN), bus, logging.getLogger("relay-test"))
        relay.start()
        bus.add_listener(schema_id=EVENT_SCHEMA_ID, listener=listener)
        stopped = False
        try:
            assert (await next_event(events, "hello"))["type"] == "hello"
            client = AdminClient(url, TOKEN)
            await asyncio.to_thread(client.deploy, "echo", "GET", "/echo", "tag: a")
            created = await next_event(events, "endpoint_created")
            assert created["endpoint"] == "echo"
            running = await next_event(events, "state")
            assert running["endpoint"] == "echo" and isinstance(running["seq"], int)
            beat = await next_event(events, "heartbeat")
            assert beat["seq"] >= created["seq"]  # it carries the last number seen
            relay.emit({"type": 42})  # an event the schema refuses is dropped, not fatal
            await stop_gateway(gateway, server)
            stopped = True
            await next_event(events, "disconnected")
            assert relay.connected is False
        finally:
            relay.stop()
            if not stopped:
                await stop_gateway(gateway, server)
    asyncio.run(main())
