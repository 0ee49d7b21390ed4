"""Tests of the real-peer machinery itself (tests/realpeer/netns.py and plugin.py)."""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from tests.realpeer import netns as nn

# Tests taking a topology fixture skip (or fail under CI=true) without root through the fixture; the rest
# run anywhere.

REPO = Path(__file__).resolve().parents[2]


def netns_names() -> set[str]:
    return {line.split()[0] for line in nn.sh("ip", "netns", "list").stdout.splitlines() if line.strip()}


def link_names() -> set[str]:
    return {line.split(":")[1].strip().split("@")[0] for line in nn.sh("ip", "-o", "link").stdout.splitlines()}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it has exited all the same.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def run_pytest(tmp_path: Path, source: str, ci: str | None) -> subprocess.CompletedProcess[str]:
    """Run a generated test file in a child pytest with only our plugin loaded (no repository conftest)."""
    (tmp_path / "test_generated.py").write_text(textwrap.dedent(source))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("CI", None)
    env.pop("PYTEST_ADDOPTS", None)
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rsfE", "-p", "no:cacheprovider",
                           "-p", "tests.realpeer.plugin", "test_generated.py"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)


# --------------------------------------------------------------------------- names, namespaces, processes

def test_names_carry_the_run_tag_and_fit_ifnamsiz(netns, veth_pair, tap_device) -> None:
    ns = netns()
    assert re.fullmatch(rf"un-{nn.RUN_TAG}-\d+n", ns.name)
    assert int(nn.RUN_TAG[:6], 16) == os.getpid()
    for ifname in (veth_pair.ifname, veth_pair.peer_if, tap_device.name):
        assert len(ifname) <= nn.IFNAMSIZ and ifname.startswith(("vn", "ut")) and nn.RUN_TAG in ifname
    for name in (ns.name, veth_pair.peer.name, tap_device.ns.name):  # type: ignore[union-attr]
        assert name.startswith("un-") and name in netns_names()


def test_namespace_is_created_and_removed(netns) -> None:
    ns = netns()
    assert ns.name in netns_names()
    assert "UP" in ns.run("ip", "-o", "link", "show", "lo").stdout  # loopback is up
    ns.close()  # what the fixture's finalizer does
    assert ns.name not in netns_names()
    ns.close()  # idempotent


