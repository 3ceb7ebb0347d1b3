"""`csms` command line: serve, and provision stations, tokens and API tokens (also while
serving)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import re
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import replace
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING

from csms import audit, portfolios
from csms import log as logging_setup
from csms.api.auth import ROLES, new_token
from csms.clock import SystemClock
from csms.cluster.registry import Registry
from csms.config import Config, load
from csms.passwords import generate_password, hash_password
from csms.store import Store, open_database
from csms.store.api_tokens import ApiTokenRepo
from csms.store.portfolios import Portfolio
from csms.store.tokens import TOKEN_STATUSES

if TYPE_CHECKING:
    from csms.cluster.workers import Shared, WorkerArgv

# The CSMS itself (csms.app: the API, the engine, the scheduler) and the site files are
# imported where a command needs them: a one-shot command such as `tokens add` then
# starts in a fraction of the time.

TOKEN_TYPES = ("Central", "eMAID", "ISO14443", "ISO15693", "KeyCode", "Local", "MacAddress",
               "NoAuthorization")
DEFAULT_CONFIG = Path("config/csms.toml")
# Subcommands that packages built on csms add (`csms demo`): an entry point in this group
# names `register(subparsers)`, which adds a parser with `set_defaults(run=fn)`, where
# `fn(args) -> int`. Found at run time, so csms never imports what builds on it.
COMMANDS_GROUP = "csms.commands"


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML config file (default: config/csms.toml if present)")
    parser.add_argument("--data-dir", help="embedded PostgreSQL folder (default data/postgres)")
    parser.add_argument("--database-url", help="an existing PostgreSQL (or DATABASE_URL)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log at the config's level (default: only `serve` logs info "
                        "lines; other commands only warnings and errors)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="csms", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the CSMS")
    _common(serve)
    serve.add_argument("--host", help="address the OCPP server listens on "
                       "(default [server] host, 0.0.0.0)")
    serve.add_argument("--port", type=int, help="OCPP WebSocket port (default [server] "
                       "port, 9000)")
    serve.add_argument("--api-port", type=int, help="HTTP API port (default 8080, 0 = any)")
    serve.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                       help="processes sharing the ports (default: one per core); 1: one "
                       "process and no broker, as before")
    serve.add_argument("--broker-url", help="NATS of a cluster of nodes, e.g. nats://nats:4222 "
                       "(or CSMS_BROKER_URL); default with --workers > 1: one started here")
    serve.add_argument("--node", help="this machine's name in the cluster (default: host name)")
    serve.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)  # set by the parent

    status = sub.add_parser("status", help="the cluster: nodes, workers and their stations")
    _common(status)
    status.add_argument("--stations", action="store_true", help="list each station's worker")

    migrate = sub.add_parser("migrate", help="apply database migrations and exit")
    _common(migrate)

    stations = sub.add_parser("stations", help="provision charging stations")
    ssub = stations.add_subparsers(dest="action", required=True)
    add = ssub.add_parser("add", help="add a station, or set its password")
    _common(add)
    add.add_argument("station_id", help="the station's identity, as in its URL")
    pw = add.add_mutually_exclusive_group()
    pw.add_argument("--password", help="Basic auth password, 16-40 characters "
                    "(default: generate one and print it)")
    pw.add_argument("--no-password", action="store_true",
                    help="accept this station without authentication (development only)")
    pw.add_argument("--certificate", metavar="DIR",
                    help="Security Profile 3: write a key and a certificate for the station, "
                    "signed by the CSMS's CA, and the CSMS root to DIR; the station may then "
                    "connect only with its certificate")
    for name in ("list", "remove"):
        p = ssub.add_parser(name, help=f"{name} stations")
        _common(p)
        if name == "remove":
            p.add_argument("station_id", help="the station to remove")

    tokens = sub.add_parser("tokens", help="provision id tokens")
    tsub = tokens.add_subparsers(dest="action", required=True)
    tadd = tsub.add_parser("add", help="add or update a token")
    _common(tadd)
    tadd.add_argument("id_token", help="the token's idToken, e.g. an RFID card's UID")
    tadd.add_argument("--type", default="ISO14443", choices=TOKEN_TYPES,
                      help="IdTokenEnumType (default ISO14443)")
    tadd.add_argument("--status", default="Accepted", choices=TOKEN_STATUSES,
                      help="what an authorization answers (default Accepted)")
    tadd.add_argument("--group", help="groupIdToken: tokens of one group may stop each "
                      "other's transactions")
    tlist = tsub.add_parser("list", help="list tokens")
    _common(tlist)
    trm = tsub.add_parser("remove", help="remove a token")
    _common(trm)
    trm.add_argument("id_token", help="the token to remove")
    trm.add_argument("--type", choices=TOKEN_TYPES,
                     help="only the token of this type (default: any type)")

    api_tokens = sub.add_parser("api-tokens", help="tokens for the HTTP API")
    asub = api_tokens.add_subparsers(dest="action", required=True)
    aadd = asub.add_parser("add", help="make a token and print it (shown only this once)")
    _common(aadd)
    aadd.add_argument("name", help="who or what uses it, e.g. dashboard, dso-north")
    aadd.add_argument("--role", required=True, choices=list(ROLES),
                      help="what it may do: admin (everything), operator, grid (its nodes), "
                      "viewer (read only)")
    aadd.add_argument("--node", action="append", default=[],
                      help="SITE/NODE a grid token may see and limit (repeat for more)")
    aadd.add_argument("--portfolio", action="append", default=[],
                      help="a portfolio an aggregator token may see (repeat for more)")
    alist = asub.add_parser("list", help="list API tokens (names and roles, never tokens)")
    _common(alist)
    arm = asub.add_parser("remove", help="revoke an API token")
    _common(arm)
    arm.add_argument("name", help="the name it was added with")
    ca = sub.add_parser("ca", help="the CSMS's certificate authority (Security Profile 3)")
    csub = ca.add_subparsers(dest="action", required=True)
    server_cert = csub.add_parser(
        "server-cert", help="issue the CSMS's TLS certificates (RSA and EC) from its CA, so "
        "stations trust one root")
    _common(server_cert)
    server_cert.add_argument("hostnames", nargs="+", metavar="HOST",
                             help="names and addresses stations connect to")
    server_cert.add_argument("--out", required=True, metavar="DIR",
                             help="folder to write the keys and certificates to")
    pf = sub.add_parser("portfolios", help="sites (or nodes of sites) an aggregator pools")
    psub = pf.add_subparsers(dest="action", required=True)
    padd = psub.add_parser("add", help="make a portfolio of configured sites (audited)")
    _common(padd)
    padd.add_argument("portfolio_id", help="its id: letters, digits, . _ - (at most 64)")
    padd.add_argument("--name", required=True, help="what it is called")
    padd.add_argument("--operator", required=True, help="who operates the pooled sites")
    padd.add_argument("--member", action="append", required=True, metavar="SITE[/NODE]",
                      help="a configured site, or one node of it (repeat for more)")
    plist = psub.add_parser("list", help="list portfolios and their members")
    _common(plist)
    prm = psub.add_parser("remove", help="remove a portfolio; its sites stay (audited)")
    _common(prm)
    prm.add_argument("portfolio_id", help="the portfolio to remove")
    audit_cmd = sub.add_parser("audit", help="the tamper-evident log of dispatches and "
                               "portfolios (csms/audit.py)")
    ausub = audit_cmd.add_subparsers(dest="action", required=True)
    verify = ausub.add_parser("verify", help="check every entry's hash, link and signature; "
                              "exit 1 and name each problem if any")
    _common(verify)
    verify.add_argument("--public-key", metavar="PEM",
                        help="the log's public key (default: audit.pub in the audit folder)")
    verify.add_argument("--head", metavar="SEQ:HASH",
                        help="a head noted earlier with `csms audit head`: it must still be "
                        "there (finds entries removed from the end)")
    head = ausub.add_parser("head", help="print the newest entry's SEQ:HASH, to note down")
    _common(head)
    _add_installed_commands(sub)
    return parser


def _add_installed_commands(sub: argparse._SubParsersAction) -> None:
    for entry in entry_points(group=COMMANDS_GROUP):
        try:
            entry.load()(sub)
        except Exception as exc:  # a broken add-on must not take `csms serve` down with it
            print(f"warning: command {entry.name} unavailable: {exc!r}", file=sys.stderr)


def config_from(args: argparse.Namespace) -> Config:
    path = args.config or (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)
    return load(
        path,
        database_url=args.database_url,
        data_dir=args.data_dir,
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        api_port=getattr(args, "api_port", None),
        broker_url=getattr(args, "broker_url", None),
    )


async def _with_store(config: Config, job: Callable[[Store], Awaitable[int]]) -> int:
    db = await open_database(config.database.url, Path(config.database.data_dir),
                             min_size=1, max_size=2)
    try:
        return await job(Store(db.pool))
    finally:
        await db.close()


async def _serve(config: Config) -> int:
    from csms.app import Csms

    csms = await Csms.start(config)
    print(f"CSMS listening on ws://{config.server.host}:{csms.ocpp.port}/ocpp/<stationId>",
          flush=True)
    if csms.api is not None:
        print(f"HTTP API on http://{config.api.host}:{csms.api.port}/ (docs: /docs)", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await csms.stop()
    return 0


def _write(folder: Path, name: str, text: str, private: bool = False) -> Path:
    """A file in `folder` (made if missing); a private one (a key) readable by its owner
    only from the start."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if private:
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
    else:
        path.write_text(text)
    return path


