"""The WebSocket endpoint stations connect to: the handshake rules, then one Connection each.

Handshake (OCPP 2.0.1 Part 4 and block A): the identity is the last path segment; the station
must offer `ocpp2.0.1` or `ocpp2.1` (else HTTP 400, with the reason); Security Profile 1/2
Basic auth with username = identity (else HTTP 401); Security Profile 3 a client certificate
whose CN is the identity (another station's certificate: HTTP 403). A station never connects
with a lower profile than it has used (A05: HTTP 401). Unknown stations are refused unless
auto-registration is on. A second connection for an identity replaces the first.

Versions: RFC 6455 (4.1) has the client list its subprotocols "ordered by preference" and
the server select one of them, so the CSMS takes the first one the station offers that it
speaks: a station offering `ocpp2.1, ocpp2.0.1` gets 2.1, one offering them the other way
round 2.0.1. The connection's context and the station's row keep the version chosen.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ssl
import time
import weakref
from collections.abc import Sequence
from datetime import datetime
from http import HTTPStatus
from urllib.parse import unquote, urlsplit

import structlog
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from csms import metrics, tls
from csms.clock import Clock
from csms.config import ServerConfig
from csms.connection import Connection, Connections, Router, StationContext
from csms.events import EventBus, StationConnected, StationDisconnected
from csms.handshake_limits import AuthThrottle, raise_open_file_limit
from csms.passwords import PasswordChecker, hash_password
from csms.store import Store
from csms.store.stations import Admission

log = structlog.get_logger()

# subprotocol -> OCPP version (csms/ocpp/schemas.py's names)
SUBPROTOCOLS: dict[str, str] = {"ocpp2.0.1": "2.0.1", "ocpp2.1": "2.1"}
MAX_IDENTITY_LENGTH = 48
# Connections the kernel may hold before we accept them (capped by net.core.somaxconn).
# asyncio's default of 100 overflows when thousands of stations reconnect at once: the
# kernel drops their SYNs and each station loses 1-7 s in TCP retransmission back-off.
LISTEN_BACKLOG = 4096


def station_identity(path: str) -> str | None:
    segments = [s for s in urlsplit(path).path.split("/") if s]
    if not segments:
        return None
    identity = unquote(segments[-1])
    if len(identity) > MAX_IDENTITY_LENGTH or not identity.isprintable():
        return None
    return identity


def offered_subprotocols(request: Request) -> list[str]:
    return [
        p.strip() for value in request.headers.get_all("Sec-WebSocket-Protocol")
        for p in value.split(",") if p.strip()
    ]


def choose_subprotocol(offered: Sequence[str]) -> str | None:
    """The first subprotocol the station offers that the CSMS speaks (RFC 6455 4.1: the
    client's list is ordered by preference), or None."""
    return next((p for p in offered if p in SUBPROTOCOLS), None)


def _select_subprotocol(ws: ServerConnection, offered: Sequence[str]) -> str | None:
    return choose_subprotocol(offered)


def basic_credentials(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("Authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        username, sep, password = base64.b64decode(encoded.strip()).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (username, password) if sep else None


def _address(ws: ServerConnection) -> str:
    peer = ws.remote_address
    return str(peer[0]) if peer else "?"


class Presence:
    """Last-seen times, kept in memory and written in one statement every few seconds."""

    def __init__(self, store: Store, clock: Clock, interval_s: float = 5.0) -> None:
        self.store = store
        self.clock = clock
        self.interval_s = interval_s
        self._pending: dict[str, datetime] = {}

    def seen(self, station_id: str) -> None:
        self._pending[station_id] = self.clock.now()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.flush()

    async def flush(self) -> None:
        pending, self._pending = self._pending, {}
        try:
            await self.store.stations.touch(pending)
        except Exception as exc:  # the database may be restarting; try again next time
            log.warning("presence.flush_failed", error=str(exc))
            self._pending = pending | self._pending


class OcppServer:
    def __init__(
        self,
        config: ServerConfig,
        store: Store,
        clock: Clock,
        router: Router,
        connections: Connections,
        events: EventBus,
        client_cas: Sequence[str] = (),
    ) -> None:
        self.config = config
        self.client_cas = list(client_cas)  # PEM texts: CAs of station certificates (SP3)
        self.store = store
        self.clock = clock
        self.router = router
        self.connections = connections
        self.events = events
        self.passwords = PasswordChecker()
        self.presence = Presence(store, clock)
        # the handshake's station row, for the connection it admitted (one query, not two)
        self._admitted: weakref.WeakKeyDictionary[ServerConnection, str | None] = \
            weakref.WeakKeyDictionary()
        self.throttle = AuthThrottle(config.auth_free_failures,
                                     max_s=config.auth_lockout_max_s)
        self._handshaking = 0  # handshakes in progress (process_request running)
        self._server: Server | None = None
        self._presence_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        soft, hard = raise_open_file_limit()
        log.info("ocpp.open_file_limit", soft=soft, hard=hard)
        ssl_context = self._ssl_context()
        self._server = await serve(
            self._handle,
            self.config.host,
            self.config.port,
            subprotocols=list(SUBPROTOCOLS),  # type: ignore[arg-type]
            select_subprotocol=_select_subprotocol,  # type: ignore[arg-type]
            process_request=self._handshake,
            max_size=self.config.max_message_bytes,
            ping_interval=None,  # Connection pings, spread over the interval
            ssl=ssl_context,
            backlog=LISTEN_BACKLOG,
            reuse_port=self.config.reuse_port or None,
        )
        self._presence_task = asyncio.create_task(self.presence.run(), name="presence")
        log.info("ocpp.listening", host=self.config.host, port=self.port,
                 tls=ssl_context is not None)

    def _ssl_context(self) -> ssl.SSLContext | None:
        """Security Profiles 2 and 3: wss:// when a certificate is configured (csms/tls.py)."""
        c = self.config
        if not c.tls_cert:
            return None
        certificates = [(c.tls_cert, c.tls_key)]
        if c.tls_cert_2:
            certificates.append((c.tls_cert_2, c.tls_key_2))
        return tls.server_context(certificates, self.client_cas)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._presence_task:
            self._presence_task.cancel()
            await asyncio.gather(self._presence_task, return_exceptions=True)
        if self._server:
            self._server.close()
            await self._server.wait_closed()
        await self.presence.flush()

    # -- handshake -------------------------------------------------------------------------

    async def _handshake(self, ws: ServerConnection, request: Request) -> Response | None:
        """The caps first (cheap, no database), then the handshake's rules."""
        if (refusal := self._over_capacity(ws)) is not None:
            return refusal
        self._handshaking += 1
        try:
            return await self._admit(ws, request)
        finally:
            self._handshaking -= 1

    async def _admit(self, ws: ServerConnection, request: Request) -> Response | None:
        station_id = station_identity(request.path)
        if station_id is None:
            return self._refuse(ws, HTTPStatus.NOT_FOUND, "no_identity",
                                "the URL must end with the station identity (1-48 characters)")
        if choose_subprotocol(offered_subprotocols(request)) is None:
            return self._refuse(ws, HTTPStatus.BAD_REQUEST, "no_subprotocol",
                                "no supported subprotocol: this CSMS speaks "
                                + " and ".join(SUBPROTOCOLS), station_id)
        if (locked := self._locked(ws, station_id)) is not None:
            return locked
        credentials = basic_credentials(request)
        admission = await self.store.stations.admission(station_id)
        if admission is None:
            if not self.config.auto_register:
                return self._unauthorized(ws, station_id, "unknown_station")
            password = credentials[1] if credentials else None
            hashed = await asyncio.to_thread(hash_password, password) if password else None
            await self.store.stations.add(station_id, hashed, self.clock.now())
            log.warning("station.auto_registered", station_id=station_id)
            self._admitted[ws] = None
            return None
        refused = await self._authenticate(ws, station_id, credentials, admission)
        if refused is not None:
            return refused
        self._admitted[ws] = admission.boot_status
        return None

    async def _authenticate(
        self, ws: ServerConnection, station_id: str, credentials: tuple[str, str] | None,
        admission: Admission,
    ) -> Response | None:
        """Security Profiles 1-3 (A00) and the no-downgrade rule (A05): None if admitted.

        A client certificate (it chained to a trusted CA in the TLS handshake) must name this
        station as CN, and then is the station's credential (profile 3). Without one, the
        password is checked (profile 1, or 2 over TLS). The connection's profile must not
        be below the station's stored one; a higher one becomes the stored one.
        """
        required = admission.security_profile or 0
        certificate = tls.peer_certificate(ws.transport)
        if certificate is not None:
            if certificate.common_name != station_id:
                log.warning("handshake.certificate_mismatch", station_id=station_id,
                            certificate_cn=certificate.common_name)
                return self._refuse(ws, HTTPStatus.FORBIDDEN, "certificate_mismatch",
                                    "the client certificate is not this station's", station_id)
            profile = 3
        else:
            if required >= 3:
                return self._unauthorized(ws, station_id, "profile_downgrade")
            stored = admission.password_hash
            if stored is not None:  # None: provisioned without a password (profile 0)
                if credentials is None or credentials[0] != station_id:
                    return self._unauthorized(ws, station_id, "no_credentials")
                if not await self.passwords.check(station_id, credentials[1], stored):
                    return self._unauthorized(ws, station_id, "wrong_password")
                self.throttle.succeeded(station_id, _address(ws), time.monotonic())
            profile = 0 if stored is None else 2 if tls.is_tls(ws.transport) else 1
            if profile < required:
                return self._unauthorized(ws, station_id, "profile_downgrade")
        if profile > required or admission.security_profile is None:
            await self.store.stations.raise_security_profile(station_id, profile)
            if profile > required:
                log.info("station.security_profile_raised", station_id=station_id,
                         profile=profile, was=admission.security_profile)
        return None

    def _refuse(
        self, ws: ServerConnection, status: HTTPStatus, reason: str, text: str,
        station_id: str | None = None,
    ) -> Response:
        metrics.refused.labels(reason).inc()
        log.warning("handshake.refused", station_id=station_id, reason=reason,
                    status=int(status))
        return ws.respond(status, text + "\n")

    def _unauthorized(self, ws: ServerConnection, station_id: str, reason: str) -> Response:
        self._auth_failed(ws, station_id, reason)
        response = self._refuse(ws, HTTPStatus.UNAUTHORIZED, reason,
                                "unknown station or wrong credentials", station_id)
        response.headers["WWW-Authenticate"] = 'Basic realm="ocpp", charset="UTF-8"'
        return response

    # -- limits (csms/handshake_limits.py) ------------------------------------------------

    def _over_capacity(self, ws: ServerConnection) -> Response | None:
        """503 at the caps on connections (open, or in their handshake) and on handshakes in
        progress. A socket that sends no request costs until websockets' open_timeout."""
        sockets = self._handshaking + (len(self._server.all_connections) if self._server else 0)
        if sockets >= self.config.max_connections:
            limit = "connections"
        elif self._handshaking >= self.config.max_handshakes:
            limit = "handshakes"
        else:
            return None
        metrics.over_capacity.labels(limit).inc()
        response = self._refuse(ws, HTTPStatus.SERVICE_UNAVAILABLE, f"too_many_{limit}",
                                "the CSMS is at capacity: try again later")
        response.headers["Retry-After"] = "30"
        return response

    def _locked(self, ws: ServerConnection, station_id: str) -> Response | None:
        """429 while this station id or source address is locked after failed logins."""
        address = _address(ws)
        wait = self.throttle.locked_for(station_id, address, time.monotonic())
        if wait <= 0:
            return None
        metrics.auth_failures.labels("throttled").inc()
        log.warning("auth.throttled", station_id=station_id, address=address,
                    retry_after_s=round(wait, 1))
        response = self._refuse(ws, HTTPStatus.TOO_MANY_REQUESTS, "throttled",
                                "too many failed logins: try again later", station_id)
        response.headers["Retry-After"] = str(max(1, round(wait)))
        return response

    def _auth_failed(self, ws: ServerConnection, station_id: str, reason: str) -> None:
        address = _address(ws)
        known = reason != "unknown_station"  # unknown ids would only fill the table
        failures = self.throttle.failed(station_id if known else None, address,
                                        time.monotonic())
        metrics.auth_failures.labels(reason).inc()
        log.warning("auth.failed", station_id=station_id, address=address, reason=reason,
                    failures_from_address=failures)

    # -- connected -------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        station_id = station_identity(ws.request.path if ws.request else "")
        version = SUBPROTOCOLS.get(ws.subprotocol or "")
        if station_id is None or version is None:
            await ws.close(1002, "an OCPP subprotocol is required")
            return
        ctx = StationContext(station_id, boot_status=self._admitted.pop(ws, None),
                             ocpp_version=version)
        conn = Connection(ctx, ws, self.router, call_timeout=self.config.call_timeout_s,
                          on_seen=self.presence.seen, ping_interval=self.config.ping_interval_s,
                          max_message_bytes=self.config.max_message_bytes)
        old = self.connections.add(conn)
        if old is not None:
            log.info("station.replaced", station_id=station_id)
            await old.close(1000, "replaced by a new connection")
        now = self.clock.now()
        await self.store.stations.set_connected(station_id, now, version)
        self.events.publish(StationConnected(station_id, now))
        log.info("station.connected", station_id=station_id, boot_status=ctx.boot_status,
                 ocpp_version=version)
        try:
            await conn.run()
        finally:
            if self.connections.remove(conn):
                now = self.clock.now()
                try:
                    await self.store.stations.set_disconnected(station_id, now)
                except Exception as exc:
                    log.warning("station.disconnect_not_stored", station_id=station_id,
                                error=str(exc))
                self.events.publish(StationDisconnected(station_id, now))
            log.info("station.disconnected", station_id=station_id)
