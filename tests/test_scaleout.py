"""The multi-node battery: three gateways and a builder sharing a real PostgreSQL registry
and a real S3-compatible artifact store (moto), each gateway a process with its own data
dir standing in for one machine.

Each scenario prints what it measured; the figures are also written to
tests/artifacts/scaleout.json.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

import pytest

from cluster_helpers import (ROOT, TOKEN, Node, RoundRobin, StoreGate, call, handler,
                             wait_message)
from servers import MotoServer, PostgresServer, _server

pytestmark = pytest.mark.timeout(900)

FIGURES: dict[str, object] = {}
BUCKET = "edgebook-artifacts"


def figure(name: str, value) -> None:
    FIGURES[name] = value
    print(f"scale-out: {name}: {value}")


def psql(pg: PostgresServer, sql: str) -> str:
    done = subprocess.run(
        [os.path.join(pg.bindir, "psql"), "-h", "127.0.0.1", "-p", str(pg.port), "-U", pg.user,
         "-d", "postgres", "-At", "-c", sql],
        capture_output=True, text=True, env={**os.environ, "PGPASSWORD": pg.password},
        timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def create_bucket(moto: MotoServer) -> None:
    import boto3
    client = boto3.client("s3", endpoint_url=moto.url, region_name="us-east-1",
                          aws_access_key_id=moto.access_key,
                          aws_secret_access_key=moto.secret_key)
    client.create_bucket(Bucket=BUCKET)


class Cluster:
    def __init__(self, tmp: str):
        self.tmp = tmp
        self.pg = _server(PostgresServer)
        self.moto = _server(MotoServer)
        create_bucket(self.moto)
        self.aws = {"AWS_ACCESS_KEY_ID": MotoServer.access_key,
                    "AWS_SECRET_ACCESS_KEY": MotoServer.secret_key,
                    "AWS_REGION": "us-east-1"}
        self.gate = StoreGate(self.moto.port)  # gateway 2 reaches the store through it
        builder = self.node("builder", role="builder")
        # Sweep after every build; what was built within 10 s is kept whatever else says.
        builder.env = {"EDGEBOOK_GC_GRACE": "10", "EDGEBOOK_GC_INTERVAL": "0"}
        self.builder = builder.start()
        self.nodes = [self.node("g1").start(), self.node("g2", gate=True).start(),
                      self.node("g3").start()]

    def node(self, name: str, role: str = "gateway", gate: bool = False) -> Node:
        return Node(os.path.join(self.tmp, name), self.pg.dsn(), f"s3://{BUCKET}/edgebook",
                    self.gate.url if gate else self.moto.url, self.aws, role=role)

    def deploy(self, node: Node, message: str, name: str = "hello", headers=None):
        return node.api("PUT", f"/api/endpoints/{name}", {
            "method": "GET", "path": f"/{name}", "source": handler(message)}, headers=headers)

    def close(self) -> None:
        for node in [*self.nodes, self.builder]:
            node.stop()
        self.gate.close()
        self.moto.cleanup()
        self.pg.cleanup()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    made = Cluster(str(tmp_path_factory.mktemp("scaleout")))
    try:
        yield made
    finally:
        made.close()
        os.makedirs(os.path.join(ROOT, "tests", "artifacts"), exist_ok=True)
        with open(os.path.join(ROOT, "tests", "artifacts", "scaleout.json"), "w") as out:
            json.dump(FIGURES, out, indent=1)


def test_a_deploy_on_one_gateway_is_served_by_all_three(cluster):
    status, body, _ = cluster.deploy(cluster.nodes[0], "one")
    assert status == 201, body
    answered = time.monotonic()
    seen = wait_message(cluster.nodes, "/hello", "one", timeout=3.0)
    figure("deploy -> all three serve (s after the deploy answered)",
           round(max(seen.values()), 3))
    assert time.monotonic() - answered < 3.0
    versions = {node.url: node.stats()["cluster"] for node in cluster.nodes}
    latest = max(v["registry_version"] for v in versions.values())
    for node in cluster.nodes:  # each says which registry version it serves
        node.wait_ready(5)
        deadline = time.monotonic() + 2
        while node.stats()["cluster"]["served_version"] < latest:
            assert time.monotonic() < deadline, node.stats()["cluster"]
            time.sleep(0.02)
    assert body["build"]["artifact"], body["build"]


def test_a_killed_listen_connection_reconnects_and_misses_nothing(cluster):
    g2 = cluster.nodes[1]
    listener = g2.stats()["cluster"]["registry_listener_pid"]
    assert listener, g2.stats()
    terminated = psql(cluster.pg, f"SELECT pg_terminate_backend({int(listener)})")
    assert terminated == "t", "gateway 2's LISTEN connection was not found"
    status, body, _ = cluster.deploy(cluster.nodes[0], "two")
    assert status == 200, body
    seen = wait_message([g2], "/hello", "two", timeout=5.0)
    figure("LISTEN killed, then a deploy -> gateway 2 serves it (s)",
           round(seen[g2.url], 3))


def test_postgresql_down_for_ten_seconds_traffic_goes_on_writes_get_503(cluster):
    load = RoundRobin(cluster.nodes, "/hello").start()
    cluster.pg.stop()
    try:
        time.sleep(1)
        status, body, _ = cluster.nodes[0].api("PATCH", "/api/endpoints/hello",
                                               {"workers": 2}, timeout=30)
        assert status == 503 and body["error_type"] == "registry_unavailable", body
        time.sleep(9)
    finally:
        cluster.pg.start()
    load.stop()
    figure("PostgreSQL down 10 s: requests served / failed", f"{load.ok} / {load.failed}")
    assert load.failed == 0, load.failures[:5]
    assert load.ok > 50
    started = time.monotonic()
    status, body, _ = cluster.deploy(cluster.nodes[2], "three")
    assert status == 200, body
    wait_message(cluster.nodes, "/hello", "three", timeout=10.0)
    figure("PostgreSQL back -> a deploy served by all three (s)",
           round(time.monotonic() - started, 3))


def test_two_conflicting_updates_one_wins_one_gets_409(cluster):
    _, _, headers = cluster.nodes[0].api("GET", "/api/endpoints/hello")
    etag = headers["ETag"]
    results = {}

    def update(index: int, message: str) -> None:
        results[message] = cluster.deploy(cluster.nodes[index], message,
                                          headers={"If-Match": etag})[:2]

    threads = [threading.Thread(target=update, args=(0, "four-a")),
               threading.Thread(target=update, args=(1, "four-b"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    statuses = sorted(status for status, _ in results.values())
    assert statuses == [200, 409], results
    winner = next(m for m, (status, _) in results.items() if status == 200)
    wait_message(cluster.nodes, "/hello", winner, timeout=5.0)
    figure("two updates with one If-Match", f"{statuses}; all serve {winner!r}")


def test_a_gateway_killed_during_a_rollout_comes_back_at_the_current_revision(cluster):
    g3 = cluster.nodes[2]
    deploy = threading.Thread(target=cluster.deploy, args=(cluster.nodes[0], "five"))
    deploy.start()
    time.sleep(0.2)
    g3.signal(signal.SIGKILL)
    g3.wait(30)
    deploy.join(300)
    wait_message(cluster.nodes[:2], "/hello", "five", timeout=5.0)
    started = time.monotonic()
    g3.start(wait_ready=False)
    ready = g3.wait_ready(60)
    status, body, _ = g3.get("/hello")
    assert status == 200 and body["message"] == "five", body  # ready means current
    figure("SIGKILLed gateway restarted -> ready at the current revision (s)",
           round(time.monotonic() - started, 3))
    figure("  of which waiting for /readyz (s)", round(ready, 3))


def test_artifact_store_down_for_one_gateway_old_revision_serves_then_recovers(cluster):
    g2 = cluster.nodes[1]
    cluster.gate.open = False  # gateway 2 loses the store; the others keep it
    try:
        status, body, _ = cluster.deploy(cluster.nodes[0], "six")
        assert status == 200, body
        wait_message([cluster.nodes[0], cluster.nodes[2]], "/hello", "six", timeout=5.0)
        deadline = time.monotonic() + 10
        while True:
            view = g2.api("GET", "/api/endpoints/hello")[1]
            if (view.get("node") or {}).get("state") == "artifact_fetch_failed":
                break
            assert time.monotonic() < deadline, view
            time.sleep(0.1)
        assert "keeps serving" in view["node"]["reason"], view["node"]
        assert g2.get("/hello")[1]["message"] != "six"  # the old revision serves
        assert g2.ready()[0] == 503
    finally:
        cluster.gate.open = True
    started = time.monotonic()
    wait_message([g2], "/hello", "six", timeout=15.0)
    figure("store back -> gateway 2 serves the new revision (s)",
           round(time.monotonic() - started, 3))
    g2.wait_ready(10)


def test_a_tampered_artifact_is_refused(cluster):
    import boto3
    view = cluster.nodes[0].api("GET", "/api/endpoints/hello/revisions")[1]
    live = next(r for r in view["revisions"] if r["live"])
    client = boto3.client("s3", endpoint_url=cluster.moto.url, region_name="us-east-1",
                          aws_access_key_id=MotoServer.access_key,
                          aws_secret_access_key=MotoServer.secret_key)
    key = f"edgebook/sha256/{live['artifact']}"
    original = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    client.put_object(Bucket=BUCKET, Key=key, Body=original + b"tampered")
    fresh = cluster.node("g4")
    try:
        fresh.start(wait_ready=False)
        deadline = time.monotonic() + 20
        while True:
            node = (fresh.api("GET", "/api/endpoints/hello")[1] or {}).get("node") or {}
            if node.get("state") == "artifact_fetch_failed":
                break
            assert time.monotonic() < deadline, fresh.log()[-2000:]
            time.sleep(0.1)
        assert "refused" in node["reason"] and "sha256" in node["reason"].lower(), node
        assert fresh.ready()[0] == 503
        assert fresh.get("/hello")[0] == 404  # never ran the tampered bytes
        figure("tampered artifact", f"refused: {node['reason'][:120]}")
    finally:
        client.put_object(Bucket=BUCKET, Key=key, Body=original)
        fresh.stop()


def test_round_robin_while_one_gateway_gets_sigterm_fails_nothing(cluster):
    load = RoundRobin(cluster.nodes, "/hello").start()
    time.sleep(1)
    g1 = cluster.nodes[0]
    g1.signal(signal.SIGTERM)
    assert g1.wait(60) == 0
    time.sleep(1)
    load.stop()
    figure("SIGTERM on one of three under round-robin: ok / failed / retried refused",
           f"{load.ok} / {load.failed} / {load.retried}")
    assert load.failed == 0, load.failures[:5]
    g1.start()


def test_a_hot_reload_under_load_across_three_fails_nothing(cluster):
    load = RoundRobin(cluster.nodes, "/hello").start()
    time.sleep(0.5)
    status, body, _ = cluster.deploy(cluster.nodes[1], "seven")
    assert status == 200, body
    wait_message(cluster.nodes, "/hello", "seven", timeout=5.0)
    time.sleep(0.5)
    load.stop()
    figure("hot reload under load on three: ok / failed", f"{load.ok} / {load.failed}")
    assert load.failed == 0, load.failures[:5]
    assert "seven" in load.messages


def test_the_builder_built_each_source_once(cluster):
    jobs = psql(cluster.pg, "SELECT count(*), count(DISTINCT key) FROM build_jobs "
                            "WHERE state = 'done'")
    total, distinct = (int(x) for x in jobs.split("|"))
    figure("build jobs done / distinct sources", f"{total} / {distinct}")
    assert total == distinct
    assert call(cluster.builder.admin + "/healthz")[0] == 200
    assert TOKEN  # every admin call above used the token from the environment


def test_every_gateway_reports_what_it_serves(cluster):
    deadline = time.monotonic() + 15
    while True:
        view = cluster.nodes[0].api("GET", "/api/cluster")[1]
        live = str(cluster.nodes[0].api("GET", "/api/endpoints/hello")[1]["live_revision"])
        # The gateway SIGKILLed earlier left a report that ages out after a minute; the
        # running ones report every 10 s and after every change.
        current = {node.url for node in cluster.nodes}
        rows = [g for g in view["gateways"] if g["url"] in current]
        serving = {g["url"]: g["serving"].get("hello") for g in rows}
        if len(serving) == 3 and set(serving.values()) == {live} \
                and all(g["ready"] and g["served_version"] > 0 for g in rows):
            break
        assert time.monotonic() < deadline, view
        time.sleep(0.2)
    figure("gateways reporting the live revision", f"{len(serving)} of 3 at {live}")


def test_old_revisions_and_their_artifacts_are_collected_not_the_live_one(cluster):
    g1 = cluster.nodes[0]
    built = []  # each deploy's artifact, oldest first
    for index in range(7):  # more revisions than are kept
        status, body, _ = cluster.deploy(g1, f"gc {index}")
        assert status == 200, body
        built.append(body["build"]["artifact"])
    wait_message(cluster.nodes, "/hello", "gc 6", timeout=10.0)
    revisions = g1.api("GET", "/api/endpoints/hello/revisions")[1]["revisions"]
    numbers = [r["number"] for r in revisions]
    # The sweep runs as a build completes: the last 5 then and the one that build makes
    # stay, and any revision a gateway reports running (a killed one's report stays until
    # it ages out); the others are gone.
    served = {int(g["serving"]["hello"]) for g in g1.api("GET", "/api/cluster")[1]["gateways"]
              if "hello" in g["serving"]}
    newest = max(numbers)
    assert set(numbers) <= set(range(newest - 5, newest + 1)) | served, (numbers, served)
    assert len(numbers) < newest - 5, numbers
    assert any(r["live"] for r in revisions)
    import boto3
    client = boto3.client("s3", endpoint_url=cluster.moto.url, region_name="us-east-1",
                          aws_access_key_id=MotoServer.access_key,
                          aws_secret_access_key=MotoServer.secret_key)
    def stored() -> set[str]:
        listing = client.list_objects_v2(Bucket=BUCKET, Prefix="edgebook/sha256/")
        return {item["Key"].rsplit("/", 1)[1] for item in listing.get("Contents", [])}

    before = stored()
    time.sleep(10.5)  # past the builder's grace: the next build sweeps
    status, body, _ = cluster.deploy(g1, "gc last")
    assert status == 200, body
    wait_message(cluster.nodes, "/hello", "gc last", timeout=10.0)
    after = stored()
    live = next(r for r in g1.api("GET", "/api/endpoints/hello/revisions")[1]["revisions"]
                if r["live"])
    # Kept: the last five revisions when the sweep ran (gc 2..6), the build that swept
    # (within its grace); gone: gc 0 and gc 1, older than the grace and past the last five.
    assert live["artifact"] in after and body["build"]["artifact"] in after
    assert set(built[2:]) <= after, "a recent revision's artifact was collected"
    assert not set(built[:2]) & after, "old artifacts were kept"
    assert len(after) < len(before), (len(before), len(after))
    cached = [name for name in os.listdir(os.path.join(g1.data_dir, "artifact-cache"))
              if len(name) == 64]
    assert live["artifact"] in cached and len(cached) <= 6, cached  # the gateway's cache too
    figure("after 8 more deploys: revisions kept / artifacts before and after the sweep / "
           "binaries in gateway 1's cache", f"{len(numbers)} / {len(before)} -> {len(after)}"
           f" / {len(cached)}")


def test_a_queued_build_reports_progress_and_errors_to_the_client_that_asked(cluster):
    import http.client
    import urllib.parse
    g2 = cluster.nodes[1]
    admin = urllib.parse.urlsplit(g2.admin)
    events: list[dict] = []
    stream = http.client.HTTPConnection(admin.hostname, admin.port, timeout=120)
    stream.request("GET", f"/api/events?token={TOKEN}", headers={"Accept": "text/event-stream"})
    response = stream.getresponse()
    assert response.status == 200

    def read() -> None:
        try:
            for line in response:
                if line.startswith(b"data:"):
                    events.append(json.loads(line[5:]))
        except Exception:  # the stream closed under it: the test is done reading
            pass

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        broken = handler("broken").replace("Response::ok(json!({", "Response::ok(json!({ nope")
        status, body, _ = g2.api("PUT", "/api/endpoints/hello", {
            "method": "GET", "path": "/hello", "source": broken})
        assert status == 422, body
        assert body["endpoint"]["state"] == "running_build_failed", body["endpoint"]
        assert body["build"]["diagnostics"] and "error" in body["build"]["rendered"]
        assert g2.get("/hello")[0] == 200  # the live revision keeps serving
        time.sleep(0.5)
    finally:
        stream.close()
        reader.join(10)
    builds = [e for e in events if e.get("type") == "build" and e.get("endpoint") == "hello"]
    phases = [e.get("phase") for e in builds]
    assert "started" in phases and "finished" in phases, phases
    relayed = [e for e in builds if e.get("phase") == "progress"]
    assert any("queued as build job" in str(e.get("message")) for e in relayed), relayed
    assert len(relayed) >= 2, relayed  # the builder's own progress, through PostgreSQL
    figure("progress events relayed from the builder for one failed build", len(relayed))