async def _equip_for_profile_3(store: Store, config: Config, station_id: str, out: str) -> int:
    """`stations add ID --certificate DIR`: what a station needs for Security Profile 3."""
    clock = SystemClock()
    from csms.app import station_ca

    ca = station_ca(config, clock)
    key_pem, issued = ca.issue_station(station_id, clock.now())
    if await store.stations.get(station_id) is None:
        await store.stations.add(station_id, None, clock.now())
        print(f"added station {station_id}")
    await store.stations.set_security_profile(station_id, 3)
    await store.certificates.add(issued, source="cli", status="Accepted", now=clock.now())
    folder = Path(out)
    key = _write(folder, f"{station_id}.key", key_pem, private=True)
    cert = _write(folder, f"{station_id}.pem", issued.chain_pem)
    root = _write(folder, "csms-root.pem", ca.root_pem)
    print(f"station {station_id}: Security Profile 3, certificate serial {issued.serial}, "
          f"valid until {issued.not_after.isoformat(timespec='seconds')}")
    print(f"key: {key}\ncertificate: {cert}\nCSMS root: {root}")
    return 0


def _ca(args: argparse.Namespace, config: Config) -> int:
    clock = SystemClock()
    from csms.app import station_ca

    ca = station_ca(config, clock)
    folder = Path(args.out)
    for kind, rsa_key in (("rsa", True), ("ec", False)):
        key_pem, chain_pem = ca.issue_server(args.hostnames, clock.now(), rsa_key=rsa_key)
        _write(folder, f"server-{kind}.key", key_pem, private=True)
        _write(folder, f"server-{kind}.pem", chain_pem)
    root = _write(folder, "csms-root.pem", ca.root_pem)
    print(f"wrote {folder}/server-rsa.pem, server-rsa.key, server-ec.pem, server-ec.key")
    print("[server] tls_cert/tls_key: the RSA pair; tls_cert_2/tls_key_2: the EC pair")
    print(f"stations trust {root} (InstallCertificate CSMSRootCertificate)")
    return 0


