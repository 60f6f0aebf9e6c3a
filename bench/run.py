"""edgebook benchmark suite: every figure next to a baseline measured in the same run.

    python bench/run.py            # full run, about 5 minutes on 2 cores
    python bench/run.py --quick    # under a minute: shorter loads, fewer scenarios
    python bench/run.py --only hello,reload --duration 3

Starts everything it measures (a gateway, plain Tornado baselines, a tiny native server
for calibrating the load generator, optionally Jupyter Kernel Gateway), loads loopback
only with bounded loads, tears down the processes it started (by pid), prints a table and
writes ``bench/out/results.json`` and PNG plots into ``bench/out/``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from bench import loadgen  # noqa: E402
from bench.procs import ProcessSet, cpu_seconds, descendants, rss_bytes  # noqa: E402

MiB = 1024 * 1024
SCENARIOS = ("calibrate", "hello", "processes", "kernelgateway", "bodies", "workers",
             "builds", "reload", "memory")
QUICK_SKIP = {"kernelgateway"}


def log(message: str) -> None:
    print(message, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float, proc=None) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except Exception as exc:  # noqa: BLE001 - keep polling
            last = exc
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s ({last})")


def read_port(proc, prefix: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                raise RuntimeError(f"process exited ({proc.returncode}) before printing {prefix}")
            continue
        line = line.decode().strip() if isinstance(line, bytes) else line.strip()
        if line.startswith(prefix):
            return line.split(None, 1)[1]
    raise RuntimeError(f"no {prefix} line within {timeout} s")


class Bench:
    def __init__(self, args):
        self.args = args
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.procs = ProcessSet()
        self.tool = args.loadgen if args.loadgen != "auto" else (
            "wrk" if loadgen.have_wrk() else "python")
        self.duration = args.duration or (1.0 if args.quick else 5.0)
        self.results: dict = {"scenarios": {}, "targets": [], "rows": [], "skipped": {}}
        self.tmp = Path(tempfile.mkdtemp(prefix="edgebook-bench-"))
        self.gateway = None  # (proc, client, url)
        self.python = sys.executable
        # With two or more CPUs, servers (a gateway and its workers, the baselines) run on
        # CPU 0 and the load generator on CPU 1, so neither steals the other's core.
        cpus = sorted(os.sched_getaffinity(0))
        self.all_cpus = set(cpus)
        self.pinned = args.pin == "auto" and len(cpus) >= 2
        self.server_cpus = {cpus[0]} if self.pinned else self.all_cpus
        self.load_cpus = {cpus[1]} if self.pinned else self.all_cpus
        self._pin_servers = self.pinned

    def _server_affinity(self) -> None:  # runs in the child between fork and exec
        if self._pin_servers:
            os.sched_setaffinity(0, self.server_cpus)

    @contextlib.contextmanager
    def unpinned(self):
        """Servers started inside, and loads run inside, may use every CPU."""
        self._pin_servers = False
        os.sched_setaffinity(0, self.all_cpus)
        try:
            yield
        finally:
            self._pin_servers = self.pinned
            os.sched_setaffinity(0, self.load_cpus)

    # -- processes -----------------------------------------------------------------------

    def start_tornado(self, port: int = 0, *, raw: bool = False, uvloop: bool = False) -> tuple:
        """Plain Tornado (Application + RequestHandler), or with ``raw`` Tornado's ceiling:
        a bare HTTPServer delegate (``baselines/tornado_raw.py``)."""
        script = "tornado_raw.py" if raw else "tornado_hello.py"
        argv = [self.python, str(HERE / "baselines" / script), "--port", str(port)]
        if uvloop:
            argv.append("--uvloop")
        proc = self.procs.start("tornado", argv, stdout=subprocess.PIPE,
                                preexec_fn=self._server_affinity)
        port = int(read_port(proc, "PORT"))
        return proc, f"http://127.0.0.1:{port}"

    def start_fast_server(self):
        binary = self.out / "fast_server"
        source = HERE / "baselines" / "fast_server.rs"
        if not binary.exists() or binary.stat().st_mtime < source.stat().st_mtime:
            if shutil.which("rustc"):
                subprocess.run(["rustc", "-O", "-o", str(binary), str(source)], check=True,
                               capture_output=True, timeout=120)
        if binary.exists():
            proc = self.procs.start("fast-server", [str(binary), "0"], stdout=subprocess.PIPE,
                                    preexec_fn=self._server_affinity)
            return proc, f"http://127.0.0.1:{read_port(proc, 'PORT')}", "native (Rust std)"
        proc = self.procs.start("fast-server", [self.python, "-c", ASYNCIO_SERVER],
                                stdout=subprocess.PIPE)
        return proc, f"http://127.0.0.1:{read_port(proc, 'PORT')}", "asyncio raw protocol"

    def serve_command(self, data_dir: str) -> tuple[list[str], str]:
        return ([self.python, "-m", "edgebook", "serve", "--data-dir", data_dir, "--port", "0"],
                "edgebook serve")

    def start_gateway(self, extra: list[str] = ()):
        from edgebook.client import AdminClient, GatewayNotRunningError

        data_dir = tempfile.mkdtemp(prefix="gw-", dir=self.tmp)
        argv, how = self.serve_command(data_dir)
        argv = argv + list(extra)
        logfile = open(Path(data_dir).parent / f"{Path(data_dir).name}.log", "wb")
        proc = self.procs.start("gateway", argv, stdout=logfile, stderr=subprocess.STDOUT,
                                preexec_fn=self._server_affinity)
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"gateway exited ({proc.returncode}); see {logfile.name}")
            try:
                client = AdminClient.from_data_dir(data_dir)
                break
            except GatewayNotRunningError:
                if time.monotonic() > deadline:
                    raise RuntimeError("gateway did not come up within 60 s") from None
                time.sleep(0.1)
        self.results["gateway_launch"] = how
        return proc, client, client.url, data_dir

    def deploy(self, client, name: str, method: str, path: str, handler: str, **options):
        source = (HERE / "handlers" / handler).read_text()
        started = time.monotonic()
        result = client.deploy(name, method, path, source, profile=self.args.profile, **options)
        took = time.monotonic() - started
        log(f"  deployed {name} ({handler}, {self.args.profile}) in {took:.1f} s")
        return result, took

    def gateway_tree(self, proc) -> list[int]:
        return descendants(proc.pid)

    # -- measuring -----------------------------------------------------------------------

    def measure(self, url: str, pids_of, connections: int, *, duration: float | None = None,
                label: str = "", **kwargs) -> dict:
        """One load; adds server CPU per request from /proc of ``pids_of()``."""
        pids = pids_of()
        cpu_before = cpu_seconds(pids)
        root_before = cpu_seconds(pids[:1])
        result = loadgen.run(url, tool=self.tool, connections=connections,
                             duration=duration or self.duration, **kwargs)
        pids_after = pids_of()
        cpu_after = cpu_seconds(pids_after)
        server_cpu = cpu_after - cpu_before
        result["server_cpu_s"] = server_cpu
        # the first pid is the server's main process (the gateway); the rest are its
        # children (workers, followers, a kernel)
        result["main_process_cpu_s"] = cpu_seconds(pids_after[:1]) - root_before
        result["server_cpu_us_per_req"] = (server_cpu / result["requests"] * 1e6
                                           if result["requests"] else math.nan)
        result["server_pids"] = len(pids_after)
        log(f"  {label:<44} {result['rps']:9.0f} req/s  p50 {result['p50_ms']:7.2f} ms  "
            f"p99 {result['p99_ms']:7.2f} ms  cpu/req {result['server_cpu_us_per_req']:6.0f} us"
            f"  failed {result['errors'] + result['non2xx']}")
        return result

    def measure_abba(self, a: tuple, b: tuple, connections: int, **kwargs) -> tuple[dict, dict]:
        """Loads A, B, B, A (half the duration each) so drift in the machine's load hits
        both alike; rates and CPU are totals over both halves, percentiles their mean."""
        half = max(1.0, self.duration / 2)
        runs = {"a": [], "b": []}
        for key, (url, pids_of, label) in (("a", a), ("b", b), ("b", b), ("a", a)):
            runs[key].append(self.measure(url, pids_of, connections, duration=half,
                                          label=label + " (half)", **kwargs))
        return _combine(runs["a"]), _combine(runs["b"])

    def row(self, scenario: str, metric: str, edgebook, baseline, baseline_name: str,
            ratio_kind: str = "higher", unit: str = "") -> dict:
        ratio = (edgebook / baseline) if (isinstance(edgebook, (int, float)) and
                                          isinstance(baseline, (int, float)) and baseline) \
            else None
        row = {"scenario": scenario, "metric": metric, "edgebook": edgebook,
               "baseline": baseline, "baseline_name": baseline_name, "ratio": ratio,
               "better": ratio_kind, "unit": unit}
        self.results["rows"].append(row)
        return row

    def target(self, name: str, value, limit: str, met: bool | None, note: str = "") -> None:
        self.results["targets"].append({"target": name, "value": value, "limit": limit,
                                        "met": met, "note": note})

    # -- scenarios -----------------------------------------------------------------------

    def scenario_calibrate(self):
        """The load generator against a trivially fast server: its ceiling and its CPU."""
        proc, url, kind = self.start_fast_server()
        try:
            res = {"server": kind}
            res["c32"] = self.measure(url + "/hello", lambda: [proc.pid], 32,
                                      label=f"calibrate {self.tool} -> {kind} c32")
            if self.tool == "wrk":
                res["python_c32"] = loadgen.run_python(url + "/hello", connections=32,
                                                       duration=min(self.duration, 3))
                log(f"  calibrate python gen -> {kind} c32: {res['python_c32']['rps']:.0f} req/s")
            self.results["scenarios"]["calibrate"] = res
        finally:
            self.procs.stop(proc)

    def scenario_hello(self):
        tproc, turl = self.start_tornado()
        rproc, rurl = self.start_tornado(raw=True)
        res = {}
        try:
            gproc, client, gurl, _ = self.ensure_gateway()
            for url in (gurl, turl, rurl):  # warm (first connections, lazy imports, caches)
                loadgen.run(url + "/hello", tool=self.tool, connections=32, duration=1)
            for conns in (1, 32):
                res[f"gateway_c{conns}"], res[f"tornado_c{conns}"] = self.measure_abba(
                    (gurl + "/hello", lambda: self.gateway_tree(gproc), f"hello gateway c{conns}"),
                    (turl + "/hello", lambda: [tproc.pid], f"hello tornado c{conns}"), conns)
            res["tornado_raw_c32"] = self.measure(
                rurl + "/hello", lambda: [rproc.pid], 32,
                label="hello Tornado's ceiling (raw delegate) c32")
        finally:
            self.procs.stop(rproc)
        try:
            nproc, nclient, nurl, _ = self.start_gateway(["--no-uvloop"])
            try:
                self.deploy(nclient, "hello", "GET", "/hello", "hello.rs")
                loadgen.run(nurl + "/hello", tool=self.tool, connections=32, duration=1)
                res["gateway_asyncio_c32"], res["tornado_again_c32"] = self.measure_abba(
                    (nurl + "/hello", lambda: self.gateway_tree(nproc),
                     "hello gateway --no-uvloop c32"),
                    (turl + "/hello", lambda: [tproc.pid], "hello tornado c32"), 32)
            finally:
                self.procs.stop(nproc)
        finally:
            self.procs.stop(tproc)
        self.results["scenarios"]["hello"] = res
        for conns in (1, 32):
            g, t = res[f"gateway_c{conns}"], res[f"tornado_c{conns}"]
            self.row(f"hello, 1 process, c{conns}", "req/s", g["rps"], t["rps"], "Tornado hello")
            self.row(f"hello, 1 process, c{conns}", "p50 ms", g["p50_ms"], t["p50_ms"],
                     "Tornado hello", "lower")
            self.row(f"hello, 1 process, c{conns}", "p99 ms", g["p99_ms"], t["p99_ms"],
                     "Tornado hello", "lower")
            self.row(f"hello, 1 process, c{conns}", "CPU us/req", g["server_cpu_us_per_req"],
                     t["server_cpu_us_per_req"], "Tornado hello", "lower")
            self.row(f"hello, 1 process, c{conns}", "gateway-process CPU us/req",
                     _main_cpu_per_request(g), t["server_cpu_us_per_req"], "Tornado hello",
                     "lower")
            self.row(f"hello, 1 process, c{conns}", "load generator CPU us/req",
                     g.get("loadgen_cpu_us_per_req"), t.get("loadgen_cpu_us_per_req"),
                     "same, against Tornado", "lower")
        g, t, r = res["gateway_c32"], res["tornado_c32"], res["tornado_raw_c32"]
        self.row("hello, 1 process, c32", "req/s (Tornado's ceiling)", r["rps"], t["rps"],
                 "Tornado hello")
        self.row("hello, 1 process, c32", "req/s vs Tornado's ceiling", g["rps"], r["rps"],
                 "raw Tornado delegate")
        self.row("hello, 1 process, c32", "CPU us/req (Tornado's ceiling)",
                 r["server_cpu_us_per_req"], t["server_cpu_us_per_req"], "Tornado hello",
                 "lower")
        a, t2 = res["gateway_asyncio_c32"], res["tornado_again_c32"]
        self.row("hello, 1 process, c32, --no-uvloop", "req/s", a["rps"], t2["rps"],
                 "Tornado hello")
        self.row("hello, 1 process, c32, --no-uvloop", "gateway-process CPU us/req",
                 _main_cpu_per_request(a), t2["server_cpu_us_per_req"], "Tornado hello",
                 "lower")
        ratio = g["rps"] / t["rps"]
        self.target("hello c32 >= 1.3x Tornado RequestHandler hello (aim 1.6x)",
                    round(ratio, 3), ">= 1.3", ratio >= 1.3)
        ratio = g["p99_ms"] / t["p99_ms"]
        self.target("hello c32 p99 no worse than Tornado's", round(ratio, 3), "<= 1.0",
                    ratio <= 1.0)
        g1, t1 = res["gateway_c1"], res["tornado_c1"]
        ratio = g1["p50_ms"] / t1["p50_ms"]
        self.target("hello c1 p50 <= 1.5x Tornado's", round(ratio, 3), "<= 1.5", ratio <= 1.5)
        cpu = _main_cpu_per_request(g)
        ratio = cpu / t["server_cpu_us_per_req"] if cpu else None
        self.target("gateway CPU per hello request <= 0.6x Tornado's (c32)",
                    round(ratio, 3) if ratio else None, "<= 0.6",
                    None if ratio is None else ratio <= 0.6)
        ratio = a["rps"] / t2["rps"]
        self.target("hello c32 on asyncio's loop (--no-uvloop) vs Tornado, for reference",
                    round(ratio, 3), "(measured)", None)

    def scenario_processes(self):
        with self.unpinned():  # two server processes: every CPU, for both sides
            self._processes()

    def _processes(self):
        t1, url = self.start_tornado()
        port = int(url.rsplit(":", 1)[1])
        t2, _ = self.start_tornado(port)
        res = {}
        try:
            res["tornado2_c32"] = self.measure(url + "/hello", lambda: [t1.pid, t2.pid], 32,
                                               label="hello tornado x2 (SO_REUSEPORT) c32")
        finally:
            self.procs.stop(t2)
            self.procs.stop(t1)
        one = self.results["scenarios"].get("hello", {}).get("tornado_c32")
        if one:
            self.row("hello, 2 processes, c32", "req/s (Tornado x2 vs x1)", res["tornado2_c32"]["rps"],
                     one["rps"], "Tornado x1")
        gproc, client, gurl, _ = self.start_gateway(["--processes", "2"])
        try:
            self.deploy(client, "hello", "GET", "/hello", "hello.rs")
            res["gateway2_c32"] = self.measure(
                gurl + "/hello", lambda: descendants(gproc.pid), 32,
                label="hello gateway --processes 2 c32")
        finally:
            self.procs.stop(gproc)
        g2 = res["gateway2_c32"]["rps"]
        self.row("hello, 2 processes, c32", "req/s", g2, res["tornado2_c32"]["rps"],
                 "Tornado x2 (SO_REUSEPORT)")
        g1 = self.results["scenarios"].get("hello", {}).get("gateway_c32", {}).get("rps")
        if g1:
            self.row("hello, 2 processes, c32", "req/s (gateway x2 vs x1)", g2, g1,
                     "gateway x1 (pinned)")
        if one:
            ratio = g2 / one["rps"]
            self.target("--processes 2 c32 >= 2.2x single-process Tornado hello",
                        round(ratio, 3), ">= 2.2", ratio >= 2.2,
                        "nothing pinned; Tornado x1 measured pinned in [hello]")
        self.results["scenarios"]["processes"] = res

    def kg_venv(self) -> Path | None:
        venv = self.out / "kg-venv"
        ok = venv / ".installed"
        if ok.exists():
            return venv
        log("  installing jupyter_kernel_gateway into bench/out/kg-venv (once)")
        try:
            subprocess.run([self.python, "-m", "venv", str(venv)], check=True, timeout=120,
                           capture_output=True)
            subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                            "jupyter_kernel_gateway", "ipykernel"], check=True, timeout=600,
                           capture_output=True)
        except (subprocess.SubprocessError, OSError) as exc:
            detail = getattr(exc, "stderr", b"") or b""
            self.results["skipped"]["kernelgateway"] = (
                f"installing jupyter_kernel_gateway failed: {exc} "
                f"{detail.decode(errors='replace')[-300:]}")
            return None
        ok.touch()
        return venv

    def scenario_kernelgateway(self):
        venv = self.kg_venv()
        if venv is None:
            log("  SKIP Kernel Gateway: " + self.results["skipped"]["kernelgateway"])
            self.target(">= 10x Kernel Gateway notebook-http", None, ">= 10", None, "skipped")
            return
        notebook = self.tmp / "kg_hello.ipynb"
        notebook.write_text(json.dumps(KG_NOTEBOOK))
        port = free_port()
        home = self.tmp / "kg-home"
        home.mkdir(exist_ok=True)
        env = dict(os.environ, HOME=str(home), JUPYTER_RUNTIME_DIR=str(home / "runtime"))
        logfile = open(self.tmp / "kg.log", "wb")
        proc = self.procs.start("kernelgateway", [
            str(venv / "bin" / "jupyter"), "kernelgateway",
            "--KernelGatewayApp.api=kernel_gateway.notebook_http",
            f"--KernelGatewayApp.seed_uri={notebook}",
            "--KernelGatewayApp.ip=127.0.0.1", f"--KernelGatewayApp.port={port}"],
            stdout=logfile, stderr=subprocess.STDOUT, env=env)
        url = f"http://127.0.0.1:{port}"
        res = {}
        try:
            wait_http(url + "/hello", 90, proc)
            for conns in (1, 32):
                res[f"kg_c{conns}"] = self.measure(url + "/hello", lambda: descendants(proc.pid),
                                                   conns, label=f"hello Kernel Gateway c{conns}")
        except RuntimeError as exc:
            self.results["skipped"]["kernelgateway"] = str(exc)
            log(f"  SKIP Kernel Gateway: {exc}")
            return
        finally:
            self.procs.stop(proc)
        self.results["scenarios"]["kernelgateway"] = res
        hello = self.results["scenarios"].get("hello", {})
        for conns in (1, 32):
            g = hello.get(f"gateway_c{conns}")
            if g:
                self.row(f"hello vs Kernel Gateway, c{conns}", "req/s", g["rps"],
                         res[f"kg_c{conns}"]["rps"], "KG notebook-http")
                self.row(f"hello vs Kernel Gateway, c{conns}", "p99 ms", g["p99_ms"],
                         res[f"kg_c{conns}"]["p99_ms"], "KG notebook-http", "lower")
        g = hello.get("gateway_c32")
        if g:
            ratio = g["rps"] / res["kg_c32"]["rps"]
            self.target(">= 10x Kernel Gateway notebook-http (c32)", round(ratio, 1), ">= 10",
                        ratio >= 10)

    def scenario_bodies(self):
        tproc, turl = self.start_tornado()
        gproc, client, gurl, _ = self.ensure_gateway()
        self.deploy(client, "echo", "POST", "/echo", "echo.rs")
        kib1 = json.dumps({"items": ["x" * 90] * 10}).encode()[:1000]
        kib1 = json.dumps({"pad": "y" * (1024 - 11)}).encode()
        kib100 = json.dumps({"pad": "y" * (100 * 1024 - 11)}).encode()
        binary = os.urandom(64 * 1024)
        bodies = [("JSON 1 KiB", kib1, "application/json"),
                  ("JSON 100 KiB", kib100, "application/json"),
                  ("binary 64 KiB", binary, "application/octet-stream")]
        res = {}
        try:
            # correctness first: the binary body must come back byte for byte
            request = urllib.request.Request(gurl + "/echo", data=binary, method="POST",
                                             headers={"Content-Type": "application/octet-stream"})
            with urllib.request.urlopen(request, timeout=10) as response:
                res["binary_roundtrip_intact"] = response.read() == binary
            for label, body, ctype in bodies:
                key = label.replace(" ", "_")
                # A, B, B, A: drift in the box's load hits both sides alike
                res[f"gateway_{key}"], res[f"tornado_{key}"] = self.measure_abba(
                    (gurl + "/echo", lambda: self.gateway_tree(gproc), f"echo {label} gateway c8"),
                    (turl + "/echo", lambda: [tproc.pid], f"echo {label} tornado c8"), 8,
                    method="POST", body=body, content_type=ctype)
                g, t = res[f"gateway_{key}"], res[f"tornado_{key}"]
                self.row(f"echo {label}, c8", "req/s", g["rps"], t["rps"], "Tornado echo")
                self.row(f"echo {label}, c8", "p99 ms", g["p99_ms"], t["p99_ms"],
                         "Tornado echo", "lower")
                self.row(f"echo {label}, c8", "CPU us/req", g["server_cpu_us_per_req"],
                         t["server_cpu_us_per_req"], "Tornado echo", "lower")
                self.row(f"echo {label}, c8", "gateway-process CPU us/req",
                         g["main_process_cpu_s"] / g["requests"] * 1e6 if g["requests"] else None,
                         t["server_cpu_us_per_req"], "Tornado echo", "lower")
                ratio = g["rps"] / t["rps"] if t["rps"] else 0.0
                floor = 1.2 if label == "JSON 1 KiB" else 0.8
                self.target(f"echo {label} >= {floor}x Tornado echo", round(ratio, 3),
                            f">= {floor}", ratio >= floor)
        finally:
            self.procs.stop(tproc)
        self.results["scenarios"]["bodies"] = res

    def scenario_workers(self):
        gproc, client, gurl, _ = self.ensure_gateway()
        res = {}
        for workers in (1, 2, 4):
            self.deploy(client, "cpu1ms", "GET", "/cpu", "cpu1ms.rs", workers=workers)
            res[f"workers_{workers}"] = self.measure(
                gurl + "/cpu", lambda: self.gateway_tree(gproc), 16,
                label=f"cpu 1 ms, {workers} worker(s), c16")
        self.results["scenarios"]["workers"] = res
        base = res["workers_1"]
        for workers in (2, 4):
            r = res[f"workers_{workers}"]
            self.row(f"1 ms CPU handler, {workers} workers, c16", "req/s", r["rps"], base["rps"],
                     "same, 1 worker")
            self.row(f"1 ms CPU handler, {workers} workers, c16", "p99 ms", r["p99_ms"],
                     base["p99_ms"], "same, 1 worker", "lower")
        self.row("1 ms CPU handler, 1 worker, c16", "req/s", base["rps"], 1000.0,
                 "ideal (1 ms/req on one core)")
        client.remove("cpu1ms")

    def scenario_builds(self):
        from bench import builds

        log(f"  handler: {builds.handler_kind()}")
        rows = builds.edgebook_builds(log, quick=self.args.quick)
        if not self.args.quick:
            rows += builds.original_builds(log)
        else:
            self.results["skipped"]["original-style cold build"] = "skipped in --quick"
        self.results["scenarios"]["builds"] = rows
        for r in rows:
            if not r["ok"]:
                self.results["skipped"][f"build {r['build']}"] = f"FAILED: {r['status']}"
        by = {r["build"]: r["seconds"] for r in rows}
        cold = by.get("original: cold per-endpoint release+LTO")
        orig_edit = by.get("original: one-line edit release+LTO")
        for label in ("new handler (dev)", "new handler (release)", "cache hit (dev)",
                      "cache hit (release)", "one-line edit (dev)", "one-line edit (release)"):
            if label in by:
                base, name = (cold, "original cold release+LTO") if label.startswith("new") \
                    else (orig_edit, "original edit release+LTO")
                self.row(f"build: {label}", "seconds", by[label], base, name, "lower")

    def scenario_reload(self):
        gproc, client, gurl, _ = self.ensure_gateway()
        v1 = (HERE / "handlers" / "hello.rs").read_text()
        v2 = v1.replace("Hello, World!", "Hello again!")
        events: list[dict] = []
        duration = 7.0 if self.args.quick else max(15.0, self.duration * 3)
        t0 = time.monotonic() + 0.3

        def reloads():
            time.sleep(max(0.0, t0 + 1.5 - time.monotonic()))
            for label, source in (("v2: edit, built under load", v2),
                                  ("v1: back, cache hit (pure switch)", v1)):
                started = time.monotonic()
                try:
                    client.deploy("hello", "GET", "/hello", source, profile=self.args.profile)
                    ok = True
                except Exception as exc:  # noqa: BLE001
                    ok = f"{exc}"
                ended = time.monotonic()
                try:  # the switch really happened: the next response is the new revision's
                    with urllib.request.urlopen(gurl + "/hello", timeout=10) as response:
                        serving = json.loads(response.read()).get("message")
                except Exception as exc:  # noqa: BLE001
                    serving = f"error: {exc}"
                events.append({"label": label, "start": started - t0, "end": ended - t0,
                               "ok": ok, "serving_after": serving})
                time.sleep(1.0)

        thread = threading.Thread(target=reloads, daemon=True)
        thread.start()
        result = loadgen.run_python(gurl + "/hello", connections=16, duration=duration,
                                    keep_samples=True, t0=t0, processes=1)
        thread.join(120)
        starts, lats, statuses = result.pop("samples")
        failed = sum(1 for s in statuses if not 200 <= s < 300)
        before = [l for s, l in zip(starts, lats) if events and s < events[0]["start"]]
        during = [l for s, l in zip(starts, lats)
                  if any(e["start"] <= s <= e["end"] + 0.5 for e in events)]
        switch = [l for s, l in zip(starts, lats)
                  if any(e["end"] - 0.5 <= s <= e["end"] + 0.5 for e in events)]
        res = {"load": result, "events": events, "failed": failed,
               "completed_reloads": sum(1 for e in events if e["ok"] is True),
               "p99_before_ms": loadgen.summarize(before)["p99_ms"],
               "p99_during_reload_ms": loadgen.summarize(during)["p99_ms"],
               "p99_switch_window_ms": loadgen.summarize(switch)["p99_ms"],
               "max_during_reload_ms": loadgen.summarize(during)["max_ms"]}
        res["timeline"] = {"t": list(starts)[::max(1, len(starts) // 20000)],
                           "ms": [x * 1e3 for x in list(lats)[::max(1, len(lats) // 20000)]]}
        self.results["scenarios"]["reload"] = res
        for e in events:
            log(f"  reload {e['label']}: {e['end'] - e['start']:.2f} s, ok={e['ok']}, "
                f"then serving {e['serving_after']!r}")
        log(f"  hot reload under load: {result['requests']} requests, failed {failed}, "
            f"p99 before {res['p99_before_ms']:.2f} ms, during {res['p99_during_reload_ms']:.2f}"
            f" ms, switch window {res['p99_switch_window_ms']:.2f} ms")
        self.row("hot reload under load (c16)", "failed requests", failed, 0, "must be 0",
                 "lower")
        self.row("hot reload under load (c16)", "p99 ms during reload", res["p99_during_reload_ms"],
                 res["p99_before_ms"], "p99 before reload", "lower")
        self.row("hot reload under load (c16)", "p99 ms switch +-0.5 s",
                 res["p99_switch_window_ms"], res["p99_before_ms"], "p99 before reload", "lower")
        expected = ["Hello again!", "Hello, World!"]
        complete = (res["completed_reloads"] == 2 and
                    [e.get("serving_after") for e in events] == expected)
        self.target("hot reload: 0 failed requests", failed, "== 0",
                    failed == 0 and complete,
                    "" if complete else f"{res['completed_reloads']}/2 reloads completed; serving "
                    f"{[e.get('serving_after') for e in events]}, expected {expected}")

    def scenario_memory(self):
        gproc, client, gurl, _ = self.ensure_gateway()
        state = client.endpoint("hello")
        workers = [w["pid"] for w in (state.get("runtime") or {}).get("workers", [])]
        if not workers:
            workers = [p for p in descendants(gproc.pid) if p != gproc.pid]
        target = 5_000 if self.args.quick else 100_000
        cap = 5.0 if self.args.quick else 80.0
        loadgen.run(gurl + "/hello", tool=self.tool, connections=32, duration=1)  # warm
        rss_before = rss_bytes(gproc.pid)
        done, started = 0, time.monotonic()
        while done < target and time.monotonic() - started < cap:
            chunk = min(10.0, cap - (time.monotonic() - started))
            if chunk < 1:
                break
            r = loadgen.run(gurl + "/hello", tool=self.tool, connections=32, duration=chunk,
                            max_requests=target - done)
            done += r["requests"]
        rss_after = rss_bytes(gproc.pid)
        worker_rss = [rss_bytes(p) for p in workers]
        tproc, turl = self.start_tornado()
        try:
            t_before = rss_bytes(tproc.pid)
            loadgen.run(turl + "/hello", tool=self.tool, connections=32, duration=1)
            t_after = rss_bytes(tproc.pid)
        finally:
            self.procs.stop(tproc)
        res = {"requests": done, "seconds": time.monotonic() - started,
               "gateway_rss_before_mib": rss_before / MiB, "gateway_rss_after_mib": rss_after / MiB,
               "gateway_rss_growth_mib": (rss_after - rss_before) / MiB,
               "worker_rss_mib": [w / MiB for w in worker_rss],
               "tornado_rss_mib": t_after / MiB, "tornado_rss_before_mib": t_before / MiB}
        self.results["scenarios"]["memory"] = res
        log(f"  memory: {done} requests; gateway RSS {rss_before / MiB:.1f} -> "
            f"{rss_after / MiB:.1f} MiB; worker RSS "
            f"{', '.join(f'{w / MiB:.1f}' for w in worker_rss)} MiB")
        self.row(f"memory after {done // 1000}k requests", "gateway RSS MiB", rss_after / MiB,
                 t_after / MiB, "Tornado hello RSS", "lower")
        self.row(f"memory over {done // 1000}k requests", "gateway RSS growth MiB",
                 res["gateway_rss_growth_mib"], 10.0, "budget 10 MiB", "lower")
        if worker_rss:
            self.row("memory", "hello worker RSS MiB", max(worker_rss) / MiB, 5.0,
                     "budget 5 MiB", "lower")
        note = "" if done >= 100_000 else f"only {done} requests in the {cap:g} s cap"
        self.target("gateway RSS growth <= 10 MiB over 100k requests",
                    round(res["gateway_rss_growth_mib"], 2), "<= 10",
                    res["gateway_rss_growth_mib"] <= 10 if done >= 100_000 else None, note)
        if worker_rss:
            self.target("worker RSS for hello <= 5 MiB", round(max(worker_rss) / MiB, 2), "<= 5",
                        max(worker_rss) / MiB <= 5)

    # -- the shared gateway --------------------------------------------------------------

    def ensure_gateway(self):
        if self.gateway is None or self.gateway[0].poll() is not None:
            log("  starting gateway")
            proc, client, url, data_dir = self.start_gateway()
            self.deploy(client, "hello", "GET", "/hello", "hello.rs")
            self.procs.adopt_descendants(proc)
            self.gateway = (proc, client, url, data_dir)
        return self.gateway

    # -- driver --------------------------------------------------------------------------

    def run(self) -> int:
        only = set(self.args.only.split(",")) if self.args.only else set(SCENARIOS)
        skip = set(self.args.skip.split(",")) if self.args.skip else set()
        if self.args.quick:
            skip |= QUICK_SKIP
        started = time.monotonic()
        self.results["meta"] = {
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "quick": self.args.quick, "loadgen": self.tool, "duration_per_load": self.duration,
            "profile": self.args.profile, "cpus": os.cpu_count(),
            "loadavg_before": os.getloadavg(), "python": platform.python_version(),
            "commit": _git_commit()}
        self.results["meta"]["pinned"] = (
            f"servers on CPU {sorted(self.server_cpus)}, load generator on CPU "
            f"{sorted(self.load_cpus)}" if self.pinned else "nothing pinned")
        if self.pinned:
            os.sched_setaffinity(0, self.load_cpus)  # wrk and the Python generator inherit it
        log(f"edgebook bench: load generator {self.tool}, {self.duration:g} s per load, "
            f"handlers built {self.args.profile}, load average {os.getloadavg()[0]:.2f}, "
            f"{self.results['meta']['pinned']}")
        try:
            for name in SCENARIOS:
                if name not in only or name in skip:
                    if name in skip and name in only:
                        self.results["skipped"].setdefault(name, "skipped (--quick or --skip)")
                    continue
                log(f"[{name}]")
                t = time.monotonic()
                try:
                    getattr(self, f"scenario_{name}")()
                except Exception as exc:  # noqa: BLE001 - report and go on
                    traceback.print_exc()
                    self.results["skipped"][name] = f"failed: {exc!r}"
                    log(f"  FAILED: {exc!r}")
                self.results.setdefault("scenario_seconds", {})[name] = time.monotonic() - t
        finally:
            self.procs.close()
            shutil.rmtree(self.tmp, ignore_errors=True)
        self.results["meta"]["seconds"] = time.monotonic() - started
        self.results["meta"]["loadavg_after"] = os.getloadavg()
        self.results["meta"]["gateway_launch"] = self.results.pop("gateway_launch", None)
        path = self.out / "results.json"
        path.write_text(json.dumps(self.results, indent=2, default=_json_default))
        from bench import report
        log("")
        log(report.table(self.results))
        log(f"affinity: {self.results['meta']['pinned']}")
        try:
            plots = report.plots(self.results, self.out)
            log("plots: " + ", ".join(str(p) for p in plots))
        except Exception as exc:  # noqa: BLE001
            log(f"plots failed: {exc!r}")
        log(f"results: {path}  ({self.results['meta']['seconds']:.0f} s)")
        return 0


def _main_cpu_per_request(result: dict) -> float | None:
    """CPU of the gateway process alone (not its workers) per request."""
    if not result.get("requests"):
        return None
    return result["main_process_cpu_s"] / result["requests"] * 1e6


def _combine(runs: list[dict]) -> dict:
    out = dict(runs[0])
    for key in ("requests", "ok", "non2xx", "errors", "duration", "server_cpu_s",
                "loadgen_cpu_s"):
        out[key] = sum(r.get(key) or 0 for r in runs)
    for key in ("p50_ms", "p90_ms", "p99_ms"):
        out[key] = sum(r[key] for r in runs) / len(runs)
    out["max_ms"] = max(r["max_ms"] for r in runs)
    out["rps"] = out["requests"] / out["duration"] if out["duration"] else math.nan
    out["main_process_cpu_s"] = sum(r.get("main_process_cpu_s") or 0 for r in runs)
    out["server_cpu_us_per_req"] = (out["server_cpu_s"] / out["requests"] * 1e6
                                    if out["requests"] else math.nan)
    out["loadgen_cpu_us_per_req"] = (out["loadgen_cpu_s"] / out["requests"] * 1e6
                                     if out["requests"] else math.nan)
    out["halves"] = runs
    return out


def _json_default(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _git_commit() -> str | None:
    with contextlib.suppress(Exception):
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True, timeout=5).stdout.strip() or None
    return None


KG_NOTEBOOK = {
    "nbformat": 4, "nbformat_minor": 5,
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                "language": "python"}},
    "cells": [
        {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
         "id": "setup", "source": ["import json"]},
        {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
         "id": "hello",
         "source": ["# GET /hello\n",
                    "print(json.dumps({'message': 'Hello, World!', 'path': '/hello', "
                    "'method': 'GET'}))"]},
    ],
}

ASYNCIO_SERVER = r"""
import asyncio
BODY = b'{"message": "Hello, World!"}'
RESP = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
class P(asyncio.Protocol):
    def connection_made(self, t): self.t = t; self.buf = b""
    def data_received(self, d):
        self.buf += d
        while b"\r\n\r\n" in self.buf:
            _, self.buf = self.buf.split(b"\r\n\r\n", 1)
            self.t.write(RESP)
async def main():
    server = await asyncio.get_running_loop().create_server(P, "127.0.0.1", 0)
    print("PORT", server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="under a minute: short loads")
    parser.add_argument("--duration", type=float, help="seconds per load (default 5, quick 1)")
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--profile", choices=("dev", "release"), default="release",
                        help="build profile of the benchmark handlers")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(SCENARIOS)}")
    parser.add_argument("--skip", help="comma-separated scenarios to skip")
    parser.add_argument("--out", default=str(HERE / "out"))
    parser.add_argument("--pin", choices=("auto", "off"), default="auto",
                        help="auto: with 2+ CPUs, servers on the first, the load generator "
                             "on the second (except the 2-process scenario)")
    args = parser.parse_args(argv)
    if args.duration is not None and not 0.5 <= args.duration <= 60:
        parser.error("--duration must be between 0.5 and 60 seconds")
    return Bench(args).run()


if __name__ == "__main__":
    sys.exit(main())
