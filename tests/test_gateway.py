"""Gateway composition: deploy flow, states, restore without recompiling, drain, worker env."""

from __future__ import annotations

import asyncio
import json
import os

import pytest
from tornado.httpclient import AsyncHTTPClient

from edgebook.gateway.events import EventBus
from edgebook.gateway.spec import DeployRejected, EndpointSpec

from control_plane_helpers import start_gateway, stop_gateway


def run(coro):
    return asyncio.run(coro)


def spec(name="echo", source="tag: one", method="GET", path="/echo", **options):
    return EndpointSpec(name=name, method=method, path=path, source=source, options=options)


async def fetch(url, **kwargs):
    client = AsyncHTTPClient(force_instance=True)
    try:
        return await client.fetch(url, raise_error=False, **kwargs)
    finally:
        client.close()


async def get_json(url):
    response = await fetch(url)
    return response.code, json.loads(response.body) if response.body else None


def test_deploy_serves_and_records_a_revision(tmp_path):
    async def main():
        gateway, builder, server, _ = await start_gateway(str(tmp_path))
        try:
            result = await gateway.put_endpoint(spec())
            assert result["endpoint"]["state"] == "running"
            assert result["build"]["ok"] is True
            assert "binary" not in result["build"]
            code, body = await get_json(gateway.url + "/echo?x=1")
            assert code == 200 and body["tag"] == "one" and body["query"] == {"x": "1"}
            revisions = gateway.registry.revisions("echo")
            assert [r.number for r in revisions] == [1]
            assert gateway.registry.get_endpoint("echo").live_revision == 1
        finally:
            await stop_gateway(gateway, server)
    run(main())



def test_a_cache_hit_is_unchanged_only_when_it_is_what_serves(tmp_path):
    async def main():
        gateway, builder, server, _ = await start_gateway(str(tmp_path))
        try:
            seen = []
            for tag in ("one", "two", "one", "one"):
                result = await gateway.put_endpoint(spec(source=f"tag: {tag}"))
                build = result["build"]
                seen.append((build["cached"], build["unchanged"]))
                code, body = await get_json(gateway.url + "/echo")
                assert body["tag"] == tag
            # "one" again after "two" comes from the cache but changes what is served
            assert seen == [(False, False), (False, False), (True, False), (True, True)]
        finally:
            await stop_gateway(gateway, server)
    run(main())

def test_build_failure_keeps_the_old_revision_serving(tmp_path):
    async def main():
        gateway, builder, server, _ = await start_gateway(str(tmp_path))
        try:
            await gateway.put_endpoint(spec(source="tag: old"))
            result = await gateway.put_endpoint(spec(source="tag: new\ncompile_error"))
            endpoint = result["endpoint"]
            assert endpoint["state"] == "running_build_failed"  # running, latest build failed
            assert "expected expression" in endpoint["reason"]
            assert "revision 1 keeps serving" in endpoint["reason"]
            assert result["build"]["diagnostics"][0]["line"] == 2
            assert result["build"]["rendered"]
            code, body = await get_json(gateway.url + "/echo")
            assert code == 200 and body["tag"] == "old"
            statuses = [r.build_status for r in gateway.registry.revisions("echo")]
            assert statuses == ["failed", "ok"]
        finally:
            await stop_gateway(gateway, server)
    run(main())


def test_revision_that_fails_to_start_is_deploy_failed_and_old_keeps_serving(tmp_path):
    async def main():
        gateway, builder, server, _ = await start_gateway(str(tmp_path))
        try:
            await gateway.put_endpoint(spec(source="tag: old"))
            result = await gateway.put_endpoint(spec(source="tag: bad\nexit_at_start"))
            endpoint = result["endpoint"]
            assert endpoint["state"] == "running_deploy_failed"
            assert "keeps serving" in endpoint["reason"]
            assert "failing at start" in (endpoint["stderr_tail"] or "")
            assert endpoint["live_revision"] == 1
            code, body = await get_json(gateway.url + "/echo")
            assert code == 200 and body["tag"] == "old"
        finally:
            await stop_gateway(gateway, server)
    run(main())


def test_restart_restores_from_cached_binaries_without_building(tmp_path):
    async def main():
        data_dir = str(tmp_path)
        gateway, builder, server, _ = await start_gateway(data_dir)
        await gateway.put_endpoint(spec(source="tag: kept"))
        await gateway.put_endpoint(spec(name="off", path="/off", source="tag: off"))
        await gateway.stop_endpoint("off")
        await stop_gateway(gateway, server)

        gateway, builder, server, _ = await start_gateway(data_dir)
        try:
            assert builder.builds == []  # nothing recompiled
            assert gateway.registry.get_endpoint("echo").state == "running"
            assert gateway.registry.get_endpoint("off").state == "stopped"
            code, body = await get_json(gateway.url + "/echo")
            assert code == 200 and body["tag"] == "kept"
            # the stopped endpoint answers as it did before the restart: 503, not 404
            response = await fetch(gateway.url + "/off")
            assert response.code == 503 and response.headers.get("Retry-After")
            view = await gateway.start_endpoint("off")
            assert view["state"] == "running" and builder.builds == []
            code, body = await get_json(gateway.url + "/off")
            assert code == 200 and body["tag"] == "off"
        finally:
            await stop_gateway(gateway, server)
    run(main())