def _stations(args: argparse.Namespace, config: Config) -> Callable[[Store], Awaitable[int]]:
    now = SystemClock().now()

    async def job(store: Store) -> int:
        if args.action == "add" and args.certificate:
            return await _equip_for_profile_3(store, config, args.station_id, args.certificate)
        if args.action == "add":
            password, hashed = None, None
            if args.password:
                if not 16 <= len(args.password) <= 40:
                    print("error: a password must have 16 to 40 characters", file=sys.stderr)
                    return 2
                hashed = hash_password(args.password)
            elif not args.no_password:
                password, hashed = generate_password()
            created = await store.stations.add(args.station_id, hashed, now)
            print(f"{'added' if created else 'updated'} station {args.station_id}")
            if password:
                print(f"password: {password}")
            station = await store.stations.get(args.station_id)
            if station is not None and (station.security_profile or 0) >= 3:
                print(f"note: {args.station_id} is on Security Profile 3 and connects only "
                      "with its certificate (A05); an admin lowers it with PUT "
                      "/api/stations/ID/security-profile", file=sys.stderr)
        elif args.action == "remove":
            if not await store.stations.remove(args.station_id):
                print(f"error: no station {args.station_id}", file=sys.stderr)
                return 1
            print(f"removed station {args.station_id}")
        else:
            print(f"{'station':<24} {'online':<7} {'boot':<9} {'auth':<11} last seen")
            for s in await store.stations.list():
                seen = s.last_seen.isoformat(timespec="seconds") if s.last_seen else "-"
                auth = "certificate" if s.security_profile == 3 else \
                    "password" if s.has_password else "none"
                print(f"{s.id:<24} {'yes' if s.online else 'no':<7} {s.boot_status or '-':<9} "
                      f"{auth:<11} {seen}")
        return 0

    return job


