"""The runtime: drives one sans-IO :class:`~usernet.stack.core.Stack` over one link on a thread.

One lock guards the stack. The runtime thread waits in ``select`` on the link and a wake-up
pipe, then, under the lock, reads every ready frame before running timers (so a burst is
answered in one pass) and transmits what the stack produced. Socket calls from user threads
take the same lock, act on their handle and flush the stack's output at once (no thread hop on
the send path); each socket's blocked calls wait on a condition of their own (on the same lock)
that its handle's events notify, so an event wakes only the threads that wait for it.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import select
import socket as _socket
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from usernet.api.memtrim import MemoryReturn
from usernet.api.runtime import RuntimeState
from usernet.api.shedding import LoadShedding
from usernet.links.base import Link
from usernet.stack.core import Interface, Stack, StackConfig
from usernet.wire import ethernet, ipv4

if TYPE_CHECKING:
    from usernet.api.socket import Socket

log = logging.getLogger("usernet.host")

_MAX_BATCH = 256
# Receive budget of one loop pass, as NAPI's: after this many frames or this long, the pass
# transmits, runs due timers and lets socket calls take the lock before reading on. A sustained
# flood then cannot starve timers, replies or applications.
RX_BUDGET_FRAMES = 1024
RX_BUDGET_SECONDS = 0.002
CORK_SECONDS = 0.001  # the longest a loopback write's small rest waits for more data (Host.cork)
RX_YIELD_SECONDS = 0.0002  # the pause between two passes that used up their budget
_DEFAULT = object()  # create_connection's "use the default timeout"
class Host(RuntimeState):
    """One network host over one link; ``with host:`` runs it."""

    autocork = True  # loopback writes: see cork()

    def __init__(self, link: Link, addr: str | None = "10.0.0.2/24", gateway: str | None = None,
                 mtu: int | None = None, mac: str | bytes | None = None, dhcp: bool | dict[str, Any] = False,
                 pcap: str | os.PathLike[str] | None = None, trace: bool | Any = False,
                 impair: str | dict[str, Any] | None = None, seed: int | None = None,
                 name: str | None = None, stack_config: StackConfig | None = None, forward: bool = False,
                 dns: list[str] | None = None, hosts: dict[str, Any] | None = None) -> None:
        # dhcp=True, or a dict: {"timeout": 30.0, "requested": "A.B.C.D", "release": True} plus
        # ClientConfig fields ("hostname", "probe", ...). Entering the host blocks until a lease.
        self._dhcp_options = self._check_dhcp_options(dhcp)
        self.dhcp_client: Any = None  # the DhcpClientAgent (usernet.api.dhcp) once started
        self.dhcp_server: Any = None  # a DhcpServer run on this host (usernet.apps.dhcp): hostnames() for DNS
        self.seed = seed
        self.rng = random.Random(seed)
        self.name = name or getattr(link, "name", "host")
        self.raw_link = link
        link = self._wrap_link(link, pcap=pcap, trace=trace, impair=impair, seed=seed)
        self.link = link
        if isinstance(mac, str):
            mac = ethernet.parse_mac(mac)
        self.dhcp = dhcp
        # A link MTU above 65,535 (Linux's lo has 65,536) still carries at most one IPv4 datagram.
        config = stack_config or StackConfig()
        if forward:
            config.forward = True
        self.stack = Stack(mac=mac or link.mac, layer=link.layer, addr=None if dhcp else addr, gateway=gateway,
                           mtu=mtu or min(link.mtu, ipv4.MAX_PACKET), rng=self.rng, config=config,
                           now=time.monotonic(),
                           name=getattr(link, "name", None) or "eth0")
        #: (interface, link) for every interface with a link: the primary first
        self._links: list[tuple[Interface, Link]] = [(self.stack.primary, link)]
        # The runtime loop's view of _links (_derive_links), rebuilt when the epoch moves on.
        self._links_epoch = 1
        self._derived_epoch = 0
        self._wait_fds: list[int] = []
        self._deadline_links: list[Link] = []
        self._shedding = LoadShedding(self.stack)
        self._memory_return = MemoryReturn(self.stack)
        self._shedding.add(self.stack.primary, link)
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._thread: threading.Thread | None = None
        # The runtime loop's state between passes.
        self._backlog = False  # the last pass ended on its budget: frames are waiting, do not sleep
        self._hooks_pending = False  # a pass hook has more to do: do not sleep either
        self._kick_deferred = False  # pass hooks run: their kicks wait for the pass's flush
        self._link_failed = False
        self._rx_passes = 0
        # When the runtime thread's current wait ends (monotonic time; written under the lock). A
        # socket call that creates an earlier deadline wakes the thread so it re-arms (kick()).
        self._armed = 0.0
        # Loopback autocorking (cork()): connections holding a small rest back, and when it goes.
        self._corked: dict[Any, None] = {}  # at most one entry per connection, emptied by each release
        self._cork_deadline: float | None = None
        self._stopping = False
        self._closed = False
        self._sockets: weakref.WeakSet[Socket] = weakref.WeakSet()
        self._services: list[Callable[[], None]] = []  # stop callbacks of `serve` helpers
        self._taps: list[Callable[[str, str, bytes, int], None]] = []  # frame observers (add_tap)
        self._pass_hooks: list[Callable[[], bool]] = []  # run by the runtime thread after each pass
        # TCP segmentation offload: only a bare link that says it can (wrappers see every frame).
        self.stack.gso_max = int(getattr(link, "gso_max", 0) or 0)
        self._init_names(dns, hosts)

    def _init_names(self, dns: list[str] | None, hosts: dict[str, Any] | None) -> None:
        """Name resolution (issue 14): DNS servers (``dns=``, or learnt by DHCP), search domains, the
        hosts table; the resolver itself is made on first use."""
        from usernet.proto.dns_client import hosts_table

        if isinstance(dns, str):
            dns = [dns]
        for server in dns or []:
            try:
                ipv4.addr(server)
            except ValueError:
                raise ValueError(f"dns={server!r}: not an IPv4 address") from None
        #: the DNS servers asked, in order (dotted quads); DHCP replaces them with what it learns
        self.dns_servers: list[str] = list(dns) if dns else list(getattr(self, "dns_servers", None) or [])
        #: search domains for single-label names (from DHCP, or set by the user)
        self.search_domains: list[str] = list(getattr(self, "search_domains", None) or [])
        self.hosts_table = hosts_table(hosts)
        self._resolver: Any = None

    @property
    def resolver(self) -> Any:
        """The host's stub resolver (:class:`usernet.api.resolver.Resolver`)."""
        if self._resolver is None:
            from usernet.api.resolver import Resolver

            with self._lock:
                if self._resolver is None:
                    self._resolver = Resolver(self)
        return self._resolver

    def add_interface(self, link: Link, addr: str | list[str] | None = None, name: str | None = None,
                      mtu: int | None = None, mac: str | bytes | None = None) -> Interface:
        """Another interface over *link*, with its address(es); usable at once, running or not."""
        if isinstance(mac, str):
            mac = ethernet.parse_mac(mac)
        addresses = [addr] if isinstance(addr, str) else list(addr or [])
        with self._lock:
            iface = self.stack.add_interface(name or getattr(link, "name", None), layer=link.layer,
                                             mac=mac or link.mac, mtu=mtu or min(link.mtu, ipv4.MAX_PACKET),
                                             addresses=addresses)
            iface.gso_max = int(getattr(link, "gso_max", 0) or 0)
            if self._taps:
                from usernet.links.tap import TapLink

                link = TapLink(link, iface.name, self._taps)
            self._links.append((iface, link))
            self._links_changed()
            self._shedding.add(iface, link)
        self._wake()  # the runtime thread waits on the new link from its next round
        return iface

    @staticmethod
    def _wrap_link(link: Link, *, pcap: Any, trace: Any, impair: Any, seed: int | None) -> Link:
        """Middleware order: the fault injector sits next to the medium, so pcap and the tracer see
        exactly what the stack sees."""
        if impair:
            from usernet.links.impair import Impair, parse_impair_spec

            spec = parse_impair_spec(impair) if isinstance(impair, str) else dict(impair)
            link = Impair(link, seed=seed, **spec)
        if pcap:
            from usernet.links.pcap import PcapWriter

            # A path, or a mapping of PcapWriter keyword arguments ({"path": ..., ...}).
            if isinstance(pcap, dict):
                options = dict(pcap)
                link = PcapWriter(link, os.fspath(options.pop("path")), **options)
            else:
                link = PcapWriter(link, os.fspath(pcap))
        if trace:
            from usernet.links.trace import Tracer

            # True (stderr), a text stream, or a mapping of Tracer keyword arguments.
            if trace is True:
                link = Tracer(link)
            elif isinstance(trace, dict):
                link = Tracer(link, **trace)
            else:
                link = Tracer(link, out=trace)
        return link

    # ----------------------------------------------------------------- lifecycle

    def __enter__(self) -> Host:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        if self._closed:
            raise OSError(errno.EBADF, "host is closed")
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=f"usernet-{self.name}", daemon=True)
        self._thread.start()
        if self._dhcp_options is not None:
            self._start_dhcp(self._dhcp_options)

    # ----------------------------------------------------------------- DHCP (usernet.api.dhcp)

    @staticmethod
    def _check_dhcp_options(dhcp: bool | dict[str, Any]) -> dict[str, Any] | None:
        if not dhcp:
            return None
        from usernet.api.dhcp import ClientConfig

        options = dict(dhcp) if isinstance(dhcp, dict) else {}
        known = {"timeout", "requested", "release"} | set(ClientConfig.__dataclass_fields__)
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"dhcp: unknown option(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        return options

    def _start_dhcp(self, options: dict[str, Any]) -> None:
        """Run the DHCP client on the primary interface; block until it holds a lease (or fail)."""
        from usernet.api.dhcp import ClientConfig, DhcpClientAgent

        options = dict(options)
        timeout = float(options.pop("timeout", 30.0))
        requested = options.pop("requested", None)
        release = bool(options.pop("release", True))
        static_dns = bool(self.dns_servers)
        with self._lock:
            agent = DhcpClientAgent(self.stack, config=ClientConfig(**options),
                                    requested=ipv4.addr(requested) if requested else None)
            self.dhcp_client = agent

            def changed(lease: Any, what: str) -> None:
                if lease is not None and not static_dns:
                    self.dns_servers[:] = [ipv4.ntoa(a) for a in lease.dns]
                    self.search_domains[:] = lease.search or ([lease.domain] if lease.domain else [])
                self._cond.notify_all()

            agent.on_change.append(changed)
            agent.start(time.monotonic())
            self.kick()

        def stop() -> None:
            with self._lock:
                agent.stop(time.monotonic(), release=release)
                self.kick()
            # The RELEASE may wait for ARP (the server's MAC): give it a moment to leave.
            resolver = self.stack.primary.neighbours
            if release and resolver is not None and self.running:
                self.wait_for(lambda: not resolver.cache.pending, 1.0)

        self.add_service(stop)
        if not self.wait_for(lambda: agent.lease is not None, timeout):
            offers = self.stack.counters["dhcp.client_offers"]
            self.close()
            what = "no DHCP server answered" if not offers else "offers came but no lease was acknowledged"
            raise TimeoutError(errno.ETIMEDOUT, f"DHCP on {self.stack.primary.name}: {what} within {timeout:g} s")

    @property
    def dhcp_lease(self) -> Any:
        """The DHCP lease held (:class:`usernet.proto.dhcp_client.Lease`), or None."""
        return self.dhcp_client.lease if self.dhcp_client is not None else None

    def close(self) -> None:
        """Close every socket, stop the runtime thread, release the link. Idempotent."""
        if self._closed:
            return
        for stop in list(self._services):
            try:
                stop()
            except Exception:  # a service failing to stop must not keep the host alive
                log.exception("stopping a service")
        for sock in list(self._sockets):
            sock.close()
        with self._lock:
            self._flush()
        self._stopping = True
        self._wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._closed = True
        for _, link in self._links:
            link.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        with self._cond:
            self._cond.notify_all()
            self.wake_sockets()

    @property
    def running(self) -> bool:
        return self._thread is not None and not self._stopping

    # ----------------------------------------------------------------- the loop

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):
            pass  # already pending, or closing

    def _links_changed(self) -> None:
        """``_links`` was replaced or grew (lock held): the loop rebuilds what it derives from it."""
        self._links_epoch += 1

    def _derive_links(self) -> None:
        """What each pass needs from ``_links``, rebuilt only when they change (lock held): the fds
        to wait on, and the links whose next_deadline() can say anything (a delaying fault injector,
        the in-memory switch, middleware in front of them; a bare device's is the base class's)."""
        links = self._links
        self._derived_epoch = self._links_epoch
        self._wait_fds = [link.fileno() for _, link in links] + [self._wake_r]
        base = Link.next_deadline
        self._deadline_links = [link for _, link in links if getattr(type(link), "next_deadline", base) is not base]

    def _run(self) -> None:
        lock = self._lock
        monotonic = time.monotonic
        wait = select.select
        wake_fd = self._wake_r
        try:
            while not self._stopping:
                with lock:
                    if self._derived_epoch != self._links_epoch:
                        self._derive_links()
                    fds = self._wait_fds
                    now = monotonic()
                    if self._backlog or self._hooks_pending:
                        timeout = 0.0
                    else:
                        deadline = self._next_wakeup()
                        # Bounded so a lost wake-up can never stall the host for long.
                        timeout = 1.0 if deadline is None else min(1.0, max(0.0, deadline - now))
                    self._armed = now + timeout
                    backlog = self._backlog
                if self._link_failed:
                    self._link_failed = False
                    time.sleep(0.1)
                if backlog:
                    # Python's locks are not fair: without a pause the loop would take the lock
                    # straight back, and a socket call (or a timed-out wait) could starve behind it.
                    time.sleep(RX_YIELD_SECONDS)
                ready = wait(fds, (), (), timeout)[0]
                if self._stopping:
                    break
                if wake_fd in ready:
                    try:
                        os.read(wake_fd, 4096)
                    except BlockingIOError:
                        pass
                with lock:
                    # This pass re-arms at its end anyway: socket calls made meanwhile (pass hooks,
                    # other threads) need not wake the thread for an earlier deadline.
                    self._armed = 0.0
                    self._pass()
        except Exception:
            log.exception("usernet runtime thread crashed")
            self.stack.counters["host.runtime_crash"] += 1
        finally:
            self._stopping = True
            with self._cond:
                self._cond.notify_all()
                self.wake_sockets()

    def _pass(self) -> None:
        """One pass of the runtime thread (lock held): read what the links hold, up to the
        budget, then run timers, transmit and run the pass hooks."""
        stack = self.stack
        monotonic = time.monotonic
        # Ready frames first, then timers: one pass answers a whole burst, up to the budget.
        # Every link is read, ready or not: middleware releases frames it held back (delay, rate)
        # from recv_batch.
        budget = RX_BUDGET_FRAMES
        now = monotonic()
        until = now + RX_BUDGET_SECONDS
        backlog = False
        order = self._links  # now, not as before select: a tap added meanwhile sees this pass
        passes = self._rx_passes
        if len(order) > 1:  # each pass starts at the next link: a flooded one cannot starve the rest
            rotate = passes % len(order)
            order = order[rotate:] + order[:rotate]
        self._rx_passes = passes + 1
        # Socket events of the receive loop are collected (Socket._on_event) and delivered once
        # each at its end: a thread blocked in recv is woken once per pass, not once per segment
        # (it could not take the lock before the pass ends anyway), readiness refreshed once.
        events: dict[Any, None] = {}
        self._pending_events = events
        try:
            for iface, link in order:
                while True:
                    if budget <= 0 or now >= until:
                        backlog = True
                        break
                    try:
                        frames = link.recv_batch(_MAX_BATCH)
                    except OSError as err:
                        # The device went down or away: count it and keep the host alive (the wait
                        # bounds the retry rate); sockets see it as silence.
                        stack.counters["link.rx_error"] += 1
                        log.warning("link %s receive failed: %s", link.name, err)
                        self._link_failed = True
                        break
                    if not frames:
                        break
                    now = monotonic()
                    receive = stack.receive
                    for frame, trusted in frames:
                        receive(frame, now, trusted, iface)
                    count = len(frames)
                    iface.stats["rx_packets"] += count
                    budget -= count
                    now = monotonic()  # for the budget test: this batch's work counts
                    if count < _MAX_BATCH:
                        break
        finally:
            self._pending_events = None
        for sock in events:
            cond = sock._s.cond
            if cond._waiters:  # type: ignore[attr-defined]  # notify_all costs Python code even with none
                cond.notify_all()
            sock._refresh()
        self._backlog = backlog
        if backlog:
            stack.counters["host.rx_budget_exhausted"] += 1
        hooks = self._pass_hooks
        pending = False
        if hooks:
            # Before this pass transmits: what the hooks' socket calls produce (an echo, a FIN)
            # goes out in the same flush as what the frames produced, their kicks deferred to it.
            self._kick_deferred = True
            try:
                for hook in hooks:
                    try:
                        if hook():
                            pending = True
                    except Exception:  # a hook's bug must not stop the host
                        log.exception("runtime pass hook failed")
            finally:
                self._kick_deferred = False
        self._hooks_pending = pending  # (False once the last hook is gone: no spinning on it)
        now = self._flush()
        # The ticks' own first test, done here: most passes skip both calls.
        shedding = self._shedding
        if now >= shedding.next_update:
            shedding.tick(now)
        memory_return = self._memory_return
        if now >= memory_return.next_check:
            memory_return.tick(now)

    def _flush(self) -> float:
        """Run timers and transmit on every link; returns the time it ran them at. Lock held."""
        stack = self.stack
        now = time.monotonic()
        if self._cork_deadline is not None and now >= self._cork_deadline:
            self._uncork()
        primary_frames = stack.poll(now)
        primary = stack.primary
        for iface, link in self._links:
            frames = primary_frames if iface is primary else stack.take(iface)
            if not frames:
                continue
            iface.stats["tx_packets"] += len(frames)
            send = link.send
            for frame in frames:
                try:
                    if type(frame) is tuple:
                        link.send_gso(*frame)  # type: ignore[attr-defined]
                    else:
                        send(frame)
                except OSError as err:
                    stack.counters["link.tx_error"] += 1
                    log.debug("link %s send failed: %s", link.name, err)
        # Handle events already woke their sockets' waiters; this wakes the host's own (wait_for,
        # ping), whose predicates may change with timers. With no waiter it would do nothing.
        if self._cond._waiters:  # type: ignore[attr-defined]
            self._cond.notify_all()
        return now

    def _next_wakeup(self) -> float | None:
        """The earliest of the stack's timers and the link's (a delaying fault injector, the
        in-memory switch). Lock held."""
        deadline = self.stack.next_deadline()
        cork = self._cork_deadline
        if cork is not None and (deadline is None or cork < deadline):
            deadline = cork
        if self._derived_epoch != self._links_epoch:
            self._derive_links()
        for link in self._deadline_links:
            link_deadline = link.next_deadline()
            if link_deadline is not None and (deadline is None or link_deadline < deadline):
                deadline = link_deadline
        return deadline

    def kick(self) -> None:
        """After an API call changed state (lock held): send what it produced right away, and
        wake the runtime thread if the call created a deadline earlier than the one it waits for
        (a retransmission or delayed-ACK timer, a frame the fault injector holds back).
        From a pass hook, the pass's own flush sends it, right after the hooks."""
        if self._kick_deferred:
            return
        self._flush()
        # While the runtime thread runs a pass (_armed 0), it re-arms at the end anyway.
        if self._armed and self._thread is not None:
            deadline = self._next_wakeup()
            if deadline is not None and deadline < self._armed:
                self._armed = deadline
                self._wake()

    def cork(self, conn: Any) -> None:
        """A loopback write held a small rest back (autocorking; lock held): it goes with the
        connection's next write, or when a thread blocks in a socket call, or at the latest
        CORK_SECONDS from the first rest held (the runtime thread's timer). Waking the runtime
        thread at once instead would have it contend for the lock with a bulk writer each write."""
        self._corked[conn] = None
        if self._cork_deadline is None:
            self._cork_deadline = deadline = time.monotonic() + CORK_SECONDS
            if deadline < self._armed and self._thread is not None:
                self._armed = deadline
                self._wake()

    def release_corked(self) -> None:
        """Send every rest autocorking held back (lock held)."""
        if self._corked:
            self._uncork()
            self._flush()
        self._cork_deadline = None

    def _uncork(self) -> None:
        """Let every held rest go with the next poll (lock held)."""
        mark = self.stack.tcp.mark_dirty
        for conn in self._corked:
            mark(conn)
        self._corked.clear()
        self._cork_deadline = None

    def add_pass_hook(self, hook: Callable[[], bool]) -> None:
        """Run *hook* on the runtime thread after every pass (lock held, after the pass's frames,
        timers and transmissions), until removed. It returns whether it has more to do right away
        (then the next pass does not sleep). It must not block: the host's services dispatch their
        ready sockets this way (``apps/services.py``), answering in the pass that got the request."""
        with self._lock:
            self._pass_hooks = [*self._pass_hooks, hook]
        self.request_pass()

    def remove_pass_hook(self, hook: Callable[[], bool]) -> None:
        with self._lock:
            self._pass_hooks = [h for h in self._pass_hooks if h is not hook]

    def request_pass(self) -> None:
        """Have the runtime thread run a pass (and its hooks) soon; from the runtime thread itself
        this costs nothing, as every pass ends with the hooks."""
        thread = self._thread
        if thread is not None and threading.get_ident() != thread.ident:
            self._wake()

    def clock(self) -> float:
        """The stack's clock (the runtime's is monotonic time; a virtual-time driver has its own)."""
        return time.monotonic()

    def notify(self) -> None:
        """Handle event hook (lock held, from the stack): wake every waiting socket call."""
        self._cond.notify_all()

    # ----------------------------------------------------------------- public helpers

    @property
    def address(self) -> str:
        return ipv4.ntoa(self.stack.addr)

    @property
    def mac(self) -> str:
        return ethernet.format_mac(self.stack.mac) if self.stack.mac else ""

    def interfaces(self) -> list[dict[str, Any]]:
        """Every interface, loopback first, as ``ip addr`` shows them (index, name, kind, mac,
        mtu, addresses, packet counts)."""
        with self._lock:
            return self.stack.interfaces_info()

    def routes(self) -> list[dict[str, Any]]:
        """The routing table, most specific first, as ``ip route`` shows it."""
        with self._lock:
            return self.stack.routes_info()

    def neighbours(self) -> list[dict[str, Any]]:
        """The neighbour (ARP) caches of every interface, as ``ip neigh`` shows them."""
        with self._lock:
            return self.stack.neighbours_info()

    def add_address(self, addr: str, interface: str | None = None) -> None:
        """Add an address to an interface (default: the primary one)."""
        with self._lock:
            iface = self.stack.interface(interface) if interface else self.stack.primary
            self.stack.add_address(iface, addr)
            self.kick()

    def remove_address(self, addr: str, interface: str | None = None) -> None:
        """Remove an address; sockets bound to it fail with EADDRNOTAVAIL."""
        with self._lock:
            iface = self.stack.interface(interface) if interface else self.stack.primary
            self.stack.remove_address(iface, addr)
            self.kick()

    def add_route(self, cidr: str, via: str | None = None, interface: str | None = None, metric: int = 0) -> None:
        """A static route (``ip route add CIDR via G [dev IF] [metric N]``)."""
        with self._lock:
            self.stack.add_route(cidr, via, self.stack.interface(interface) if interface else None, metric)

    @property
    def counters(self) -> dict[str, int]:
        """Every counter (docs/architecture.md, "Counters", defines each), as a plain dict."""
        with self._lock:
            return dict(self.stack.all_counters())

    def format_counters(self) -> str:
        with self._lock:
            return self.stack.all_counters().format()

    def socket(self, family: int = 2, type: int = 1, proto: int = 0) -> Socket:
        from usernet.api.socket import Socket

        sock = Socket(self, family, type, proto)
        self._sockets.add(sock)
        return sock

    def wrap_tls(self, sock: Socket, context: Any, server_hostname: str | None = None, server_side: bool = False,
                 do_handshake_on_connect: bool = True) -> Any:
        """TLS over a usernet socket, as ``context.wrap_socket`` would give over a kernel one: a
        :class:`~usernet.api.tls.TlsSocket` (``ssl.SSLContext.wrap_bio`` underneath). It owns *sock*."""
        from usernet.api.tls import TlsSocket

        return TlsSocket(sock, context, server_hostname=server_hostname, server_side=server_side,
                         do_handshake_on_connect=do_handshake_on_connect)

    def create_connection(self, address: tuple[str, int], timeout: float | None | object = _DEFAULT,
                          source_address: tuple[str, int] | None = None) -> Socket:
        """Like ``socket.create_connection``: a connected TCP socket. A name is resolved (hosts
        table, then DNS) and each of its addresses tried in turn; the error of the last one is
        raised. The port may be a service name, "http"."""
        from usernet.api.socket import service_port

        host, port = address
        port = service_port(port, _socket.SOCK_STREAM)  # gaierror before a socket exists
        error: OSError | None = None
        for candidate in self.resolve_all(host):
            sock = self.socket()
            try:
                if timeout is not _DEFAULT:
                    sock.settimeout(timeout)  # type: ignore[arg-type]
                if source_address is not None:
                    sock.bind(source_address)
                sock.connect((candidate, port))
                return sock
            except OSError as err:
                sock.close()
                error = err
            except BaseException:
                sock.close()
                raise
        assert error is not None
        raise error

    def create_server(self, address: tuple[str, int], *, backlog: int | None = None,
                      reuse_port: bool = False) -> Socket:
        """Like ``socket.create_server``: a listening TCP socket with SO_REUSEADDR (and
        SO_REUSEPORT with *reuse_port*)."""
        sock = self.socket()
        try:
            sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(_socket.SOL_SOCKET, getattr(_socket, "SO_REUSEPORT", 15), 1)
            sock.bind(address)
            sock.listen(128 if backlog is None else backlog)
        except BaseException:
            sock.close()
            raise
        return sock

    def getaddrinfo(self, host: str | bytes | None, port: int | str | None, family: int = 0, type: int = 0,
                    proto: int = 0, flags: int = 0) -> list[tuple[Any, Any, int, str, tuple[str, int]]]:
        """Like ``socket.getaddrinfo`` for IPv4: numeric addresses, "localhost", the hosts table, then
        DNS (search domains for single-label names). The port may be a service name, giving the kinds
        that service is defined for. Failures raise ``socket.gaierror`` with glibc's codes: EAI_NONAME
        (no such name), EAI_NODATA (no IPv4 address), EAI_AGAIN (SERVFAIL or no answer), EAI_FAIL
        (refused). AAAA answers wait for IPv6: AF_INET6 is refused as an unsupported family."""
        from usernet.api.socket import service_port

        if family not in (0, _socket.AF_INET):
            raise _socket.gaierror(_socket.EAI_FAMILY, "ai_family not supported")
        if isinstance(host, bytes):
            host = host.decode()
        if host is None:
            addresses = ["0.0.0.0" if flags & _socket.AI_PASSIVE else "127.0.0.1"]
            canonical = ""
        elif flags & _socket.AI_NUMERICHOST:
            addresses = [self._numeric(host)]
            canonical = host
        else:
            addresses, canonical = self._lookup(host)
        kinds = []
        for kind in [type] if type else [_socket.SOCK_STREAM, _socket.SOCK_DGRAM]:
            try:
                kinds.append((kind, service_port(port, kind)))
            except _socket.gaierror:
                continue  # e.g. "http" is defined for TCP only
        if not kinds:
            raise _socket.gaierror(_socket.EAI_SERVICE, "Servname not supported for ai_socktype")
        results: list[tuple[Any, Any, int, str, tuple[str, int]]] = []
        for address in addresses:
            for kind, number in kinds:
                name = canonical if flags & _socket.AI_CANONNAME and not results else ""
                results.append((_socket.AF_INET, _socket.SocketKind(kind),
                                proto or (_socket.IPPROTO_TCP if kind == _socket.SOCK_STREAM else _socket.IPPROTO_UDP),
                                name, (address, number)))
        return results

    def resolve_all(self, name: str, timeout: float | None = None) -> list[str]:
        """Every IPv4 address of *name* (a dotted quad is its own), in the order the answer gave
        them; ``socket.gaierror`` when there is none."""
        return self._lookup(name, timeout)[0]

    @staticmethod
    def _numeric(name: str) -> str:
        try:
            return ipv4.ntoa(ipv4.addr(name))
        except ValueError:
            raise _socket.gaierror(_socket.EAI_NONAME, "Name or service not known") from None

    def _lookup(self, name: str, timeout: float | None = None) -> tuple[list[str], str]:
        from usernet.api.resolver import ResolveError, gaierror_for
        from usernet.wire import dns

        if isinstance(name, bytes):
            name = name.decode()
        try:
            return [ipv4.ntoa(ipv4.addr(name))], name
        except ValueError:
            pass
        if not name or name.count(".") == 3 and name.replace(".", "").isdigit():
            raise _socket.gaierror(_socket.EAI_NONAME, "Name or service not known")
        try:
            answer = self.resolver.resolve(name, dns.A, timeout=timeout)
        except ResolveError as err:
            raise gaierror_for(err) from None
        return list(answer.addresses), answer.canonical

    def _resolve(self, name: str) -> str:
        return self._lookup(name)[0][0]

    def ntp_offset(self, server: str, samples: int = 4, timeout: float = 2.0) -> float:
        """SNTP (RFC 4330) against *server*: the offset in seconds to add to this machine's clock,
        from the minimum-delay sample of *samples*. TimeoutError when none answers;
        ``usernet.proto.ntp.NtpError`` for a kiss-o'-death or an unsynchronised server."""
        from usernet.api.ntp import offset

        return offset(self, server, samples=samples, timeout=timeout)

    async def open_connection(self, host: str, port: int, **kwargs: Any) -> Any:
        """asyncio: ``(StreamReader, StreamWriter)`` over a usernet TCP connection (a name is resolved
        in the loop's executor, so the loop never blocks on DNS)."""
        import asyncio

        from usernet.api.aio import open_connection

        try:
            address = self._numeric(host)
        except _socket.gaierror:
            address = await asyncio.get_running_loop().run_in_executor(None, self._resolve, host)
        return await open_connection(self, address, port, **kwargs)

    async def start_server(self, client_connected_cb: Callable[..., Any], host: str | None = None, port: int = 0,
                           **kwargs: Any) -> Any:
        """asyncio: serve *client_connected_cb(reader, writer)* for each usernet TCP connection."""
        from usernet.api.aio import start_server

        return await start_server(self, client_connected_cb, host, port, **kwargs)

    def ping(self, dst: str, count: int = 1, interval: float = 1.0, size: int = 56, timeout: float = 1.0,
             on_reply: Callable[[dict[str, Any]], None] | None = None) -> list[float | None]:
        """Send *count* echo requests to *dst* (an address or a name: the first address it
        resolves to); return each one's RTT in seconds (None when none came)."""
        from usernet.api.ping import ping

        return ping(self, self.resolve_all(dst)[0], count=count, interval=interval, size=size, timeout=timeout,
                    on_reply=on_reply)

    def wait_for(self, predicate: Callable[[], bool], timeout: float | None) -> bool:
        """Block until *predicate* (evaluated with the lock held) is true; False on timeout."""
        end = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not predicate():
                if self._closed:
                    raise OSError(errno.EBADF, "host is closed")
                remaining = None if end is None else end - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining if remaining is not None and remaining < 1.0 else 1.0)
            return True

    def add_service(self, stop: Callable[[], None]) -> None:
        self._services.append(stop)

    def add_tap(self, tap: Callable[[str, str, bytes, int], None]) -> None:
        """Call ``tap(interface, "<" or ">", frame, layer)`` for every frame received or sent on any
        link, on the runtime thread with the lock held (so: quick, and copy nothing out of the stack).
        Links are wrapped (:class:`~usernet.links.tap.TapLink`) only while a tap is registered."""
        from usernet.links.tap import TapLink

        with self._lock:
            self._taps.append(tap)
            if len(self._taps) == 1:
                self._links = [(iface, TapLink(link, iface.name, self._taps)) for iface, link in self._links]
                self._links_changed()

    def remove_tap(self, tap: Callable[[str, str, bytes, int], None]) -> None:
        from usernet.links.tap import TapLink

        with self._lock:
            if tap in self._taps:
                self._taps.remove(tap)
            if not self._taps:
                self._links = [(iface, link.inner if isinstance(link, TapLink) else link)
                               for iface, link in self._links]
                self._links_changed()