def test_background_process_and_its_children_are_killed(netns) -> None:
    ns = netns()
    proc = ns.spawn("sh", "-c", "sleep 1000 & echo $!; wait", stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    grandchild = int(proc.stdout.readline())
    assert alive(proc.pid) and alive(grandchild)
    ns.close()
    assert proc.poll() is not None
    nn.wait_for(lambda: not alive(grandchild), 5, what="grandchild gone")


# --------------------------------------------------------------------------- the kernel across veth

def test_kernel_to_kernel_ping_across_the_pair(make_veth_pair) -> None:
    nn.need_program("ping")
    pair = make_veth_pair(kernel_addr=True)
    result = pair.peer.run("ping", "-c", "3", "-i", "0.05", "-W", "2", pair.ip, check=False)
    assert nn.ping_summary(result.stdout) == (3, 3), result.stdout
    back = pair.run("ping", "-c", "1", "-W", "2", pair.peer_ip, check=False)
    assert nn.ping_summary(back.stdout) == (1, 1), back.stdout


def test_usernet_end_in_the_root_namespace(make_veth_pair) -> None:
    pair = make_veth_pair(own_netns=False, kernel_addr=False)
    assert pair.ns is None and pair.ifname in link_names()
    assert "UP" in nn.sh("ip", "-o", "link", "show", pair.ifname).stdout
    assert nn.sh("ip", "-o", "-4", "addr", "show", "dev", pair.ifname).stdout == ""  # the kernel stays silent


def test_socat_in_the_peer_namespace(make_veth_pair) -> None:
    nn.need_program("socat")
    pair = make_veth_pair(kernel_addr=True)
    pair.peer.spawn("socat", "UDP-LISTEN:7,fork,reuseaddr", "EXEC:cat")
    pair.peer.wait_listening(7, udp=True)
    echo = pair.run("socat", "-T", "2", "-", f"UDP:{pair.peer_ip}:7", input="hello\n")
    assert echo.stdout == "hello\n"


def test_tap_device_is_addressed_and_up(tap_device) -> None:
    out = tap_device.run("ip", "-o", "-4", "addr", "show", "dev", tap_device.name).stdout
    assert tap_device.kernel_addr in out
    flags = tap_device.run("ip", "-o", "link", "show", tap_device.name).stdout.split(">")[0]
    assert "UP" in flags.split("<")[1].split(",")  # administratively up; carrier comes when usernet attaches
    assert "tap" in tap_device.run("ip", "-d", "-o", "link", "show", tap_device.name).stdout


# --------------------------------------------------------------------------- setns and threads

def test_setns_moves_only_the_calling_thread_and_threads_it_starts(netns) -> None:
    ns = netns()
    home, target = nn.current_netns_inode(), nn.netns_inode(ns.name)
    assert home != target
    seen: dict[str, int] = {}

    def record(key: str) -> None:
        seen[key] = nn.current_netns_inode()

    outside_go, outside_done = threading.Event(), threading.Event()

    def outsider() -> None:  # a thread that existed before: it stays home
        outside_go.wait(10)
        record("existing thread")
        outside_done.set()

    threading.Thread(target=outsider).start()
    with nn.in_netns(ns.name):
        record("caller")
        child = threading.Thread(target=record, args=("started inside",))
        child.start()
        child.join()
        outside_go.set()
        outside_done.wait(10)
        out = subprocess.run(["readlink", "/proc/self/ns/net"], capture_output=True, text=True).stdout
        seen["subprocess"] = int(out.strip().split("[")[1].rstrip("]"))
        # /proc/self is the main thread; only /proc/thread-self follows setns.
        seen["/proc/self"] = os.stat("/proc/self/ns/net").st_ino
    record("caller after")
    assert seen == {"caller": target, "started inside": target, "existing thread": home, "subprocess": target,
                    "/proc/self": home if threading.current_thread() is not threading.main_thread() else target,
                    "caller after": home}


def test_socket_keeps_its_namespace_after_the_thread_leaves(veth_pair) -> None:
    """An AF_PACKET socket opened inside the namespace works from outside: ARP the kernel peer with it."""
    with veth_pair.enter():
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
        sock.bind((veth_pair.ifname, 0x0806))
    with pytest.raises(OSError):
        socket.if_nametoindex(veth_pair.ifname)  # not visible from here...
    with sock:
        sock.settimeout(2)
        mac = sock.getsockname()[4]
        peer_ip, my_ip = socket.inet_aton(veth_pair.peer_ip), socket.inet_aton(veth_pair.ip)
        arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac, my_ip, b"\0" * 6, peer_ip)
        sock.send(b"\xff" * 6 + mac + b"\x08\x06" + arp)  # ...yet the socket still sends there
        while True:
            frame = sock.recv(2048)
            op, sender_ip = struct.unpack_from("!H", frame, 20)[0], frame[28:32]
            if op == 2 and sender_ip == peer_ip:
                break


def test_call_in_netns_returns_the_value_or_raises(netns) -> None:
    ns = netns()
    assert ns.call(nn.current_netns_inode) == nn.netns_inode(ns.name)
    assert nn.current_netns_inode() != nn.netns_inode(ns.name)
    with pytest.raises(ZeroDivisionError):
        ns.call(lambda: 1 / 0)
    assert ns.python("import socket; print(socket.if_nameindex())").stdout.strip() == "[(1, 'lo')]"


def test_usernet_in_process_on_a_root_namespace_veth_end(make_veth_pair) -> None:
    usernet = pytest.importorskip("usernet")
    links = pytest.importorskip("usernet.links")
    pair = make_veth_pair(own_netns=False)
    with usernet.Host(links.Packet(pair.ifname), addr=pair.addr) as host:
        result = pair.peer.run("ping", "-c", "3", "-i", "0.05", "-W", "2", pair.ip, check=False)
        assert nn.ping_summary(result.stdout) == (3, 3), result.stdout
        assert len(host.ping(pair.peer_ip, count=2)) == 2


def test_usernet_in_process_inside_a_namespace(veth_pair) -> None:
    """links.Packet takes MAC and MTU by ioctl, so it works in a namespace entered with setns
    (/sys/class/net would still show the namespace it was mounted in)."""
    usernet = pytest.importorskip("usernet")
    links = pytest.importorskip("usernet.links")
    with veth_pair.enter():
        host = usernet.Host(links.Packet(veth_pair.ifname), addr=veth_pair.addr)
        host.start()  # the runtime thread is born inside the namespace
    try:
        result = veth_pair.peer.run("ping", "-c", "3", "-i", "0.05", "-W", "2", veth_pair.ip, check=False)
        assert nn.ping_summary(result.stdout) == (3, 3), result.stdout
    finally:
        host.close()


