"""Network namespaces, veth pairs and TAP devices for tests against real peers (the Linux kernel, socat, ...).

Everything created here carries this run's tag, so nothing collides with a parallel run and anything a
crashed test leaves behind can be found again:

    namespaces   un-<tag>-<n><role>     e.g. un-01a2b3c4-7p
    interfaces   vn<tag><n><role>       veth ends (at most 15 characters, the kernel's limit)
                 ut<tag><n>t            TAP devices

<tag> is this process's pid (6 hex digits) and one random byte. Fixture finalizers remove each object when
its test ends, pass or fail; `sweep()` (run at session finish and at exit) removes whatever is still tagged;
`sweep_stale()` (run at session start) removes what runs that died without cleaning up (SIGKILL,
pytest-timeout's thread method) left behind. A run holds an flock on /run/usernet-tests/<tag>.lock while
alive, so a tag whose lock is free belongs to a dead run.

Namespaces and threads (checked on Linux 6.x by tests/realpeer/test_infra.py):
- setns(2) moves only the calling thread. Other threads, including the main thread, stay where they are.
- A thread started by a thread that has entered a namespace starts in that namespace (clone copies the
  creating thread's namespaces). So a usernet Host created and started inside `in_netns(...)` runs its
  runtime thread there. Thread pools that already have workers do not follow: a worker lives in the
  namespace of the thread that happened to create it.
- A socket belongs to the namespace it was created in, for its whole life, whichever thread uses it.
- Child processes (subprocess) start in the namespace of the thread that forks them.
- /proc/self/net shows the main thread's namespace; /proc/thread-self/net the calling thread's.
  /sys/class/net is not switched by setns (that needs a remount, which `ip netns exec` does): code that
  reads it, like links.Packet today, fails inside `in_netns`. Run such code in-process with usernet's end
  in the root namespace (`make_veth_pair(own_netns=False)`), or in a subprocess under `ip netns exec`.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import errno
import fcntl
import gc
import ipaddress
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
IFNAMSIZ = 15
REPO = Path(__file__).resolve().parents[2]
LOCK_DIR = Path("/run/usernet-tests")

# pid_max is at most 2**22, so six hex digits always hold the pid: the tag has a fixed width and names parse
# back unambiguously.
RUN_TAG = f"{os.getpid():06x}{secrets.token_hex(1)}"
NETNS_PREFIX = "un-"
VETH_PREFIX = "vn"
TAP_PREFIX = "ut"
_OURS_NETNS = re.compile(r"^un-([0-9a-f]{8})-\d+[a-z]$")
_OURS_LINK = re.compile(r"^(?:vn|ut)([0-9a-f]{8})\d+[a-z]$")

_lock = threading.Lock()
_serial = 0
_lock_fd: int | None = None
_procs: list[subprocess.Popen[Any]] = []


# --------------------------------------------------------------------------- skip, or fail under CI=true

def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def unavailable(reason: str) -> None:
    """Skip the test for a missing precondition; under CI=true fail it, since CI must run every test."""
    if in_ci():
        pytest.fail(f"CI=true and {reason}: real-peer tests must run in CI", pytrace=False)
    pytest.skip(reason)


def need_program(*names: str) -> None:
    missing = [name for name in names if shutil.which(name) is None]
    if missing:
        unavailable(f"needs {', '.join(missing)} on PATH")


def need_root() -> None:
    """Root, /dev/net/tun and `ip`: what namespaces, veth, TAP and AF_PACKET need."""
    if os.geteuid() != 0:
        unavailable("needs root (network namespaces, veth, TAP, AF_PACKET)")
    if not os.path.exists("/dev/net/tun"):
        unavailable("needs /dev/net/tun")
    need_program("ip")


# --------------------------------------------------------------------------- running commands

def sh(*args: str, check: bool = True, timeout: float = 60, input: str | bytes | None = None,
       text: bool = True) -> subprocess.CompletedProcess[Any]:
    """Run a command; a failure raises with its stderr in the message, which pytest then shows."""
    result = subprocess.run(args, capture_output=True, timeout=timeout, input=input, text=text,
                            stdin=None if input is not None else subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {result.returncode}: {result.stderr!r}")
    return result


def python_env() -> dict[str, str]:
    """The environment for child Pythons: the repository on the path, so they import tests.* as we do (usernet
    comes from the interpreter, as here)."""
    paths = [str(REPO)]
    if os.environ.get("PYTHONPATH"):
        paths.append(os.environ["PYTHONPATH"])
    return dict(os.environ, PYTHONPATH=os.pathsep.join(paths))


def spawn(*args: str, **popen_kw: Any) -> subprocess.Popen[Any]:
    """Start a background process that is killed at teardown at the latest (see `kill`).

    It gets its own session, so killing its process group also takes any children (socat fork, shells).
    """
    popen_kw.setdefault("stdin", subprocess.DEVNULL)
    proc: subprocess.Popen[Any] = subprocess.Popen(args, start_new_session=True, **popen_kw)
    with _lock:
        _procs.append(proc)
    return proc


def kill(proc: subprocess.Popen[Any], grace: float = 3.0) -> int | None:
    """SIGTERM the process group, SIGKILL it after `grace` seconds; close the pipes. Returns the exit code."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    else:
        # The leader is gone, but children may still hold the group (socat's forked handlers).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
    with _lock:
        if proc in _procs:
            _procs.remove(proc)
    return proc.returncode


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02,
             what: str = "condition") -> Any:
    """Poll until `predicate()` is truthy and return its value; raise TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not reached within {timeout} s")
        time.sleep(interval)


# --------------------------------------------------------------------------- setns

def _setns(fd: int) -> None:
    if hasattr(os, "setns"):  # Python 3.12+
        os.setns(fd, CLONE_NEWNET)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(ctypes.c_int(fd), ctypes.c_int(CLONE_NEWNET)) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"setns: {os.strerror(code)}")


def netns_path(name: str) -> str:
    return name if name.startswith("/") else f"/run/netns/{name}"


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Move the calling thread (only it) into network namespace `name` for the block, then back.

    Sockets created and threads started inside the block stay in that namespace after it ends.
    """
    target = os.open(netns_path(name), os.O_RDONLY | os.O_CLOEXEC)
    try:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except BaseException:
        os.close(target)
        raise
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)


