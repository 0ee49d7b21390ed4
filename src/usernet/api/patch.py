"""Switch the standard library's IPv4 networking to one usernet host, in-process.

``usernet.patch(host)`` replaces, in the ``socket`` module:

* ``socket.socket``: a stand-in class. ``socket.socket(AF_INET, SOCK_STREAM | SOCK_DGRAM)`` (the
  default family and type included, ``SOCK_NONBLOCK`` honoured) gives a usernet
  :class:`~usernet.api.socket.Socket` of *host*; every other family or type (AF_UNIX, AF_INET6,
  AF_PACKET, SOCK_RAW) and every call that adopts a descriptor (``fileno=``, which the socket
  module's own ``socketpair``, ``fromfd`` and kernel ``accept`` use) gives a kernel
  ``socket.socket`` as before. ``isinstance(obj, socket.socket)`` holds for both kinds, and for
  the TLS wrapper below;
* ``create_connection``, ``create_server`` (AF_INET: on *host*; another family: the kernel's),
  ``getaddrinfo`` (IPv4 only, names through the host's hosts table and DNS), ``gethostbyname``,
  ``gethostbyname_ex``, ``gethostbyaddr`` (the hosts table and localhost; otherwise
  ``socket.herror``) and ``getfqdn``;

and in the ``ssl`` module ``SSLContext.wrap_socket`` (so ``ssl.wrap_socket`` too): given a usernet
socket, or a usernet TLS socket (TLS in TLS), it returns a :class:`~usernet.api.tls.TlsSocket`
(what ``host.wrap_tls`` gives: ``wrap_bio`` over two MemoryBIOs) with the same arguments
(``server_side``, ``server_hostname``, ``do_handshake_on_connect``, ``suppress_ragged_eofs``,
``session``); a kernel socket still gets a real ``ssl.SSLSocket``. As with SSLSocket, an
unconnected socket is wrapped without a handshake (``connect()`` does it) and a wrapped listener's
``accept()`` hands out server-side TLS connections. Outside the patch, wrap_socket on a usernet
socket raises OSError(EOPNOTSUPP) before any descriptor is touched.

Since modules such as http.client, urllib.request, socketserver, smtplib, asyncio, urllib3,
requests and aiohttp look these up as ``socket.NAME`` / ``context.wrap_socket`` at call time, they
run on *host* unmodified (HTTPS included); select, poll, selectors and asyncio wait on the sockets'
readiness descriptors, and asyncio's own TLS (``ssl=`` of ``create_connection``,
``open_connection``, ``start_server``) runs its MemoryBIO protocol over them. What captured a name
before patching (``from socket import socket``, ``ssl``'s module-level ``create_connection``, which
``ssl.get_server_certificate`` uses) keeps the kernel's. docs/architecture.md, "What `usernet run`
covers", lists precisely what is and is not.

The patch is process-wide (every thread) and not nestable: a second ``patch()`` before
``unpatch()`` raises RuntimeError. ``patched(host)`` undoes it on exit, exceptions included.
"""

from __future__ import annotations

import socket as _socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from usernet.wire import ipv4

if TYPE_CHECKING:
    import ssl as _ssl

__all__ = ["patch", "patched", "unpatch", "patched_host"]

_PATCHED_NAMES = ("socket", "create_connection", "create_server", "getaddrinfo", "gethostbyname",
                  "gethostbyname_ex", "gethostbyaddr", "getfqdn")
_WRAP = "ssl.SSLContext.wrap_socket"  # its key in _saved

_lock = threading.Lock()
_saved: dict[str, Any] | None = None
_host: Any = None

_KernelSocket: type[_socket.socket] = _socket.socket
_NONBLOCK = getattr(_socket, "SOCK_NONBLOCK", 0)
_TYPE_MASK = ~(_NONBLOCK | getattr(_socket, "SOCK_CLOEXEC", 0))


def patched_host() -> Any:
    """The host the socket module is patched to, or None."""
    return _host


def _usernet_types() -> tuple[type, type]:
    from usernet.api.socket import Socket
    from usernet.api.tls import TlsSocket

    return Socket, TlsSocket


class _SocketMeta(type):
    """``isinstance(x, socket.socket)`` for a kernel socket and a usernet one alike (TLS ones too,
    as an ssl.SSLSocket is a socket.socket)."""

    def __instancecheck__(cls, obj: object) -> bool:
        return isinstance(obj, (_KernelSocket, *_usernet_types()))

    def __subclasscheck__(cls, sub: type) -> bool:
        return issubclass(sub, (_KernelSocket, *_usernet_types()))


class _PatchedSocket(_socket.socket, metaclass=_SocketMeta):  # type: ignore[misc]
    """What ``socket.socket`` is while patched: a factory that gives a usernet socket for IPv4
    TCP/UDP and a kernel socket for the rest."""

    def __new__(cls, family: int = -1, type: int = -1, proto: int = -1, fileno: Any = None) -> Any:  # noqa: A002
        host = _host
        if fileno is None and host is not None:
            fam = _socket.AF_INET if family == -1 else family
            kind = _socket.SOCK_STREAM if type == -1 else type
            if fam == _socket.AF_INET and kind & _TYPE_MASK in (_socket.SOCK_STREAM, _socket.SOCK_DGRAM):
                sock = host.socket(_socket.AF_INET, kind & _TYPE_MASK, 0 if proto == -1 else proto)
                if kind & _NONBLOCK:
                    sock.setblocking(False)
                return sock
        return _KernelSocket(family, type, proto, fileno)


