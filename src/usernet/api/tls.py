"""TLS over a usernet socket: :class:`TlsSocket`, what ``host.wrap_tls`` returns.

``ssl.SSLContext.wrap_socket`` cannot take a usernet socket (it would adopt the readiness
descriptor as its kernel socket), so the TLS engine runs on two ``ssl.MemoryBIO`` objects
(``SSLContext.wrap_bio``) and this class moves the records between them and the usernet socket.
It behaves as an ``ssl.SSLSocket``: the handshake on connect, ``recv`` returning ``b""`` at a
close_notify or a TCP EOF (ragged EOFs suppressed, as ``suppress_ragged_eofs=True``), the
underlying socket's timeout applied to each whole operation (``TimeoutError``), ``SSLWantReadError``
or ``SSLWantWriteError`` on a non-blocking socket, and ``makefile`` through ``socket.SocketIO`` so
``http.client`` and friends work on it.

Under ``usernet.patched(host)`` (``usernet run``) ``ssl.SSLContext.wrap_socket`` gives this class
for a usernet socket, so it takes wrap_socket's arguments and answers what libraries ask of an
SSLSocket (http.client, urllib3, requests): a socket not yet connected is wrapped without a
handshake (``connect()`` does it), a listening one hands out wrapped connections from
``accept()``. ``isinstance(tls, ssl.SSLSocket)`` is False: it is not a kernel socket.
"""

from __future__ import annotations

import errno
import socket as _socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from usernet.api.socket import _refuse_ssl_adoption, make_file

_T = TypeVar("_T")
_CHUNK = 65536  # the largest plaintext one send() encrypts, and one socket read


def _connected(sock: Any) -> bool:
    try:
        sock.getpeername()
    except OSError as err:
        if err.errno != errno.ENOTCONN:
            raise
        return False
    return True


