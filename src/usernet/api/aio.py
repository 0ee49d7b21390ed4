"""asyncio streams over usernet sockets.

A usernet socket's ``fileno()`` is a real descriptor whose readiness mirrors the socket (see
:mod:`usernet.api.readiness`), so the event loop's ``add_reader``/``add_writer`` drive a small
Transport here, and asyncio's own ``StreamReaderProtocol`` turns it into the standard
``StreamReader``/``StreamWriter`` pair: ``drain()`` backpressure, ``write_eof()``,
``wait_closed()`` and the rest behave as with kernel sockets.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import socket as _socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from usernet.api.host import Host
    from usernet.api.socket import Socket

_READ_SIZE = 256 * 1024


class UsernetTransport(asyncio.Transport):
    """A stream transport over one non-blocking usernet socket."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: Socket, protocol: asyncio.BaseProtocol,
                 server: UsernetServer | None = None) -> None:
        super().__init__()
        self._info: dict[str, Any] = {"socket": sock}
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._protocol: Any = protocol
        self._server = server
        self._buffer: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._high = 64 * 1024
        self._low = 16 * 1024
        self._protocol_paused = False
        self._reading = True
        self._closing = False
        self._closed = False
        self._eof_pending = False
        self._writer_registered = False
        try:
            self._info["peername"] = sock.getpeername()
        except OSError:
            self._info["peername"] = None
        self._info["sockname"] = sock.getsockname()
        if server is not None:
            server._attach()
        loop.call_soon(protocol.connection_made, self)
        loop.call_soon(self._add_reader)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._info.get(name, default)

    # ----------------------------------------------------------------- reading

    def _add_reader(self) -> None:
        if self._reading and not self._closing and not self._closed:
            self._loop.add_reader(self._fd, self._on_readable)

    def _on_readable(self) -> None:
        if self._closed:
            return
        try:
            data = self._sock.recv(_READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as err:
            self._fatal(err)
            return
        if data:
            self._protocol.data_received(data)
            return
        self._loop.remove_reader(self._fd)
        keep_open = self._protocol.eof_received()
        if not keep_open:
            self.close()

    def pause_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._fd)

    def resume_reading(self) -> None:
        if not self._reading:
            self._reading = True
            self._add_reader()

    def is_reading(self) -> bool:
        return self._reading and not self._closing

    # ----------------------------------------------------------------- writing

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._eof_pending or self._closing:
            raise RuntimeError("cannot write after write_eof() or close()")
        if not data:
            return
        if not self._buffer:
            try:
                sent = self._sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as err:
                self._fatal(err)
                return
            if sent == len(data):
                return
            data = bytes(memoryview(data)[sent:])
        else:
            data = bytes(data)
        self._buffer.append(data)
        self._buffered += len(data)
        self._register_writer()
        self._maybe_pause_protocol()

    def _register_writer(self) -> None:
        if not self._writer_registered:
            self._writer_registered = True
            self._loop.add_writer(self._fd, self._on_writable)

    def _on_writable(self) -> None:
        while self._buffer:
            chunk = self._buffer[0]
            try:
                sent = self._sock.send(chunk)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as err:
                self._fatal(err)
                return
            self._buffered -= sent
            if sent < len(chunk):
                self._buffer[0] = chunk[sent:]
                break
            self._buffer.popleft()
        self._maybe_resume_protocol()
        if not self._buffer:
            self._writer_registered = False
            self._loop.remove_writer(self._fd)
            if self._eof_pending:
                self._shutdown_write()
            if self._closing:
                self._call_connection_lost(None)

    def _maybe_pause_protocol(self) -> None:
        if self._buffered > self._high and not self._protocol_paused:
            self._protocol_paused = True
            self._protocol.pause_writing()

    def _maybe_resume_protocol(self) -> None:
        if self._protocol_paused and self._buffered <= self._low:
            self._protocol_paused = False
            self._protocol.resume_writing()

    def get_write_buffer_size(self) -> int:
        return self._buffered

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self._low, self._high)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = 64 * 1024 if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high, self._low = high, low
        self._maybe_pause_protocol()

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if self._eof_pending or self._closing:
            return
        self._eof_pending = True
        if not self._buffer:
            self._shutdown_write()

    def _shutdown_write(self) -> None:
        try:
            self._sock.shutdown(_socket.SHUT_WR)
        except OSError as err:
            if err.errno != errno.ENOTCONN:
                self._fatal(err)

    # ----------------------------------------------------------------- closing

    def is_closing(self) -> bool:
        return self._closing or self._closed

    def close(self) -> None:
        if self._closing or self._closed:
            return
        self._closing = True
        self._loop.remove_reader(self._fd)
        if not self._buffer:
            self._loop.call_soon(self._call_connection_lost, None)

    def abort(self) -> None:
        self._force_close(None, abortive=True)

    def _fatal(self, exc: BaseException) -> None:
        self._force_close(exc, abortive=False)

    def _force_close(self, exc: BaseException | None, abortive: bool) -> None:
        if self._closed:
            return
        self._buffer.clear()
        self._buffered = 0
        self._closing = True
        self._loop.remove_reader(self._fd)
        if self._writer_registered:
            self._writer_registered = False
            self._loop.remove_writer(self._fd)
        if abortive:
            try:
                self._sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            except OSError:
                pass
        self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        if self._closed:
            return
        self._closed = True
        if self._writer_registered:
            self._writer_registered = False
            self._loop.remove_writer(self._fd)
        self._loop.remove_reader(self._fd)
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._sock.close()
            if self._server is not None:
                self._server._detach()
                self._server = None

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol  # type: ignore[no-any-return]

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol


async def _wait_fd(loop: asyncio.AbstractEventLoop, fd: int, writable: bool) -> None:
    future: asyncio.Future[None] = loop.create_future()
    add, remove = (loop.add_writer, loop.remove_writer) if writable else (loop.add_reader, loop.remove_reader)

    def ready() -> None:
        if not future.done():
            future.set_result(None)

    add(fd, ready)
    try:
        await future
    finally:
        remove(fd)


async def open_connection(usernet_host: Host, host: str, port: int, *, limit: int = 2**16,
                          local_addr: tuple[str, int] | None = None
                          ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect over usernet and return asyncio's own ``(StreamReader, StreamWriter)``."""
    loop = asyncio.get_running_loop()
    sock = usernet_host.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        if local_addr is not None:
            sock.bind(local_addr)
        code = sock.connect_ex((host, port))
        if code not in (0, errno.EINPROGRESS):
            raise OSError(code, errno.errorcode.get(code, "connect failed"))
        while True:
            err = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_ERROR)
            if err:
                raise _connect_error(err)
            if sock._is_connected():
                break
            await _wait_fd(loop, sock.fileno(), writable=True)
    except BaseException:
        sock.close()
        raise
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport = UsernetTransport(loop, sock, protocol)
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    await asyncio.sleep(0)  # let connection_made run, as asyncio.open_connection does
    return reader, writer


def _connect_error(code: int) -> OSError:
    kinds: dict[int, type[OSError]] = {errno.ECONNREFUSED: ConnectionRefusedError,
                                       errno.ECONNRESET: ConnectionResetError, errno.ETIMEDOUT: TimeoutError}
    import os

    return kinds.get(code, OSError)(code, os.strerror(code))


class UsernetServer:
    """What ``start_server`` returns: the ``asyncio.Server`` surface that stream servers use."""

    def __init__(self, loop: asyncio.AbstractEventLoop, listener: Socket,
                 factory: Callable[[], asyncio.BaseProtocol]) -> None:
        self._loop = loop
        self._listener: Socket | None = listener
        self._factory = factory
        self._active = 0
        self._waiters: list[asyncio.Future[None]] = []
        self._serving = False
        self.sockets = [listener]

    def _attach(self) -> None:
        self._active += 1

    def _detach(self) -> None:
        self._active -= 1
        if self._active == 0 and self._listener is None:
            self._wake()

    def _wake(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    def _start(self) -> None:
        if self._serving or self._listener is None:
            return
        self._serving = True
        self._loop.add_reader(self._listener.fileno(), self._on_accept)

    def _on_accept(self) -> None:
        listener = self._listener
        if listener is None:
            return
        for _ in range(64):
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            conn.setblocking(False)
            UsernetTransport(self._loop, conn, self._factory(), server=self)

    def is_serving(self) -> bool:
        return self._serving

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is None:
            return
        self._serving = False
        self._loop.remove_reader(listener.fileno())
        listener.close()
        self.sockets = []
        if self._active == 0:
            self._wake()

    async def wait_closed(self) -> None:
        if self._listener is None and self._active == 0:
            return
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._waiters.append(waiter)
        await waiter

    async def start_serving(self) -> None:
        self._start()

    async def serve_forever(self) -> None:
        self._start()
        forever: asyncio.Future[None] = self._loop.create_future()
        try:
            await forever
        finally:
            self.close()

    async def __aenter__(self) -> UsernetServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
        await self.wait_closed()


async def start_server(usernet_host: Host,
                       client_connected_cb: Callable[[asyncio.StreamReader, asyncio.StreamWriter],
                                                     Awaitable[None] | None],
                       host: str | None = None, port: int = 0, *, limit: int = 2**16, backlog: int = 100,
                       reuse_address: bool = True) -> UsernetServer:
    """Listen over usernet; call *client_connected_cb(reader, writer)* for each connection."""
    loop = asyncio.get_running_loop()
    listener = usernet_host.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    try:
        if reuse_address:
            listener.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
        listener.bind((host or "", port))
        listener.listen(backlog)
        listener.setblocking(False)
    except BaseException:
        listener.close()
        raise

    def factory() -> asyncio.BaseProtocol:
        reader = asyncio.StreamReader(limit=limit, loop=loop)
        return asyncio.StreamReaderProtocol(reader, client_connected_cb, loop=loop)  # type: ignore[arg-type]

    server = UsernetServer(loop, listener, factory)
    server._start()
    return server