def _tokens(args: argparse.Namespace) -> Callable[[Store], Awaitable[int]]:
    now = SystemClock().now()

    async def job(store: Store) -> int:
        if args.action == "add":
            await store.tokens.add(args.id_token, args.type, now, status=args.status,
                                   group_id=args.group)
            print(f"token {args.id_token} ({args.type}) {args.status}")
        elif args.action == "remove":
            if not await store.tokens.remove(args.id_token, args.type, now):
                print(f"error: no token {args.id_token}", file=sys.stderr)
                return 1
            print(f"removed token {args.id_token}")
        else:
            print(f"{'token':<24} {'type':<16} status")
            for t in await store.tokens.list():
                print(f"{t.id_token:<24} {t.type:<16} {t.status}")
        return 0

    return job


def _portfolios(args: argparse.Namespace, config: Config
                ) -> Callable[[Store], Awaitable[int]]:
    now = SystemClock().now()
    actor = f"cli:{getpass.getuser()}"

    async def job(store: Store) -> int:
        if args.action == "list":
            print(f"{'id':<20} {'operator':<28} members")
            for p in await store.portfolios.list():
                members = ", ".join(m.site_id + (f"/{m.node}" if m.node else "")
                                    for m in p.members)
                print(f"{p.id:<20} {p.operator[:27]:<28} {members}")
            return 0
        key = audit.load_key(config.audit_dir())
        if args.action == "remove":
            if not await portfolios.remove(store, key, args.portfolio_id, actor, now):
                print(f"error: no portfolio {args.portfolio_id}", file=sys.stderr)
                return 1
            print(f"removed portfolio {args.portfolio_id}")
            return 0
        if not re.fullmatch(portfolios.PORTFOLIO_ID, args.portfolio_id):
            print("error: a portfolio id is 1-64 letters, digits, . _ -", file=sys.stderr)
            return 2
        try:
            from csms.sites import Sites

            sites = Sites.load(config.scheduler.sites, config.scheduler.tariffs_dir).models()
            wanted = portfolios.members(sites, [
                (m.partition("/")[0], m.partition("/")[2] or None) for m in args.member])
        except (OSError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        made = Portfolio(args.portfolio_id, args.name[:200], args.operator[:200], wanted,
                         actor, now)
        if not await portfolios.create(store, key, made, now):
            print(f"error: a portfolio {args.portfolio_id} exists", file=sys.stderr)
            return 1
        print(f"portfolio {made.id}: {len(made.members)} member(s)")
        return 0

    return job


def _audit(args: argparse.Namespace, config: Config) -> Callable[[Store], Awaitable[int]]:
    async def job(store: Store) -> int:
        entries = await store.audit.entries()
        if args.action == "head":
            print(f"{entries[-1].seq}:{entries[-1].hash.hex()}" if entries else "0:")
            return 0
        head = None
        if args.head:
            seq, _, digest = args.head.partition(":")
            try:
                head = (int(seq), bytes.fromhex(digest))
            except ValueError:
                print("error: --head is SEQ:HASH as `csms audit head` prints it",
                      file=sys.stderr)
                return 2
        try:
            key = audit.load_public_key(Path(args.public_key) if args.public_key
                                        else config.audit_dir() / "audit.pub")
        except (OSError, ValueError) as exc:
            print(f"error: public key: {exc}", file=sys.stderr)
            return 2
        problems = audit.verify(entries, key, head)
        for problem in problems:
            print(problem)
        print(f"{len(entries)} entries, " + (f"{len(problems)} problem(s)" if problems
                                             else "chain intact"))
        return 1 if problems else 0

    return job


def _api_tokens(args: argparse.Namespace) -> Callable[[Store], Awaitable[int]]:
    now = SystemClock().now()

    async def job(store: Store) -> int:
        repo = ApiTokenRepo(store.pool)
        if args.action == "add":
            if args.role == "grid" and not args.node:
                print("error: a grid token needs at least one --node", file=sys.stderr)
                return 2
            if args.role == "aggregator" and not args.portfolio:
                print("error: an aggregator token needs at least one --portfolio",
                      file=sys.stderr)
                return 2
            token, hashed = new_token()
            if not await repo.add(args.name, args.role, hashed, now, tuple(args.node),
                                  tuple(args.portfolio)):
                print(f"error: an API token named {args.name} exists", file=sys.stderr)
                return 1
            print(f"API token {args.name} ({args.role}); keep it now, it is not shown again:")
            print(token)
        elif args.action == "remove":
            if not await repo.remove(args.name):
                print(f"error: no API token {args.name}", file=sys.stderr)
                return 1
            print(f"removed API token {args.name}")
        else:
            print(f"{'name':<24} {'role':<10} {'created':<26} scope")
            for t in await repo.list():
                print(f"{t.name:<24} {t.role:<10} "
                      f"{t.created_at.isoformat(timespec='seconds'):<26} "
                      f"{','.join(t.nodes + t.portfolios)}")
        return 0

    return job


async def _migrated(store: Store) -> int:
    print("database is up to date")
    return 0


def _log_level(args: argparse.Namespace, level: str) -> str:
    """`serve` logs at the config's level; a one-shot command only warns (its output is
    what it prints, not the database opening and migrating) unless asked with -v."""
    if args.command == "serve" or getattr(args, "verbose", False):
        return level
    quiet = ("warning", "error", "critical")
    return level if level.lower() in quiet else "warning"


def _as_worker(args: argparse.Namespace, config: Config) -> Config:
    """A process of `--workers N` (csms/cluster/workers.py starts it with --worker-index):
    it shares the ports, and plans its share of the sites (csms/scheduling/scheduler.py)."""
    cluster = replace(config.cluster, node=args.node or config.cluster.node)
    if args.worker_index is None:
        return replace(config, cluster=cluster)
    cluster = replace(cluster, worker=args.worker_index)
    return replace(config, cluster=cluster,
                   server=replace(config.server, reuse_port=True),
                   api=replace(config.api, reuse_port=True))


def _worker_argv(args: argparse.Namespace, config: Config) -> WorkerArgv:
    def argv(index: int, shared: Shared) -> list[str]:
        return [sys.executable, "-m", "csms.cli", "serve", "--workers", "1",
                "--worker-index", str(index), "--database-url", shared.database_url,
                "--broker-url", shared.broker_url, "--host", config.server.host,
                "--port", str(shared.port), "--api-port", str(shared.api_port),
                *(["--config", args.config] if args.config else []),
                *(["--node", args.node] if args.node else [])]
    return argv


async def _status(args: argparse.Namespace, store: Store) -> int:
    registry = Registry(store.pool)
    workers = await registry.workers()
    if not workers:
        print("no cluster workers registered (one process, or none running)")
    print(f"{'node':<20} {'worker':<7} {'pid':<8} {'stations':<9} last seen")
    for w in workers:
        print(f"{w.node:<20} {w.worker:<7} {w.pid:<8} {w.stations:<9} "
              f"{w.seen_at.isoformat(timespec='seconds')}")
    if args.stations:
        print(f"\n{'station':<24} {'node':<20} worker")
        for h in await registry.holdings():
            print(f"{h.station_id:<24} {h.node:<20} {h.worker}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if (run := getattr(args, "run", None)) is not None:
        return int(run(args))
    try:
        config = config_from(args)
    except (OSError, ValueError) as exc:
        print(f"error: config: {exc}", file=sys.stderr)
        return 2
    logging_setup.configure(_log_level(args, config.log.level), config.log.json)
    if args.command == "serve":
        config = _as_worker(args, config)
        if args.workers < 1 or args.workers > 256:
            print("error: --workers must be 1 to 256", file=sys.stderr)
            return 2
        if args.workers > 1 and args.worker_index is None:
            from csms.cluster.workers import run_workers

            return asyncio.run(run_workers(config, args.workers, _worker_argv(args, config),
                                           SystemClock(), lambda line: print(line, flush=True)))
        return asyncio.run(_serve(config))
    if args.command == "status":
        return asyncio.run(_with_store(config, lambda store: _status(args, store)))
    if args.command == "migrate":
        return asyncio.run(_with_store(config, _migrated))
    if args.command == "ca":
        return _ca(args, config)
    if args.command == "stations":
        return asyncio.run(_with_store(config, _stations(args, config)))
    jobs = {"tokens": _tokens, "api-tokens": _api_tokens,
            "audit": lambda a: _audit(a, config),
            "portfolios": lambda a: _portfolios(a, config)}
    job = jobs[args.command](args)
    return asyncio.run(_with_store(config, job))


if __name__ == "__main__":
    sys.exit(main())