class TlsSocket:
    """A socket-like TLS connection over a usernet :class:`~usernet.api.socket.Socket`.

    It owns the socket: closing the TlsSocket closes it (``unwrap()`` hands it back instead)."""

    def __init__(self, sock: Any, context: ssl.SSLContext, server_hostname: str | None = None,
                 server_side: bool = False, do_handshake_on_connect: bool = True,
                 suppress_ragged_eofs: bool = True, session: ssl.SSLSession | None = None) -> None:
        if sock.type != _socket.SOCK_STREAM:
            raise NotImplementedError("only stream sockets are supported")
        if server_side and server_hostname:
            raise ValueError("server_hostname can only be specified in client mode")
        if server_side and session is not None:
            raise ValueError("session can only be specified in client mode")
        if context.check_hostname and not server_side and not server_hostname:
            raise ValueError("check_hostname requires server_hostname")
        self._sock = sock
        self.context = context
        self.server_side = server_side
        self.server_hostname = server_hostname
        self.do_handshake_on_connect = do_handshake_on_connect
        self.suppress_ragged_eofs = suppress_ragged_eofs
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._sslobj: ssl.SSLObject | None = context.wrap_bio(
            self._incoming, self._outgoing, server_side=server_side, server_hostname=server_hostname,
            session=session)
        self._unsent: deque[bytes] = deque()  # records out of the outgoing BIO, not yet sent
        self._ssl_lock = threading.Lock()  # one SSL object call at a time (a reader and a writer thread)
        self._send_lock = threading.Lock()  # records go to the socket in order, by one thread
        self._recv_lock = threading.Lock()  # and come from it into the incoming BIO likewise
        self._handshaken = False
        self._fills = 0  # how many times the incoming BIO was filled
        self._record_reads = False  # unwrap(): read the socket record by record
        self._partial = bytearray()  # the record being read, while unwrapping
        self._closed = False
        self._io_refs = 0
        if do_handshake_on_connect and _connected(sock):  # as SSLSocket: else connect() does it
            try:
                self.do_handshake()
            except BaseException:
                self._flush_quietly()  # the alert telling the peer why
                self._sock.close()
                self._closed = True
                raise

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("server" if self.server_side else "client")
        return f"<usernet TlsSocket {state} over {self._sock!r}>"

    def __enter__(self) -> TlsSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ================================================================= moving records

    def _obj(self) -> ssl.SSLObject:
        if self._sslobj is None:
            raise OSError(9, "Bad file descriptor" if self._closed else "TLS layer unwrapped")
        return self._sslobj

    def _deadline(self) -> float | None:
        timeout = self._sock.gettimeout()
        return None if not timeout else time.monotonic() + timeout

    def _collect(self) -> None:
        """Queue what the SSL object wrote (with _ssl_lock held, so in the order it wrote it)."""
        if self._outgoing.pending:
            self._unsent.append(self._outgoing.read())

    def _check_deadline(self, deadline: float | None) -> None:
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError("The operation timed out")

    def _flush(self, deadline: float | None) -> None:
        """Send every pending TLS record to the socket, in the order the SSL object made them.
        Each socket call waits at most the socket's timeout; the socket's timeout is never
        changed here, so a reader and a writer thread can share the connection."""
        with self._send_lock:
            while self._unsent:
                self._check_deadline(deadline)
                try:
                    sent = self._sock.send(self._unsent[0])
                except BlockingIOError:
                    raise ssl.SSLWantWriteError(ssl.SSL_ERROR_WANT_WRITE,
                                                "The operation did not complete (write)") from None
                if sent == len(self._unsent[0]):
                    self._unsent.popleft()
                else:
                    self._unsent[0] = self._unsent[0][sent:]

    def _flush_quietly(self) -> None:
        """Best effort, for an alert or a close_notify: never more than a second."""
        try:
            saved = self._sock.gettimeout()
            if saved is None or saved > 1.0:
                self._sock.settimeout(1.0)
            try:
                self._flush(None)
            finally:
                self._sock.settimeout(saved)
        except (OSError, ValueError, ssl.SSLError):
            pass

    def _fill(self, deadline: float | None, generation: int) -> None:
        """Read what the socket has into the incoming BIO; a TCP EOF becomes the BIO's EOF.
        While unwrapping, exactly one record at a time: what follows the peer's close_notify is
        plain data that belongs to the socket, not to the TLS layer. Nothing is read if another
        thread filled the BIO since the caller's SSL call (*generation*): the caller retries."""
        self._check_deadline(deadline)
        with self._recv_lock:
            if generation != self._fills:
                return
            self._fill_locked(deadline)
            self._fills += 1

    def _fill_locked(self, deadline: float | None) -> None:
        try:
            if self._record_reads:
                self._fill_record(deadline)
                return
            data = self._sock.recv(_CHUNK)
        except BlockingIOError:
            raise ssl.SSLWantReadError(ssl.SSL_ERROR_WANT_READ, "The operation did not complete (read)") from None
        if data:
            self._incoming.write(data)
        else:
            self._incoming.write_eof()

    def _fill_record(self, deadline: float | None) -> None:
        need = 5  # the record header: type, version, length
        if len(self._partial) >= 5:
            need = 5 + int.from_bytes(self._partial[3:5], "big")
        while len(self._partial) < need:
            data = self._sock.recv(need - len(self._partial))
            if not data:
                self._incoming.write(bytes(self._partial))
                self._partial.clear()
                self._incoming.write_eof()
                return
            self._partial += data
            if len(self._partial) == 5:
                need = 5 + int.from_bytes(self._partial[3:5], "big")
        self._incoming.write(bytes(self._partial))
        self._partial.clear()

    def _run(self, op: Callable[[], _T]) -> _T:
        """Drive *op* on the SSL object until it completes, moving records both ways."""
        deadline = self._deadline()
        while True:
            generation = self._fills
            try:
                with self._ssl_lock:
                    try:
                        result = op()
                    finally:
                        self._collect()
            except ssl.SSLWantReadError:
                self._flush(deadline)
                if self._incoming.eof:
                    raise ssl.SSLEOFError(ssl.SSL_ERROR_EOF, "EOF occurred in violation of protocol") from None
                self._fill(deadline, generation)
                continue
            except ssl.SSLWantWriteError:
                self._flush(deadline)
                continue
            self._flush(deadline)
            return result

    # ================================================================= TLS operations

    def do_handshake(self, block: bool = False) -> None:
        obj = self._obj()
        self._run(obj.do_handshake)
        self._handshaken = True

    def _ensure_handshake(self) -> None:
        if not self._handshaken:
            self.do_handshake()

    def recv(self, bufsize: int = 1024, flags: int = 0) -> bytes:
        if flags:
            raise ValueError(f"non-zero flags not allowed in calls to recv() on {type(self).__name__}")
        if bufsize < 0:
            raise ValueError("negative buffersize in recv")
        self._ensure_handshake()
        if bufsize == 0:
            return b""
        obj = self._obj()
        try:
            return self._run(lambda: obj.read(bufsize))
        except ssl.SSLZeroReturnError:
            return b""  # close_notify
        except ssl.SSLEOFError:
            if self.suppress_ragged_eofs:
                return b""
            raise

    read = recv

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        if flags:
            raise ValueError(f"non-zero flags not allowed in calls to recv_into() on {type(self).__name__}")
        view = memoryview(buffer).cast("B")
        size = nbytes or len(view)
        if size < 0:
            raise ValueError("negative buffersize in recv_into")
        self._ensure_handshake()
        if size == 0:
            return 0
        obj = self._obj()
        try:
            count: int = self._run(lambda: obj.read(size, view))  # type: ignore[arg-type,assignment]
            return count
        except ssl.SSLZeroReturnError:
            return 0
        except ssl.SSLEOFError:
            if self.suppress_ragged_eofs:
                return 0
            raise

    def send(self, data: Any, flags: int = 0) -> int:
        if flags:
            raise ValueError(f"non-zero flags not allowed in calls to send() on {type(self).__name__}")
        self._ensure_handshake()
        view = memoryview(data).cast("B")[:_CHUNK]
        if not view:
            return 0
        obj = self._obj()
        return self._run(lambda: obj.write(view))

    write = send

    def sendall(self, data: Any, flags: int = 0) -> None:
        if flags:
            raise ValueError(f"non-zero flags not allowed in calls to sendall() on {type(self).__name__}")
        view = memoryview(data).cast("B")
        while view:
            sent = self.send(view[:_CHUNK])
            view = view[sent:]

    def pending(self) -> int:
        """Decrypted bytes ready to read without touching the socket: a select() on fileno()
        does not see them."""
        return self._sslobj.pending() if self._sslobj is not None else 0

    def unwrap(self) -> Any:
        """Send a close_notify, wait for the peer's, and give back the plain socket."""
        obj = self._obj()
        self._record_reads = True
        try:
            self._run(obj.unwrap)
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
            pass  # the peer closed the connection instead of answering
        self._sslobj = None
        sock, self._sock = self._sock, None
        self._closed = True
        return sock

    def _send_close_notify(self) -> None:
        """One close_notify, without waiting for the peer's (as a shutdown(SHUT_WR) would)."""
        obj = self._sslobj
        if obj is None or not self._handshaken:
            return
        with self._ssl_lock:
            try:
                obj.unwrap()
            except ssl.SSLWantReadError:
                pass
            except (ssl.SSLError, ValueError):
                return
            finally:
                self._collect()
        self._flush_quietly()

    def shutdown(self, how: int) -> None:
        if how in (_socket.SHUT_WR, _socket.SHUT_RDWR):
            self._send_close_notify()
        self._sock.shutdown(how)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._io_refs > 0:
            return  # makefile() objects still use it; the last one closes it (as socket.socket)
        self._real_close()

    def _real_close(self) -> None:
        if self._sock is None:
            return
        try:
            self._send_close_notify()
        finally:
            self._sslobj = None
            self._sock.close()

    def _decref_socketios(self) -> None:
        if self._io_refs > 0:
            self._io_refs -= 1
        if self._closed and self._io_refs == 0:
            self._real_close()

    def makefile(self, mode: str = "r", buffering: int | None = None, *, encoding: str | None = None,
                 errors: str | None = None, newline: str | None = None) -> Any:
        """File objects over the TLS connection, as ``socket.socket.makefile``."""
        return make_file(self, mode, buffering, encoding, errors, newline)

    # ================================================================= TLS state

    def getpeercert(self, binary_form: bool = False) -> Any:
        return self._obj().getpeercert(binary_form)

    def cipher(self) -> tuple[str, str, int] | None:
        return self._sslobj.cipher() if self._sslobj is not None else None

    def shared_ciphers(self) -> list[tuple[str, str, int]] | None:
        return self._sslobj.shared_ciphers() if self._sslobj is not None else None

    def version(self) -> str | None:
        return self._sslobj.version() if self._sslobj is not None else None

    def selected_alpn_protocol(self) -> str | None:
        return self._sslobj.selected_alpn_protocol() if self._sslobj is not None else None

    def compression(self) -> str | None:
        return self._sslobj.compression() if self._sslobj is not None else None

    def get_channel_binding(self, cb_type: str = "tls-unique") -> bytes | None:
        return self._obj().get_channel_binding(cb_type)

    @property
    def session(self) -> ssl.SSLSession | None:
        return self._sslobj.session if self._sslobj is not None else None

    @property
    def session_reused(self) -> bool | None:
        return self._sslobj.session_reused if self._sslobj is not None else None

    # ================================================================= the socket underneath

    def fileno(self) -> int:
        """The usernet socket's readiness descriptor. Mind ``pending()``: bytes already decrypted
        make no descriptor readable."""
        _refuse_ssl_adoption()  # ssl's wrap_socket on this object (TLS in TLS) would adopt it too
        if self._sock is None:
            return -1
        result: int = self._sock.fileno()
        return result

    def settimeout(self, value: float | None) -> None:
        self._sock.settimeout(value)

    def gettimeout(self) -> float | None:
        result: float | None = self._sock.gettimeout()
        return result

    def setblocking(self, flag: bool) -> None:
        self._sock.setblocking(flag)

    def getblocking(self) -> bool:
        result: bool = self._sock.getblocking()
        return result

    @property
    def timeout(self) -> float | None:
        return self.gettimeout()

    @property
    def family(self) -> int:
        result: int = self._sock.family
        return result

    @property
    def type(self) -> int:
        result: int = self._sock.type
        return result

    @property
    def proto(self) -> int:
        result: int = self._sock.proto
        return result

    def getsockname(self) -> tuple[str, int]:
        result: tuple[str, int] = self._sock.getsockname()
        return result

    def getpeername(self) -> tuple[str, int]:
        result: tuple[str, int] = self._sock.getpeername()
        return result

    def setsockopt(self, *args: Any) -> None:
        self._sock.setsockopt(*args)

    def getsockopt(self, level: int, option: int, *args: Any) -> Any:
        if level == _socket.SOL_SOCKET and option == _socket.SO_TYPE:
            _refuse_ssl_adoption()
        return self._sock.getsockopt(level, option, *args)

    # ================================================================= connecting, as SSLSocket

    def connect(self, address: Any) -> None:
        """Connect the socket underneath, then the handshake (with do_handshake_on_connect)."""
        self._connect(address, False)

    def connect_ex(self, address: Any) -> int:
        return self._connect(address, True)

    def _connect(self, address: Any, connect_ex: bool) -> int:
        if self.server_side:
            raise ValueError("can't connect in server-side mode")
        if self._handshaken or _connected(self._sock):
            raise ValueError("attempt to connect already-connected SSLSocket!")
        if connect_ex:
            result: int = self._sock.connect_ex(address)
            if result:
                return result
        else:
            self._sock.connect(address)
        if self.do_handshake_on_connect:
            self.do_handshake()
        return 0

    def bind(self, address: Any) -> None:
        self._sock.bind(address)

    def listen(self, backlog: int = 128) -> None:
        self._sock.listen(backlog)

    def accept(self) -> tuple[TlsSocket, Any]:
        """A connection from the listening socket underneath, wrapped server-side (the handshake
        runs here, in the accepting thread, as SSLSocket.accept does)."""
        conn, address = self._sock.accept()
        try:
            return TlsSocket(conn, self.context, server_side=True, do_handshake_on_connect=self.do_handshake_on_connect,
                             suppress_ragged_eofs=self.suppress_ragged_eofs), address
        except BaseException:
            conn.close()
            raise

    # ================================================================= the rest of SSLSocket's surface

    def verify_client_post_handshake(self) -> None:
        self._obj().verify_client_post_handshake()  # the request leaves with the next write

    def sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        """As SSLSocket without kTLS: read the file in chunks and send them encrypted."""
        if "b" not in getattr(file, "mode", "b"):
            raise ValueError("file should be opened in binary mode")
        if offset:
            file.seek(offset)
        total = 0
        try:
            while count is None or total < count:
                chunk = file.read(_CHUNK if count is None else min(_CHUNK, count - total))
                if not chunk:
                    break
                self.sendall(chunk)
                total += len(chunk)
            return total
        finally:
            if total > 0 and hasattr(file, "seek"):
                file.seek(offset + total)

    def recvfrom(self, bufsize: int = 1024, flags: int = 0) -> tuple[bytes, None]:
        if flags:
            raise ValueError(f"non-zero flags not allowed in calls to recvfrom() on {type(self).__name__}")
        return self.recv(bufsize), None

    def recvfrom_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> tuple[int, None]:
        if flags:
            raise ValueError(f"non-zero flags not allowed in calls to recvfrom_into() on {type(self).__name__}")
        return self.recv_into(buffer, nbytes), None

    def sendto(self, data: Any, flags_or_addr: Any, addr: Any = None) -> int:
        raise ValueError(f"sendto not allowed on instances of {type(self).__name__}")

    def recvmsg(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"recvmsg not allowed on instances of {type(self).__name__}")

    def recvmsg_into(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"recvmsg_into not allowed on instances of {type(self).__name__}")

    def sendmsg(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"sendmsg not allowed on instances of {type(self).__name__}")

    def dup(self) -> Any:
        raise NotImplementedError(f"Can't dup() {type(self).__name__} instances")

    def detach(self) -> Any:
        raise OSError(errno.EOPNOTSUPP, "a TLS socket over usernet cannot be detached: use unwrap() to get the "
                      "plain usernet socket back")