def _default_timeout(timeout: Any) -> Any:
    from usernet.api.host import _DEFAULT

    return _DEFAULT if timeout is _socket._GLOBAL_DEFAULT_TIMEOUT else timeout  # type: ignore[attr-defined]


def _make_functions(host: Any, saved: dict[str, Any]) -> dict[str, Any]:
    def create_connection(address: tuple[str, int], timeout: Any = _socket._GLOBAL_DEFAULT_TIMEOUT,  # type: ignore
                          source_address: Any = None, *, all_errors: bool = False) -> Any:
        return host.create_connection(address, _default_timeout(timeout), source_address)

    def create_server(address: tuple[str, int], *, family: int = _socket.AF_INET, backlog: int | None = None,
                      reuse_port: bool = False, dualstack_ipv6: bool = False) -> Any:
        if family != _socket.AF_INET:
            return saved["create_server"](address, family=family, backlog=backlog, reuse_port=reuse_port,
                                          dualstack_ipv6=dualstack_ipv6)
        if dualstack_ipv6:
            raise ValueError("dualstack_ipv6 requires AF_INET6 family")
        return host.create_server(address, backlog=backlog, reuse_port=reuse_port)

    def getaddrinfo(hostname: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0,  # noqa: A002
                    flags: int = 0) -> list[Any]:
        return host.getaddrinfo(hostname, port, family, type, proto, flags)  # type: ignore[no-any-return]

    def gethostbyname(name: str) -> str:
        if name in ("", "0.0.0.0"):
            return "0.0.0.0"
        return host.resolve_all(name)[0]  # type: ignore[no-any-return]

    def gethostbyname_ex(name: str) -> tuple[str, list[str], list[str]]:
        addresses, canonical = host._lookup(name)
        return canonical or name, [], list(addresses)

    def gethostbyaddr(address: str) -> tuple[str, list[str], list[str]]:
        if isinstance(address, bytes):
            address = address.decode()
        try:
            ip = ipv4.ntoa(ipv4.addr(address))
        except ValueError:
            ip = host.resolve_all(address)[0]
        names = [name for name, addresses in host.hosts_table.items() if ip in addresses]
        if ip.startswith("127.") and "localhost" not in names:
            names.append("localhost")
        if not names:
            raise _socket.herror(1, "Unknown host")
        return names[0], names[1:], [ip]

    def getfqdn(name: str = "") -> str:
        name = name.strip()
        if not name or name == "0.0.0.0":
            return _socket.gethostname()  # the machine's name: no lookup a usernet host could hang on
        try:
            primary, aliases, _ = gethostbyaddr(name)
        except (OSError, UnicodeError):
            return name
        for candidate in [primary, *aliases]:
            if "." in candidate:
                return candidate
        return primary

    return {"socket": _PatchedSocket, "create_connection": create_connection, "create_server": create_server,
            "getaddrinfo": getaddrinfo, "gethostbyname": gethostbyname, "gethostbyname_ex": gethostbyname_ex,
            "gethostbyaddr": gethostbyaddr, "getfqdn": getfqdn}


def _make_wrap_socket(original: Any) -> Any:
    def wrap_socket(self: _ssl.SSLContext, sock: Any, server_side: bool = False, do_handshake_on_connect: bool = True,
                    suppress_ragged_eofs: bool = True, server_hostname: str | None = None,
                    session: _ssl.SSLSession | None = None) -> Any:
        if isinstance(sock, _usernet_types()):
            from usernet.api.tls import TlsSocket

            return TlsSocket(sock, self, server_hostname=server_hostname, server_side=server_side,
                             do_handshake_on_connect=do_handshake_on_connect,
                             suppress_ragged_eofs=suppress_ragged_eofs, session=session)
        return original(self, sock, server_side, do_handshake_on_connect, suppress_ragged_eofs, server_hostname,
                        session)

    wrap_socket.__doc__ = original.__doc__
    wrap_socket.__qualname__ = "SSLContext.wrap_socket"
    return wrap_socket


def patch(host: Any) -> None:
    """Point the socket module's IPv4 networking at *host* (a running :class:`usernet.Host`) for
    the whole process, until :func:`unpatch`. RuntimeError when already patched."""
    global _saved, _host
    with _lock:
        if _saved is not None:
            raise RuntimeError("the socket module is already patched by usernet: unpatch() first "
                               "(usernet.patched() blocks do not nest)")
        saved = {name: getattr(_socket, name) for name in _PATCHED_NAMES}
        if saved["socket"] is not _KernelSocket:
            raise RuntimeError("socket.socket is not the standard library's: something else patched it")
        replacements = _make_functions(host, saved)
        import ssl as _ssl  # here, not at import: OpenSSL costs ~6 MB to a host that never patches

        original_wrap = _ssl.SSLContext.__dict__["wrap_socket"]
        _host = host
        _saved = saved
        for name, value in replacements.items():
            setattr(_socket, name, value)
        saved[_WRAP] = original_wrap
        _ssl.SSLContext.wrap_socket = _make_wrap_socket(original_wrap)  # type: ignore[method-assign]


def unpatch() -> None:
    """Undo :func:`patch`; nothing happens when not patched."""
    global _saved, _host
    with _lock:
        if _saved is None:
            return
        for name, value in _saved.items():
            if name == _WRAP:
                import ssl as _ssl

                _ssl.SSLContext.wrap_socket = value  # type: ignore[method-assign]
            else:
                setattr(_socket, name, value)
        _saved = None
        _host = None


@contextmanager
def patched(host: Any) -> Iterator[Any]:
    """``with usernet.patched(host):`` the socket module works on *host*; restored on exit."""
    patch(host)
    try:
        yield host
    finally:
        unpatch()