def current_netns_inode() -> int:
    """Identifies the calling thread's network namespace (compare with `netns_inode(name)`)."""
    return os.stat("/proc/thread-self/ns/net").st_ino


def netns_inode(name: str) -> int:
    return os.stat(netns_path(name)).st_ino


def call_in_netns(name: str, fn: Callable[..., T], *args: Any, timeout: float | None = 60, **kwargs: Any) -> T:
    """Run `fn(*args, **kwargs)` in a fresh thread inside namespace `name`; return its result or raise its
    exception here. The calling thread never changes namespace."""
    box: dict[str, Any] = {}

    def body() -> None:
        try:
            with in_netns(name):
                box["value"] = fn(*args, **kwargs)
        except BaseException as err:  # handed to the caller
            box["error"] = err

    thread = threading.Thread(target=body, name=f"in-{name}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"{getattr(fn, '__name__', fn)} still running in {name} after {timeout} s")
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- names and the run's lock

def _next_serial() -> int:
    global _serial
    with _lock:
        _serial += 1
        return _serial


def _hold_run_lock() -> None:
    """Take this run's lock file (once): a held lock tells other runs our tagged objects are alive."""
    global _lock_fd
    with _lock:
        if _lock_fd is not None:
            return
        LOCK_DIR.mkdir(parents=True, exist_ok=True)
        fd = os.open(LOCK_DIR / f"{RUN_TAG}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        _lock_fd = fd


def new_name(prefix: str, role: str) -> str:
    """A fresh tagged name; `role` is one letter that says what it is (p peer, u usernet, t tap...)."""
    assert len(role) == 1 and role.isalpha() and role.islower(), role
    serial = _next_serial()
    if prefix == NETNS_PREFIX:
        return f"{NETNS_PREFIX}{RUN_TAG}-{serial}{role}"
    name = f"{prefix}{RUN_TAG}{serial}{role}"
    assert len(name) <= IFNAMSIZ, name
    return name


# --------------------------------------------------------------------------- namespaces

@dataclass
class Netns:
    """A network namespace of this run, with its loopback up."""

    name: str
    procs: list[subprocess.Popen[Any]] = field(default_factory=list)
    closed: bool = False

    @classmethod
    def create(cls, role: str = "n") -> Netns:
        _hold_run_lock()
        ns = cls(new_name(NETNS_PREFIX, role))
        sh("ip", "netns", "add", ns.name)
        try:
            ns.run("ip", "link", "set", "lo", "up")
        except BaseException:
            sh("ip", "netns", "del", ns.name, check=False)
            raise
        return ns

    def argv(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *args]

    def run(self, *args: str, check: bool = True, timeout: float = 60, input: str | bytes | None = None,
            text: bool = True) -> subprocess.CompletedProcess[Any]:
        """Run a command inside the namespace and wait for it (`check`: raise on a non-zero exit)."""
        return sh(*self.argv(*args), check=check, timeout=timeout, input=input, text=text)

    def spawn(self, *args: str, **popen_kw: Any) -> subprocess.Popen[Any]:
        """Start a background command inside the namespace; it is killed when the namespace is removed."""
        proc = spawn(*self.argv(*args), **popen_kw)
        self.procs.append(proc)
        return proc

    def python(self, code: str, *args: str, check: bool = True, timeout: float = 60,
               input: str | bytes | None = None) -> subprocess.CompletedProcess[Any]:
        """Run `python -c code args...` inside the namespace (this interpreter, usernet importable)."""
        result = subprocess.run(self.argv(sys.executable, "-c", code, *args), capture_output=True, text=True,
                                timeout=timeout, input=input, env=python_env(),
                                stdin=None if input is not None else subprocess.DEVNULL)
        if check and result.returncode != 0:
            raise AssertionError(f"python in {self.name} exited {result.returncode}:\n{result.stderr}")
        return result

    def spawn_python(self, code: str, *args: str, **popen_kw: Any) -> subprocess.Popen[Any]:
        popen_kw.setdefault("env", python_env())
        return self.spawn(sys.executable, "-c", code, *args, **popen_kw)

    def call(self, fn: Callable[..., T], *args: Any, timeout: float | None = 60, **kwargs: Any) -> T:
        """Run a Python callable in a thread inside the namespace (see `call_in_netns`)."""
        return call_in_netns(self.name, fn, *args, timeout=timeout, **kwargs)

    def enter(self) -> contextlib.AbstractContextManager[None]:
        """`with ns.enter():` moves the calling thread in for the block (see `in_netns`)."""
        return in_netns(self.name)

    def listening(self, port: int, udp: bool = False) -> bool:
        flags = "-Hlun" if udp else "-Hltn"
        return bool(self.run("ss", flags, f"sport = :{port}").stdout.strip())

    def wait_listening(self, port: int, udp: bool = False, timeout: float = 10.0) -> None:
        """Wait until something in the namespace listens on `port` (a server started with `spawn`)."""
        wait_for(lambda: self.listening(port, udp), timeout,
                 what=f"{'udp' if udp else 'tcp'} port {port} listening in {self.name}")

    def mac(self, ifname: str) -> str:
        return str(self.run("cat", f"/sys/class/net/{ifname}/address").stdout).strip()

    def close(self) -> None:
        """Kill the namespace's processes, then delete it (which also removes the veth ends inside)."""
        if self.closed:
            return
        self.closed = True
        for proc in reversed(self.procs):
            kill(proc)
        sh("ip", "netns", "del", self.name, check=False)

    def __enter__(self) -> Netns:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- veth pairs

@dataclass
class VethPair:
    """A veth pair: the kernel peer end (`peer_if` in namespace `peer`, address `peer_addr`, up) and the end
    for usernet (`ifname`, up, no kernel address, IPv6 off so the kernel there stays silent) in namespace
    `ns`, or in the root namespace when `ns` is None."""

    peer: Netns
    peer_if: str
    peer_addr: str        # e.g. "10.77.0.1/24"
    ns: Netns | None
    ifname: str
    addr: str             # the address usernet should take, e.g. "10.77.0.2/24"

    @property
    def peer_ip(self) -> str:
        return self.peer_addr.split("/")[0]

    @property
    def ip(self) -> str:
        return self.addr.split("/")[0]

    def enter(self) -> contextlib.AbstractContextManager[None]:
        """Enter usernet's namespace (a no-op when usernet's end is in the root namespace)."""
        return self.ns.enter() if self.ns is not None else contextlib.nullcontext()

    def run(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[Any]:
        """Run a command on usernet's side."""
        return self.ns.run(*args, **kw) if self.ns is not None else sh(*args, **kw)

    def spawn(self, *args: str, **popen_kw: Any) -> subprocess.Popen[Any]:
        """Start a background command on usernet's side (killed at teardown)."""
        return self.ns.spawn(*args, **popen_kw) if self.ns is not None else spawn(*args, **popen_kw)

    def usernet_argv(self, *args: str) -> list[str]:
        """argv running the usernet CLI on usernet's side, e.g. `usernet_argv("up", "--iface", v.ifname...)`."""
        argv = [sys.executable, "-m", "usernet.cli", *args]
        return self.ns.argv(*argv) if self.ns is not None else argv

    @property
    def mac(self) -> str:
        return str(self.run("cat", f"/sys/class/net/{self.ifname}/address").stdout).strip()


def create_veth_pair(peer_addr: str = "10.77.0.1/24", addr: str = "10.77.0.2/24", own_netns: bool = True,
                     kernel_addr: bool = False, mtu: int | None = None) -> tuple[VethPair, list[Netns]]:
    """Build a veth pair; returns it and the namespaces to close (the peer's first). `kernel_addr=True` also
    gives the kernel `addr` on usernet's end (for Linux-to-Linux baselines)."""
    _hold_run_lock()
    peer = Netns.create("p")
    owned = [peer]
    try:
        ns = Netns.create("u") if own_netns else None
        if ns is not None:
            owned.append(ns)
        peer_if, ifname = new_name(VETH_PREFIX, "p"), new_name(VETH_PREFIX, "u")
        far = ["netns", ns.name] if ns is not None else []
        sh("ip", "link", "add", peer_if, "netns", peer.name, "type", "veth", "peer", "name", ifname, *far)
        pair = VethPair(peer, peer_if, peer_addr, ns, ifname, addr)
        if mtu is not None:
            peer.run("ip", "link", "set", peer_if, "mtu", str(mtu))
            pair.run("ip", "link", "set", ifname, "mtu", str(mtu))
        peer.run("ip", "addr", "add", peer_addr, "dev", peer_if)
        peer.run("ip", "link", "set", peer_if, "up")
        pair.run("sysctl", "-qw", f"net.ipv6.conf.{ifname}.disable_ipv6=1")
        # Frames to usernet carry this end's own MAC, so the kernel on this side sees them too: with forwarding
        # off on the interface it drops them silently instead of routing them (matters in the root namespace).
        pair.run("sysctl", "-qw", f"net.ipv4.conf.{ifname}.forwarding=0")
        if kernel_addr:
            pair.run("ip", "addr", "add", addr, "dev", ifname)
        pair.run("ip", "link", "set", ifname, "up")
        return pair, owned
    except BaseException:
        close_veth(owned, None)
        raise


def close_veth(owned: list[Netns], root_ifname: str | None) -> None:
    for ns in owned:
        ns.close()
    # Deleting the peer namespace destroys the pair; this only matters if that failed half-way.
    if root_ifname is not None:
        sh("ip", "link", "del", root_ifname, check=False)


# --------------------------------------------------------------------------- TAP devices

@dataclass
class TapDevice:
    """A persistent TAP device (`name`) whose kernel side has `kernel_addr` and is up, in namespace `ns` (or
    the root namespace when None). usernet attaches with `Tap(name)` from inside that namespace."""

    name: str
    kernel_addr: str      # e.g. "10.78.0.1/24"
    addr: str             # the address usernet should take
    ns: Netns | None

    @property
    def kernel_ip(self) -> str:
        return self.kernel_addr.split("/")[0]

    @property
    def ip(self) -> str:
        return self.addr.split("/")[0]

    def enter(self) -> contextlib.AbstractContextManager[None]:
        return self.ns.enter() if self.ns is not None else contextlib.nullcontext()

    def run(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[Any]:
        """Run a command on the kernel's side (the namespace holding the tap)."""
        return self.ns.run(*args, **kw) if self.ns is not None else sh(*args, **kw)

    def spawn(self, *args: str, **popen_kw: Any) -> subprocess.Popen[Any]:
        return self.ns.spawn(*args, **popen_kw) if self.ns is not None else spawn(*args, **popen_kw)

    def usernet_argv(self, *args: str) -> list[str]:
        argv = [sys.executable, "-m", "usernet.cli", *args]
        return self.ns.argv(*argv) if self.ns is not None else argv

    def close(self) -> None:
        if self.ns is not None:
            self.ns.close()  # takes the tap with it
        else:
            sh("ip", "link", "del", self.name, check=False)


def create_tap(kernel_addr: str = "10.78.0.1/24", addr: str = "10.78.0.2/24", own_netns: bool = True) -> TapDevice:
    """`own_netns=False` puts the tap in the root namespace: its address then adds a route to the machine's
    table, so pick a subnet no parallel run uses."""
    _hold_run_lock()
    ns = Netns.create("t") if own_netns else None
    tap = TapDevice(new_name(TAP_PREFIX, "t"), kernel_addr, addr, ns)
    try:
        tap.run("ip", "tuntap", "add", "dev", tap.name, "mode", "tap")
        tap.run("sysctl", "-qw", f"net.ipv6.conf.{tap.name}.disable_ipv6=1")
        tap.run("ip", "addr", "add", kernel_addr, "dev", tap.name)
        tap.run("ip", "link", "set", tap.name, "up")
        return tap
    except BaseException:
        tap.close()
        raise


# --------------------------------------------------------------------------- sweeping

def _tagged_netns() -> list[tuple[str, str]]:
    out = sh("ip", "netns", "list", check=False).stdout
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    return [(name, m.group(1)) for name in names if (m := _OURS_NETNS.match(name))]


def _tagged_links() -> list[tuple[str, str]]:
    out = sh("ip", "-o", "link", "show", check=False).stdout
    found = []
    for line in out.splitlines():
        parts = line.split(":", 2)
        if len(parts) < 2:
            continue
        name = parts[1].strip().split("@")[0]
        if m := _OURS_LINK.match(name):
            found.append((name, m.group(1)))
    return found


def _remove(tags: set[str]) -> list[str]:
    removed = []
    for name, tag in _tagged_netns():
        if tag in tags:
            sh("ip", "netns", "del", name, check=False)
            removed.append(name)
    for name, tag in _tagged_links():
        if tag in tags:
            sh("ip", "link", "del", name, check=False)
            removed.append(name)
    return removed


def sweep() -> list[str]:
    """Kill this run's leftover processes and remove its leftover namespaces and interfaces; return their
    names. Fixtures clean up after themselves, so a non-empty answer means one of them leaked."""
    with _lock:
        procs = list(_procs)
    leftovers = [f"pid {p.pid} ({' '.join(map(str, p.args))})" for p in procs if p.poll() is None]  # type: ignore[arg-type]
    for proc in procs:
        kill(proc, grace=1.0)
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return leftovers
    return leftovers + _remove({RUN_TAG})


def sweep_stale() -> list[str]:
    """Remove what earlier runs that died without cleaning up left behind: tags whose lock is free."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return []
    tags = {tag for _, tag in _tagged_netns() + _tagged_links()} - {RUN_TAG}
    dead = set()
    for tag in tags:
        try:
            fd = os.open(LOCK_DIR / f"{tag}.lock", os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # not ours to judge (another machine's /run, or a run from before lock files)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            continue  # alive
        finally:
            os.close(fd)
        dead.add(tag)
    removed = _remove(dead)
    for tag in dead:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(LOCK_DIR / f"{tag}.lock")
    return removed


def release_run_lock() -> None:
    global _lock_fd
    with _lock:
        if _lock_fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(LOCK_DIR / f"{RUN_TAG}.lock")
        os.close(_lock_fd)
        _lock_fd = None


def _at_exit() -> None:
    # Last resort if pytest_sessionfinish did not run (an interpreter exiting on an exception).
    with contextlib.suppress(Exception):
        sweep()
    with contextlib.suppress(Exception):
        release_run_lock()


atexit.register(_at_exit)


# --------------------------------------------------------------------------- file descriptors

def open_fds() -> dict[int, str]:
    """This process's open file descriptors and what they point to (from /proc/self/fd)."""
    fds = {}
    for entry in os.listdir("/proc/self/fd"):
        try:
            fds[int(entry)] = os.readlink(f"/proc/self/fd/{entry}")
        except FileNotFoundError:
            pass  # the descriptor listdir itself used, closed by now
    return fds


def fd_leaks(before: dict[int, str], settle: float = 2.0) -> dict[int, str]:
    """Descriptors open now that were not in `before`, after up to `settle` seconds for threads that are
    shutting down to close theirs. Empty means no leak."""
    ignore = {str(LOCK_DIR / f"{RUN_TAG}.lock")}
    deadline = time.monotonic() + settle
    while True:
        gc.collect()
        new = {fd: what for fd, what in open_fds().items()
               if before.get(fd) != what and what not in ignore}
        if not new or time.monotonic() >= deadline:
            return new
        time.sleep(0.05)


def assert_no_fd_leak(before: dict[int, str], settle: float = 2.0) -> None:
    leaked = fd_leaks(before, settle)
    assert not leaked, f"file descriptors leaked: {leaked}"


# --------------------------------------------------------------------------- small conveniences

def ping_summary(output: str) -> tuple[int, int]:
    """(transmitted, received) from iputils ping's (or usernet ping's) summary line."""
    match = re.search(r"(\d+) packets transmitted, (\d+) received", output)
    assert match, output
    return int(match.group(1)), int(match.group(2))


def host_in(addr: str, n: int) -> str:
    """The n-th address of `addr`'s network, with its prefix: host_in("10.77.0.1/24", 5) == "10.77.0.5/24"."""
    net = ipaddress.ip_interface(addr).network
    return f"{net.network_address + n}/{net.prefixlen}"