# --------------------------------------------------------------------------- file descriptors

def test_open_fds_sees_a_leak_and_its_end(tmp_path) -> None:
    before = nn.open_fds()
    f = open(tmp_path / "x", "w")
    leaked = nn.fd_leaks(before, settle=0)
    assert list(leaked.values()) == [str(tmp_path / "x")]
    f.close()
    nn.assert_no_fd_leak(before, settle=0)


# --------------------------------------------------------------------------- CI=true, teardown, sweeps

CI_PROBE = """
    import os
    import pytest
    from tests.realpeer import netns as nn

    @pytest.mark.root("usernet-no-such-program")
    def test_marker():
        pass

    def test_need_program():
        nn.need_program("usernet-no-such-program")

    def test_need_root(monkeypatch):
        monkeypatch.setattr(os, "geteuid", lambda: 1000)
        nn.need_root()
"""


def test_missing_preconditions_skip_with_a_reason(tmp_path) -> None:
    result = run_pytest(tmp_path, CI_PROBE, ci=None)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 skipped" in result.stdout
    assert "needs usernet-no-such-program on PATH" in result.stdout and "needs root" in result.stdout


def test_ci_true_turns_the_skips_into_failures(tmp_path) -> None:
    result = run_pytest(tmp_path, CI_PROBE, ci="true")
    assert result.returncode == 1, result.stdout + result.stderr
    # The marker is checked during setup (an error); the calls in test bodies fail the test.
    assert "2 failed, 1 error" in result.stdout, result.stdout
    assert result.stdout.count("CI=true and needs usernet-no-such-program on PATH") >= 2
    assert "CI=true and needs root" in result.stdout


TEARDOWN_PROBE = """
    import json, os
    from tests.realpeer import netns as nn

    def test_fails_after_building_everything(netns, veth_pair, make_veth_pair, tap_device, make_tap_device):
        ns = netns()
        proc = ns.spawn("sleep", "1000")
        root_pair = make_veth_pair(own_netns=False)
        root_tap = make_tap_device(own_netns=False, kernel_addr="198.19.255.1/32", addr="198.19.255.2/32")
        record = {"tag": nn.RUN_TAG, "pid": proc.pid,
                  "netns": [ns.name, veth_pair.peer.name, veth_pair.ns.name, tap_device.ns.name],
                  "links": [root_pair.ifname, root_tap.name]}
        with open("record.json", "w") as f:
            json.dump(record, f)
        assert False, "fails on purpose"

    def test_leaks_a_namespace():
        with open("leaked.txt", "w") as f:
            f.write(nn.Netns.create("x").name)  # never closed: the session-end sweep must remove it
"""


@pytest.mark.root
def test_everything_is_removed_when_a_test_fails_and_leaks_are_swept(tmp_path) -> None:
    result = run_pytest(tmp_path, TEARDOWN_PROBE, ci=None)
    assert "1 failed, 1 passed" in result.stdout, result.stdout + result.stderr
    record = json.loads((tmp_path / "record.json").read_text())
    leaked = (tmp_path / "leaked.txt").read_text()
    assert f"swept at session end: {leaked}" in result.stdout
    assert not alive(record["pid"])
    assert not (set(record["netns"]) | {leaked}) & netns_names()
    assert not set(record["links"]) & link_names()
    assert not [n for n in netns_names() | link_names() if record["tag"] in n]
    assert not (nn.LOCK_DIR / f"{record['tag']}.lock").exists()


@pytest.mark.root
def test_leftovers_of_a_killed_run_are_swept_by_the_next() -> None:
    code = """
        import os
        from tests.realpeer import netns as nn
        pair, owned = nn.create_veth_pair(own_netns=False)
        print(nn.RUN_TAG, pair.peer.name, pair.ifname, flush=True)
        os._exit(0)  # as if SIGKILLed: no finalizer, no atexit
    """
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=nn.python_env(), check=True,
                         capture_output=True, text=True, timeout=60).stdout
    tag, ns_name, ifname = out.split()
    assert ns_name in netns_names() and ifname in link_names()
    removed = nn.sweep_stale()
    assert ns_name in removed and ns_name not in netns_names() and ifname not in link_names()
    assert not (nn.LOCK_DIR / f"{tag}.lock").exists()
    assert nn.RUN_TAG not in " ".join(removed)  # our own, live run is never touched