def test_restart_rebuilds_only_when_the_binary_is_gone(tmp_path):
    async def main():
        data_dir = str(tmp_path)
        gateway, builder, server, _ = await start_gateway(data_dir)
        await gateway.put_endpoint(spec(source="tag: gone"))
        revision = gateway.registry.revisions("echo")[0]
        await stop_gateway(gateway, server)
        os.unlink(revision.binary)

        gateway, builder, server, _ = await start_gateway(data_dir)
        try:
            assert [b.name for b in builder.builds] == ["echo"]
            code, body = await get_json(gateway.url + "/echo")
            assert code == 200 and body["tag"] == "gone"
        finally:
            await stop_gateway(gateway, server)
    run(main())


def test_stop_start_and_remove(tmp_path):
    async def main():
        gateway, builder, server, _ = await start_gateway(str(tmp_path))
        try:
            await gateway.put_endpoint(spec())
            view = await gateway.stop_endpoint("echo")
            assert view["state"] == "stopped" and view["desired"] == "stopped"
            response = await fetch(gateway.url + "/echo")
            assert response.code == 503
            view = await gateway.start_endpoint("echo")
            assert view["state"] == "running"
            assert len(builder.builds) == 1  # started from the cached binary
            assert (await fetch(gateway.url + "/echo")).code == 200
            await gateway.remove_endpoint("echo")
            assert gateway.registry.find_endpoint("echo") is None
            assert builder.removed == ["echo"]  # its workspace package goes too
            assert (await fetch(gateway.url + "/echo")).code == 404
        finally:
            await stop_gateway(gateway, server)
    run(main())


def test_validation_errors_are_client_errors(tmp_path):
    async def main():
        gateway, builder, server, _ = await start_gateway(str(tmp_path))
        try:
            with pytest.raises(DeployRejected) as info:
                await gateway.put_endpoint(spec(name="bad name"))
            assert info.value.status == 400
            with pytest.raises(DeployRejected) as info:
                await gateway.put_endpoint(spec(path="no-slash"))
            assert info.value.error_type == "invalid_route"
            with pytest.raises(DeployRejected) as info:
                await gateway.put_endpoint(spec(workers=0))
            assert info.value.error_type == "invalid_option"
            await gateway.put_endpoint(spec(name="a", path="/items/{id}"))
            with pytest.raises(DeployRejected) as info:
                await gateway.put_endpoint(spec(name="b", path="/items/{other}"))
            assert info.value.status == 409
            assert builder.builds and len(builder.builds) == 1
        finally:
            await stop_gateway(gateway, server)
    run(main())


def test_worker_environment_is_scrubbed(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_TOKEN", "jupyter-secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "cloud-secret")

    async def main():
        gateway, builder, server, _ = await start_gateway(str(tmp_path), token="admin-secret")
        try:
            env = gateway.worker_env()
            assert set(env) == {"PATH", "HOME", "LANG", "RUST_BACKTRACE", "EDGEBOOK_MAX_FRAME"}
            assert env["HOME"] != os.environ.get("HOME")
            await gateway.put_endpoint(spec())
            code, body = await get_json(gateway.url + "/echo")
            pid = body["pid"]
            with open(f"/proc/{pid}/environ", "rb") as handle:
                worker_env = handle.read().decode()
            assert "jupyter-secret" not in worker_env
            assert "cloud-secret" not in worker_env
            assert "admin-secret" not in worker_env
            assert "RUST_BACKTRACE=1" in worker_env
            assert "EDGEBOOK_EXPOSE_ERRORS" not in worker_env  # not in development mode
            gateway.config.dev = True  # a gateway a notebook started (serve --dev)
            assert gateway.worker_env()["EDGEBOOK_EXPOSE_ERRORS"] == "1"
        finally:
            await stop_gateway(gateway, server)
    run(main())


