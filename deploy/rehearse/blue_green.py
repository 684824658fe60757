"""A blue/green rollout rehearsed for real on one machine (run by blue-green.sh).

HAProxy on loopback stands in for the ALB: it health-checks every replica on
`/health/ready` and is steered through its runtime API (a stats socket), the way CodeDeploy
steers an ALB's target groups. Behind it:

* blue: two replicas of this tree, installed and started through appspec.yml's hooks in
  process mode (tests/deploy/codedeploy.py runs them as the CodeDeploy agent does);
* one MariaDB database and one moto S3 bucket, shared by every replica;
* keep-alive clients (harness/load.py's submissions and reads) for the whole rollout.

Then, with the load running:

0. a *bad* green fleet (its release's migration fails) is deployed; its ValidateService
   fails, so it never gets traffic and blue keeps serving; it is stopped again;
1. the green fleet, a different revision (this tree plus an additive migration, 0005, that
   adds a nullable column, and its own version string), is installed and started through
   the hooks (ApplicationStop, BeforeInstall, ApplicationStart, ValidateService);
2. ValidateService passes on both green replicas;
3. traffic moves: green leaves maintenance, HAProxy's checks must see it UP, ...
4. ... blue is drained (no new requests; those in flight finish) for the drain delay;
5. blue is stopped through ApplicationStop.

Afterwards the load stops and harness/load.py's audit compares the database with what
the clients were told. The report (stdout, and --json) has each phase's duration, every
status the clients saw, HAProxy's own counters and the audit; the exit status is 1 unless
no request failed, nothing answered 5xx, the audit holds, the bad green got no request and
the clients saw green's version after the move.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import hashlib
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import boto3  # noqa: E402
import httpx  # noqa: E402

from harness.load import Tally, audit, client_loop  # noqa: E402
from harness.scratch import free_port, scratch_mysql_database  # noqa: E402
from tests.deploy.codedeploy import AS_ROOT, RUNAS, Instance, build_revision  # noqa: E402

HERE = Path(__file__).resolve().parent
GREEN_VERSION_SUFFIX = "+green"
BACKEND = "fleet"
AWS = {"AWS_ACCESS_KEY_ID": "rehearsal", "AWS_SECRET_ACCESS_KEY": "rehearsal"}


# ---- the ALB stand-in ----


HAPROXY_CONFIG = """\
global
    stats socket {socket} mode 600 level admin
    maxconn 4096

defaults
    mode http
    option http-keep-alive
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 30s
    # Like an ALB: no retry of a request on another target.
    retries 0

frontend alb
    bind 127.0.0.1:{port}
    default_backend {backend}

backend {backend}
    balance roundrobin
    option httpchk GET /health/ready
    http-check expect status 200
    default-server inter {check_ms}ms fastinter {check_ms}ms downinter {check_ms}ms rise 2 fall 2
{servers}
"""


@dataclass
class HAProxy:
    """HAProxy in the foreground, and its runtime API."""

    workdir: Path
    servers: dict[str, int]  # name -> port; names starting with "green" start disabled
    check_ms: int
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> Path:
        return self.workdir / "haproxy.sock"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        lines = [
            f"    server {name} 127.0.0.1:{port} check"
            + (" disabled" if name.startswith("green") else "")
            for name, port in self.servers.items()
        ]
        config = self.workdir / "haproxy.cfg"
        config.write_text(
            HAPROXY_CONFIG.format(
                socket=self.socket_path,
                port=self.port,
                backend=BACKEND,
                check_ms=self.check_ms,
                servers="\n".join(lines),
            )
        )
        check = subprocess.run(["haproxy", "-c", "-f", str(config)], capture_output=True)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy rejects its config: {check.stderr.decode()}")
        log = open(self.workdir / "haproxy.log", "wb")  # noqa: SIM115 - lives with the process
        self.process = subprocess.Popen(
            ["haproxy", "-db", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 20
        while not self.socket_path.exists() or not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"haproxy did not start: see {self.workdir / 'haproxy.log'}")
            time.sleep(0.05)

    def _answers(self) -> bool:
        try:
            self.command("show info")
        except OSError:
            return False
        return True

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def command(self, line: str) -> str:
        """One runtime-API command (the socket answers and closes)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(self.socket_path))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def set_state(self, server: str, state: str) -> None:
        """state: ready | drain | maint (what CodeDeploy's register/deregister does)."""
        answer = self.command(f"set server {BACKEND}/{server} state {state}").strip()
        if answer:
            raise RuntimeError(f"haproxy: set server {server} state {state}: {answer}")

    def stats(self) -> dict[str, dict[str, str]]:
        """`show stat` rows by server name (and FRONTEND/BACKEND), as strings."""
        text = self.command("show stat").lstrip("# ")
        rows = csv.DictReader(io.StringIO(text))
        return {row["svname"]: row for row in rows if row["pxname"] in (BACKEND, "alb")}

    def wait(
        self, what: str, check: Callable[[dict[str, dict[str, str]]], bool], timeout: float
    ) -> None:
        deadline = time.monotonic() + timeout
        while not check(stats := self.stats()):
            if time.monotonic() > deadline:
                summary = {name: row["status"] for name, row in stats.items()}
                raise RuntimeError(f"haproxy: {what} not within {timeout}s: {summary}")
            time.sleep(0.05)


