"""usernet: a complete userspace TCP/IP stack in pure Python.

    import usernet
    from usernet.links import Tap

    with usernet.Host(Tap("tap0"), addr="10.0.0.2/24") as host:
        with host.create_connection(("10.0.0.1", 80)) as conn: ...
"""

from socket import (
    AF_INET,
    IP_TOS,
    IP_TTL,
    IPPROTO_ICMP,
    IPPROTO_IP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    MSG_DONTWAIT,
    MSG_PEEK,
    MSG_WAITALL,
    SHUT_RD,
    SHUT_RDWR,
    SHUT_WR,
    SO_BROADCAST,
    SO_ERROR,
    SO_KEEPALIVE,
    SO_LINGER,
    SO_RCVBUF,
    SO_RCVTIMEO,
    SO_REUSEADDR,
    SO_REUSEPORT,
    SO_SNDBUF,
    SO_SNDTIMEO,
    SO_TYPE,
    SOCK_DGRAM,
    SOCK_STREAM,
    SOL_SOCKET,
    TCP_INFO,
    TCP_KEEPCNT,
    TCP_KEEPIDLE,
    TCP_KEEPINTVL,
    TCP_NODELAY,
    TCP_USER_TIMEOUT,
)
from typing import TYPE_CHECKING, Any

from usernet.api.host import Host
from usernet.api.patch import patch, patched, unpatch

if TYPE_CHECKING:
    from usernet.api.tls import TlsSocket


def __getattr__(name: str) -> Any:
    # TlsSocket on first use: importing ssl (OpenSSL) costs a host that never speaks TLS ~6 MB.
    if name == "TlsSocket":
        from usernet.api.tls import TlsSocket

        return TlsSocket
    raise AttributeError(f"module 'usernet' has no attribute {name!r}")

__version__ = "0.1.0"

__all__ = [
    "AF_INET", "IPPROTO_ICMP", "IPPROTO_IP", "IPPROTO_TCP", "IPPROTO_UDP", "IP_TOS", "IP_TTL", "MSG_DONTWAIT",
    "MSG_PEEK", "MSG_WAITALL", "SO_RCVTIMEO", "SO_REUSEPORT", "SO_SNDTIMEO", "TCP_INFO", "TCP_USER_TIMEOUT", "SHUT_RD",
    "SHUT_RDWR", "SHUT_WR", "SOCK_DGRAM", "SOCK_STREAM", "SOL_SOCKET", "SO_BROADCAST", "SO_ERROR", "SO_KEEPALIVE",
    "SO_LINGER", "SO_RCVBUF", "SO_REUSEADDR", "SO_SNDBUF", "SO_TYPE", "TCP_KEEPCNT", "TCP_KEEPIDLE",
    "TCP_KEEPINTVL", "TCP_NODELAY", "Host", "__version__", "patch", "patched", "unpatch", "TlsSocket",
]