def test_events_report_build_progress_and_state_changes(tmp_path):
    async def main():
        gateway, builder, server, _ = await start_gateway(str(tmp_path))
        subscription = gateway.events.subscribe()
        try:
            await gateway.put_endpoint(spec())
            seen = []
            while True:
                event = await subscription.get(timeout=5)
                seen.append(event)
                if event["type"] == "state" and event["state"] == "running":
                    break
            kinds = [(e["type"], e.get("phase") or e.get("state")) for e in seen
                     if e["type"] in ("build", "state")]
            assert kinds == [("state", "building"), ("build", "started"),
                             ("build", "progress"), ("build", "finished"),
                             ("state", "starting"), ("state", "running")]
            progress = [e for e in seen if e.get("phase") == "progress"][0]
            assert progress["stage"] == "compiling" and progress["endpoint"] == "echo"
        finally:
            subscription.close()
            await stop_gateway(gateway, server)
    run(main())


def test_event_bus_drops_a_subscriber_that_falls_behind():
    async def main():
        bus = EventBus(maxsize=3)
        slow = bus.subscribe()
        for i in range(5):
            bus.publish("tick", i=i)
        assert bus.subscribers == 0
        received = []
        while (event := await slow.get(timeout=1)) is not None:
            received.append(event["i"])
        assert received == [1, 2]  # the oldest made room for the drop marker
        assert [e["i"] for e in bus.since(2)] == [2, 3, 4]
    run(main())


def test_closing_a_subscription_wakes_its_reader_even_with_a_full_queue():
    async def main():
        bus = EventBus(maxsize=2)
        full = bus.subscribe()
        bus.publish("tick", i=0)
        bus.publish("tick", i=1)  # its queue is now full, but it has not fallen behind
        full.close()  # the client went away: no QueueFull
        full.close()
        assert await full.get(timeout=1) is None and bus.subscribers == 0
        idle = bus.subscribe()
        waiting = asyncio.ensure_future(idle.get(timeout=5))
        await asyncio.sleep(0)
        idle.close()
        assert await asyncio.wait_for(waiting, 1) is None  # ended at once
    run(main())


def test_stop_drains_an_inflight_request(tmp_path):
    async def main():
        gateway, builder, server, _ = await start_gateway(str(tmp_path))
        await gateway.put_endpoint(spec(path="/mode/slow"))
        slow = asyncio.ensure_future(fetch(gateway.url + "/mode/slow?s=0.6"))
        while gateway.inflight == 0:
            await asyncio.sleep(0.01)
        await stop_gateway(gateway, server)
        response = await slow
        assert response.code == 200 and json.loads(response.body)["slept"] is True
    run(main())


def test_release_after_dev_hot_swaps_to_a_release_build(tmp_path):
    async def main():
        gateway, builder, server, _ = await start_gateway(str(tmp_path), release_after_dev=True)
        try:
            subscription = gateway.events.subscribe()
            result = await gateway.put_endpoint(spec())
            assert result["build"]["profile"] == "dev"
            while True:
                event = await subscription.get(timeout=5)
                if event["type"] == "state" and event["state"] == "running" \
                        and event["revision"] == 2:
                    break
            subscription.close()
            assert [b.profile for b in builder.builds] == ["dev", "release"]
            assert gateway.registry.get_revision("echo", 2).profile == "release"
            assert (await fetch(gateway.url + "/echo")).code == 200
        finally:
            await stop_gateway(gateway, server)
    run(main())


def test_a_missing_name_with_extra_dependencies_hints_at_crate_features():
    from types import SimpleNamespace

    from edgebook.gateway.builds import feature_hint as _feature_hint
    failed = SimpleNamespace(ok=False, diagnostics=[{
        "level": "error", "message": "no function or associated item named `new_v4` found "
                                     "for struct `Uuid` in the current scope"}])
    hint = _feature_hint(failed, ["uuid@1"])
    assert "uuid" in hint and "--dep uuid@1+v4" in hint
    assert _feature_hint(failed, []) is None  # no extra dependency: nothing to hint at
    mistyped = SimpleNamespace(ok=False, diagnostics=[{"level": "error",
                                                       "message": "mismatched types"}])
    assert _feature_hint(mistyped, ["uuid@1"]) is None


def test_development_gateways_send_server_timing_on_every_response(tmp_path):
    async def main():
        gateway, builder, server, _ = await start_gateway(str(tmp_path), dev=True)
        try:
            await gateway.put_endpoint(spec())
            response = await fetch(gateway.url + "/echo")
            header = response.headers.get("Server-Timing")
            assert header and "worker;dur=" in header and "total;dur=" in header
            [recent] = gateway.recent_requests("echo")  # what the sidebar lists
            assert recent["status"] == 200 and recent["target"] == "/echo"
            assert [p["name"] for p in recent["phases"]] == ["route", "recv", "queue", "worker"]
            response = await fetch(gateway.url + "/nothing-here")  # errors too
            assert response.code == 404 and "recv;dur=" in response.headers["Server-Timing"]
        finally:
            await stop_gateway(gateway, server)
    run(main())