# ---- the S3 stand-in ----


@contextmanager
def moto_s3(workdir: Path) -> Iterator[str]:
    """moto's S3 server in its own process with one bucket; yields its endpoint."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    moto = Path(sys.executable).with_name("moto_server")
    with open(workdir / "moto.log", "wb") as log:
        process = subprocess.Popen(
            [str(moto), "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **AWS},
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{endpoint}/moto-api/", timeout=1)
                break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=AWS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=AWS["AWS_SECRET_ACCESS_KEY"],
        )
        client.create_bucket(Bucket="hollang-rehearsal")
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=10)


# ---- revisions and instances ----


def make_revisions(workdir: Path) -> dict[str, Path]:
    """blue: this tree as CI bundles it; green: plus migration 0005 (expand) and its own
    version; bad: plus a migration that fails, so its service never gets ready."""
    revisions = {}
    for name in ("blue", "green", "bad"):
        target = workdir / f"revision-{name}"
        build_revision(target)
        revisions[name] = target
    for name in ("green", "bad"):
        versions = revisions[name] / "db" / "migrations" / "versions"
        shutil.copy(HERE / "migrations" / f"0005_{name}.py", versions / f"0005_{name}.py")
        init = revisions[name] / "server" / "__init__.py"
        init.write_text(
            re.sub(
                r'^__version__ = "([^"]+)"',
                rf'__version__ = "\1{GREEN_VERSION_SUFFIX}-{name}"',
                init.read_text(),
                count=1,
                flags=re.MULTILINE,
            )
        )
    return revisions


def blue_version() -> str:
    import server

    return server.__version__


def make_instance(
    workdir: Path, name: str, revision: Path, deployment_id: str, releases: Path
) -> Instance:
    """One replica: its own deploy home and config; the release venvs are shared by every
    replica here (on EC2 each instance installs its own), so each release installs once."""
    root = workdir / name
    home = root / "home"
    home.mkdir(parents=True)
    (home / "releases").symlink_to(releases)
    if AS_ROOT:
        shutil.chown(home, RUNAS)
    return Instance(root, revision, home, root / "hollang.env", deployment_id=deployment_id)


def configure(
    instance: Instance, port: int, database_url: str, s3: str, ready_timeout: int, wheels: Path
) -> None:
    instance.configure(
        HOLLANG_DEPLOY_MODE="process",
        HOLLANG_DEPLOY_HOME=str(instance.home),
        HOLLANG_HOST="127.0.0.1",
        HOLLANG_PORT=str(port),
        HOLLANG_WORKERS="1",
        HOLLANG_DATABASE_URL=database_url,
        HOLLANG_DEPLOY_READY_TIMEOUT=str(ready_timeout),
        HOLLANG_DEPLOY_STOP_TIMEOUT="30",
        HOLLANG_S3_BUCKET="hollang-rehearsal",
        HOLLANG_S3_ENDPOINT_URL=s3,
        HOLLANG_S3_REGION="us-east-1",
        HOLLANG_LOG_LEVEL="WARNING",
        # Offline from the wheelhouse; and byte-compiling every installed module is most of
        # an install's CPU, so the service compiles what it imports on first start instead.
        HOLLANG_DEPLOY_PIP_ARGS=f"--no-compile --no-index --find-links {wheels}",
        **AWS,
    )


def wheelhouse(revision: Path) -> Path:
    """Every wheel a release needs (and its build backend), downloaded once per machine
    and dependency set: installs from it are offline, so an install costs unpacking only.
    (pip's own cache does not help here: the downloads through this machine's proxy are
    not cacheable, so every venv fetched every wheel again.)"""
    house = Path(os.environ.get("HOLLANG_REHEARSE_WHEELS", "/var/tmp/hollang-rehearse-wheels"))
    house.mkdir(parents=True, exist_ok=True)
    locked = revision / "requirements.txt"
    digest = hashlib.sha256(locked.read_bytes()).hexdigest()[:16]
    stamp = house / f".complete-{digest}"
    if not stamp.exists():
        pip = [sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(house)]
        subprocess.run(
            [*pip, "--require-hashes", "--no-deps", "-r", str(locked)], check=True, timeout=900
        )
        subprocess.run(
            [*pip, "setuptools>=68", "wheel"],
            check=True,
            timeout=900,
        )
        stamp.touch()
    return house


def run_hooks(instance: Instance, events: tuple[str, ...]) -> tuple[bool, str]:
    """The events in order, as the agent runs them; stops at the first failure."""
    output = []
    for event in events:
        result = instance.hook(event)
        output.append(
            f"--- {instance.root.name} {event}: exit {result.returncode}\n{result.output}"
        )
        if result.returncode != 0:
            return False, "".join(output)
    return True, "".join(output)


INSTALL = ("ApplicationStop", "BeforeInstall")
START = ("ApplicationStart",)
VALIDATE = ("ValidateService",)


# ---- the load ----


class Load:
    """Keep-alive clients through the load balancer until stop(); plus a prober of /info
    that records which version answered when."""

    def __init__(self, url: str, clients: int, pause: float) -> None:
        self.url = url
        self.clients = clients
        self.pause = pause
        self.tally = Tally()
        self.versions: list[tuple[float, str]] = []  # (seconds since start, version)
        self.info_errors: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self.started = 0.0
        self.elapsed = 0.0

    def start(self) -> None:
        self.started = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=120)
        if self._thread.is_alive():
            raise RuntimeError("the load did not finish within 120 s of being stopped")
        self.elapsed = time.monotonic() - self.started

    async def _run(self) -> None:
        limits = httpx.Limits(
            max_connections=self.clients + 1, max_keepalive_connections=self.clients + 1
        )
        async with httpx.AsyncClient(base_url=self.url, limits=limits, timeout=60) as client:
            await asyncio.gather(
                *(self._client(client, seed) for seed in range(self.clients)),
                self._prober(client),
            )

    async def _client(self, client: httpx.AsyncClient, seed: int) -> None:
        rounds = 0
        while not self._stop.is_set():
            # One cycle of load.py's client (a submission, sometimes a read and a survey, or
            # the ranking), then a pause: steady traffic that leaves the installs some CPU.
            rounds += 1
            await client_loop(
                client, self.tally, seed * 100_003 + rounds, time.monotonic() + 0.01, None
            )
            await asyncio.sleep(self.pause)

    async def _prober(self, client: httpx.AsyncClient) -> None:
        seen = None
        while not self._stop.is_set():
            try:
                response = await client.get("/info")
                version = response.json()["data"]["service"]["version"]
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                self.info_errors[type(exc).__name__] += 1
            else:
                if response.status_code != 200:
                    self.info_errors[f"HTTP {response.status_code}"] += 1
                elif version != seen:
                    self.versions.append((round(time.monotonic() - self.started, 2), version))
                    seen = version
            await asyncio.sleep(0.1)


# ---- the rehearsal ----


@dataclass
class Phases:
    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        print(f"rehearsal: {name} ...", flush=True)
        try:
            yield
        finally:
            self.seconds[name] = round(time.monotonic() - started, 2)
            print(f"rehearsal: {name}: {self.seconds[name]} s", flush=True)


def fleet_up(names: list[str]) -> Callable[[dict[str, dict[str, str]]], bool]:
    return lambda stats: all(stats[name]["status"] == "UP" for name in names)


def rehearse(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    phases = Phases()
    blue_names, green_names = ["blue1", "blue2"], ["green1", "green2"]
    ports = {name: free_port() for name in blue_names + green_names}
    releases = workdir / "releases"
    releases.mkdir()
    if AS_ROOT:
        shutil.chown(releases, RUNAS)
    report: dict[str, Any] = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    with ExitStack() as stack:
        database_url = stack.enter_context(scratch_mysql_database(args.mysql_url, "rehearse_"))
        s3 = stack.enter_context(moto_s3(workdir))
        with phases.phase("bundle the blue, green and bad-green revisions"):
            revisions = make_revisions(workdir)
        with phases.phase("wheelhouse (downloads only when the dependencies changed)"):
            wheels = wheelhouse(revisions["blue"])
        haproxy = HAProxy(workdir, ports, check_ms=args.check_ms)
        haproxy.start()
        stack.callback(haproxy.stop)

        def fleet(
            colour: str, revision: str, deployment_id: str, ready_timeout: int
        ) -> list[Instance]:
            names = blue_names if colour == "blue" else green_names
            instances = []
            for name in names:
                instance = make_instance(
                    workdir / deployment_id, name, revisions[revision], deployment_id, releases
                )
                configure(instance, ports[name], database_url, s3, ready_timeout, wheels)
                stack.callback(lambda i=instance: i.hook("ApplicationStop"))
                instances.append(instance)
            return instances

        def deploy(instances: list[Instance], events: tuple[str, ...]) -> bool:
            for instance in instances:
                ok, output = run_hooks(instance, events)
                if args.verbose or not ok:
                    print(output, flush=True)
                if not ok:
                    return False
            return True

        blue = fleet("blue", "blue", "d-BLUE0001", ready_timeout=120)
        with phases.phase("blue: install, start and validate two replicas (before the load)"):
            if not deploy(blue, INSTALL + START + VALIDATE):
                raise RuntimeError("the blue fleet did not deploy")
            haproxy.wait("blue UP", fleet_up(blue_names), timeout=30)

        load = Load(haproxy.url, args.clients, args.pause)
        load.start()
        try:
            time.sleep(args.settle)

            bad = fleet("green", "bad", "d-BADGREEN1", ready_timeout=args.bad_ready_timeout)
            with phases.phase("bad green: install, start, ValidateService (must fail)"):
                bad_validated = deploy(bad[:1], INSTALL + START + VALIDATE)
            stats = haproxy.stats()
            report["bad_green"] = {
                "validate_service_passed": bad_validated,
                "requests_it_received": sum(int(stats[name]["stot"]) for name in green_names),
                "haproxy_status": {name: stats[name]["status"] for name in green_names},
            }
            with phases.phase("bad green: ApplicationStop"):
                deploy(bad[:1], ("ApplicationStop",))
            time.sleep(args.settle)

            green = fleet("green", "green", "d-GREEN0001", ready_timeout=120)
            with phases.phase("1. green: ApplicationStop + BeforeInstall (install)"):
                if not deploy(green, INSTALL):
                    raise RuntimeError("green did not install")
            with phases.phase(
                "1. green: ApplicationStart (launches; serve migrates to 0005 first)"
            ):
                if not deploy(green, START):
                    raise RuntimeError("green did not start")
            with phases.phase("2. green: ValidateService"):
                if not deploy(green, VALIDATE):
                    raise RuntimeError("green failed ValidateService")
            with phases.phase("3. move traffic: green registered, HAProxy sees it UP"):
                for name in green_names:
                    haproxy.set_state(name, "ready")
                haproxy.wait("green UP", fleet_up(green_names), timeout=30)
            with phases.phase("4. drain blue (deregistration delay)"):
                for name in blue_names:
                    haproxy.set_state(name, "drain")
                time.sleep(args.drain_delay)
                haproxy.wait(
                    "blue drained",
                    lambda stats: all(stats[name]["scur"] == "0" for name in blue_names),
                    timeout=30,
                )
                for name in blue_names:
                    haproxy.set_state(name, "maint")
            with phases.phase("5. blue: ApplicationStop"):
                if not deploy(blue, ("ApplicationStop",)):
                    raise RuntimeError("blue's ApplicationStop failed")
            time.sleep(args.settle)
        finally:
            load.stop()
        stats = haproxy.stats()
        report |= result(
            load, audit(database_url, load.tally), stats, phases, blue_names + green_names
        )
    return report


def result(
    load: Load,
    checks: dict[str, Any],
    stats: dict[str, dict[str, str]],
    phases: Phases,
    servers: list[str],
) -> dict[str, Any]:
    tally = load.tally
    total = sum(tally.statuses.values())
    columns = (
        "stot",
        "hrsp_2xx",
        "hrsp_4xx",
        "hrsp_5xx",
        "econ",
        "eresp",
        "wretr",
        "wredis",
        "status",
    )
    return {
        "phases_seconds": phases.seconds,
        "rollout_seconds": round(sum(v for k, v in phases.seconds.items() if k[0].isdigit()), 2),
        "load": {
            "clients": load.clients,
            "seconds": round(load.elapsed, 1),
            "requests": total,
            "acknowledged_posts": len(tally.acked),
            "statuses": dict(sorted(tally.statuses.items())),
            "transport_errors": dict(tally.errors),
            "info_probe_errors": dict(load.info_errors),
            "versions_seen": load.versions,
        },
        "haproxy": {
            name: {column: stats[name][column] for column in columns}
            for name in [*servers, "FRONTEND"]
            if name in stats
        },
        "checks": {name: {"got": got, "want": want} for name, (got, want) in checks.items()},
    }


def problems(report: dict[str, Any], green_version: str) -> list[str]:
    found = [
        f"audit: {name}: got {check['got']}, want {check['want']}"
        for name, check in report["checks"].items()
        if check["got"] != check["want"]
    ]
    load = report["load"]
    failed = {k: v for k, v in load["statuses"].items() if not k.rsplit(" ", 1)[1].startswith("2")}
    if failed:
        found.append(f"non-2xx answers: {failed}")
    if load["transport_errors"] or load["info_probe_errors"]:
        found.append(f"failed requests: {load['transport_errors']} {load['info_probe_errors']}")
    if not load["acknowledged_posts"]:
        found.append("no submission was acknowledged: the load did not run")
    frontend_5xx = report["haproxy"]["FRONTEND"]["hrsp_5xx"]
    if frontend_5xx != "0":
        found.append(f"haproxy answered {frontend_5xx} 5xx")
    bad = report["bad_green"]
    if bad["validate_service_passed"]:
        found.append("the bad green fleet passed ValidateService")
    if bad["requests_it_received"]:
        found.append(f"the bad green fleet received {bad['requests_it_received']} requests")
    versions = [version for _, version in load["versions_seen"]]
    if not versions or versions[-1] != green_version:
        found.append(f"the clients never saw green ({green_version}) answer last: {versions}")
    return found


def print_summary(report: dict[str, Any]) -> None:
    print("\nrehearsal: phases (seconds)")
    for name, seconds in report["phases_seconds"].items():
        print(f"  {seconds:7.2f}  {name}")
    print(f"  {report['rollout_seconds']:7.2f}  rollout (1-5)")
    load = report["load"]
    print(
        f"rehearsal: load: {load['requests']} requests in {load['seconds']} s by {load['clients']} "
        f"keep-alive clients, {load['acknowledged_posts']} acknowledged submissions"
    )
    print(f"rehearsal: statuses {load['statuses']}; transport errors {load['transport_errors']}")
    print(f"rehearsal: versions seen through the load balancer: {load['versions_seen']}")
    print(f"rehearsal: bad green: {report['bad_green']}")
    for name, row in report["haproxy"].items():
        print(f"rehearsal: haproxy {name}: {row}")
    print("rehearsal: audit:")
    for name, check in report["checks"].items():
        mark = "ok " if check["got"] == check["want"] else "BAD"
        print(f"  {mark} {name}: {check['got']} (want {check['want']})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--mysql-url",
        default=os.environ.get(
            "HOLLANG_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/hollang"
        ),
        help="server (and base name) for the scratch database <base>_rehearse_<hex>",
    )
    parser.add_argument("--clients", type=int, default=8, help="keep-alive clients")
    parser.add_argument(
        "--pause", type=float, default=0.02, help="seconds each client waits between cycles"
    )
    parser.add_argument("--drain-delay", type=float, default=2.0, help="deregistration delay, s")
    parser.add_argument("--check-ms", type=int, default=250, help="HAProxy health-check interval")
    parser.add_argument("--settle", type=float, default=1.0, help="seconds of load between steps")
    parser.add_argument(
        "--bad-ready-timeout", type=int, default=8, help="the bad green's ValidateService bound, s"
    )
    parser.add_argument("--json", type=Path, help="write the report here too")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--verbose", action="store_true", help="print every hook's output")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="hollang-rehearse-"))
    workdir.chmod(0o755)  # the hooks run as the runas user
    try:
        report = rehearse(args, workdir)
    finally:
        if args.keep:
            print(f"rehearsal: work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    green_version = blue_version() + GREEN_VERSION_SUFFIX + "-green"
    report["problems"] = problems(report, green_version)
    print_summary(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    if report["problems"]:
        for problem in report["problems"]:
            print(f"REHEARSAL FAILED: {problem}")
        return 1
    print(f"REHEARSAL PASSED: rollout in {report['rollout_seconds']} s, zero failed requests")
    return 0


if __name__ == "__main__":
    sys.exit(main())
