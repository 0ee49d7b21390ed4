"""Bad input on every subcommand: one line on stderr, the right exit code, never a traceback.

These need no root: every check here happens before a link is opened (``--iface lo`` is never touched),
or runs in-process with the link and the Host replaced. tests/test_cli_realpeer.py has the cases that
need a real interface.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from usernet import cli


def run(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    if "stdout" not in kw:
        kw.setdefault("capture_output", True)
    return subprocess.run([sys.executable, "-m", "usernet.cli", *args], text=True, timeout=60,
                          stdin=subprocess.DEVNULL, **kw)


LO = ("--iface", "lo")

BAD_INPUT = [
    # up: the link flags (shared by ping and nc)
    (["up", *LO, "--pcap", "/nonexistent-usernet-dir/x.pcap"], "no such directory /nonexistent-usernet-dir"),
    (["up", *LO, "--addr", "10.0.0.2"], "--addr 10.0.0.2: give a prefix, e.g. 10.0.0.2/24"),
    (["up", *LO, "--addr", "10.0.0.2/33"], "prefix must be a number 0..32"),
    (["up", *LO, "--addr", "10.0.0.255/24"], "broadcast address of 10.0.0.0/24"),
    (["up", *LO, "--addr", "myhost/24"], "--addr myhost: not an IPv4 address"),
    (["up", *LO, "--gateway", "10.1.0.1"], "--gateway 10.1.0.1: not in 10.0.0.0/24"),
    (["up", *LO, "--gateway", "router"], "--gateway router: not an IPv4 address"),
    (["up", *LO, "--gateway", "10.0.0.2"], "that is --addr itself"),
    (["up", "--tun", "tun-x", "--gateway", "10.0.0.1"], "TUN device is layer 3"),
    (["up", *LO, "--mac", "ff:ff:ff:ff:ff:ff"], "--mac ff:ff:ff:ff:ff:ff: the broadcast address"),
    (["up", *LO, "--mac", "01:00:5e:00:00:01"], "--mac 01:00:5e:00:00:01: a multicast address"),
    (["up", *LO, "--mac", "00:00:00:00:00:00"], "all-zero"),
    (["up", *LO, "--mac", "nonsense"], "not a MAC address"),
    (["up", "--tun", "tun-x", "--mac", "02:00:00:00:00:01"], "TUN device carries no Ethernet"),
    (["up", *LO, "--mtu", "20"], "--mtu 20: out of range 68..65535"),
    (["up", *LO, "--serve", "echo:7", "--serve", "echo:7"], "--serve echo:7: given twice"),
    (["up", *LO, "--serve", "echo:7", "--serve", "chargen:7"], "--serve chargen:7: port 7 is already taken by "
                                                                "--serve echo:7"),
    (["up", *LO, "--serve", "echo:70000"], "--serve echo:70000: expected echo:PORT"),
    (["up", *LO, "--serve", "gopher:70"], "unknown service 'gopher'"),
    (["up", *LO, "--serve", "http:80"], "--serve http:80: expected http:PORT:DIR"),
    (["up", *LO, "--serve", "http:80:/nonexistent-dir"], "/nonexistent-dir: not a directory"),
    (["up", *LO, "--serve", "wsgi:80:mod"], "expected wsgi:PORT:MODULE:CALLABLE"),
    (["up", "--tun", "tun-x", "--dhcp"], "--tun tun-x: DHCP needs Ethernet (--iface or --tap)"),
    (["up", *LO, "--dhcp", "--gateway", "10.0.0.1"], "--gateway 10.0.0.1: DHCP gives the router; not with --dhcp"),
    (["dhcp", "--tun", "tun-x"], "--tun tun-x: DHCP needs Ethernet"),
    (["up", *LO, "--serve", "dhcp-server:10.0.0.9-10.0.0.1"], "--serve dhcp-server:10.0.0.9-10.0.0.1: "),
    (["up", *LO, "-x"], "-x: only with --trace"),
    (["up", *LO, "-S"], "-S: only with --trace"),
    (["up", *LO, "--pcap-fix-checksums"], "--pcap-fix-checksums: only with --pcap"),
    (["up", *LO, "--log-level", "loud"], "invalid choice: 'loud'"),
    (["up", *LO, "--mtu", "big"], "invalid int value"),
    # ping
    (["ping", *LO, "-s", "70000", "10.0.0.1"], "-s 70000: out of range 0..65507"),
    (["ping", *LO, "-s", "-1", "10.0.0.1"], "-s -1: out of range"),
    (["ping", *LO, "-c", "0", "10.0.0.1"], "-c: must be at least 1"),
    (["ping", *LO, "-i", "0", "10.0.0.1"], "-i: must be positive"),
    (["ping", *LO, "example.com"], "example.com: a host name needs a resolver: give --dns IP (or --hosts FILE)"),
    (["ping", *LO, "--dns", "resolver", "10.0.0.1"], "--dns resolver: not an IPv4 address"),
    (["ping", *LO, "--hosts", "/nonexistent-usernet-dir/hosts", "10.0.0.1"], "--hosts /nonexistent-usernet-dir/"),
    (["ping", *LO, "--dns", "10.0.0.53", "bad..name"], "bad..name: not a host name"),
    (["ping", *LO, "224.0.0.1"], "not a unicast address"),
    (["ping", *LO, "-c", "x", "10.0.0.1"], "invalid int value"),
    # nc
    (["nc", *LO, "10.0.0.1", "http"], "port 'http': not a number"),
    (["nc", *LO, "10.0.0.1", "70000"], "port 70000: out of range 1..65535"),
    (["nc", *LO, "10.0.0.1", "0"], "port 0: out of range"),
    (["nc", "-l", *LO, "99999"], "port 99999: out of range"),
    (["nc", "-l", *LO, "10.0.0.1", "80"], "give only the port"),
    (["nc", *LO, "example.com", "80"], "example.com: a host name needs a resolver"),
    # resolve and ntp
    (["resolve", *LO, "example.com"], "resolve: give --server IP or --dns IP"),
    (["resolve", *LO, "--server", "ns1", "example.com"], "--server ns1: not an IPv4 address"),
    (["resolve", *LO, "--server", "10.0.0.53", "--type", "MX", "example.com"], "invalid choice"),
    (["resolve", *LO, "--server", "10.0.0.53", "a..b"], "a..b: not a host name"),
    (["ntp", *LO, "-n", "0", "10.0.0.1"], "-n: must be at least 1"),
    (["ntp", *LO, "pool.ntp.org"], "pool.ntp.org: a host name needs a resolver"),
    (["up", *LO, "--serve", "dns:99999"], "expected dns:PORT with PORT 1..65535"),
    (["up", *LO, "--serve", "dns:53,record=www"], "record=www: expected record=NAME=IP"),
    (["up", *LO, "--serve", "ntp:123,stratum=0"], "expected stratum=N with N 1..16"),
    (["up", *LO, "--serve", "ntp:123", "--serve", "ntp:123"], "port 123 is already taken"),
    (["nc", *LO, "10.0.0.1"], "nc HOST PORT"),
    (["nc", *LO, "-l", "-u", "-i", "0", "9000"], "-i: must be positive"),
    (["nc", *LO, "-w", "-1", "10.0.0.1", "80"], "-w: must be positive"),
    # drill and demo
    (["drill", "/nonexistent-usernet-dir/a.pkt"], "No such file or directory"),
    (["drill", "--tolerance-usecs", "x", "a.pkt"], "invalid int value"),
    (["drill", "--log-level", "loud", "a.pkt"], "invalid choice"),
    (["demo", "--bogus"], "unrecognized arguments"),
    (["demo", "--log-level", "loud"], "invalid choice"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_input_is_one_line_and_exit_2(argv: list[str], message: str) -> None:
    result = run(*argv)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr


def test_drill_refuses_a_binary_file(tmp_path: Path) -> None:
    script = tmp_path / "binary.pkt"
    script.write_bytes(b"\xff\xfe\x00\x81" * 64)
    result = run("drill", str(script))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"usernet: error: {script}: not a text file"


@pytest.mark.parametrize("argv", [["demo"], ["drill", "tests/conformance/active-open.pkt"]])
def test_broken_pipe_on_stdout_is_a_quiet_exit(argv: list[str]) -> None:
    """`usernet demo | head -1`: the reader is gone before our first write (deterministically so)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = run(*argv, stdout=write_end, stderr=subprocess.PIPE)
    finally:
        os.close(write_end)
    assert result.stderr == "", result.stderr
    assert result.returncode == cli.EXIT_BROKEN_PIPE


def test_help_says_what_is_not_there_and_where_the_trace_goes() -> None:
    text = " ".join(run("up", "--help").stdout.split())
    assert "get the address, router and DNS servers by DHCP" in text
    assert "to stderr" in text.split("--trace", 1)[1].split("-S ", 1)[0]
    for flag in ("-S ", "-x ", "--pcap-fix-checksums", "--log-level"):
        assert flag in text
    nc_help = " ".join(run("nc", "--help").stdout.split())
    assert "-i S" in nc_help and "-l -u" in nc_help


# --------------------------------------------------------------------------- in-process: main()'s safety net

@pytest.fixture
def clean_logging() -> Iterator[None]:
    """main() configures the `usernet` logger; put it back for the rest of the session."""
    logger = logging.getLogger("usernet")
    handlers, level = list(logger.handlers), logger.level
    yield
    for handler in list(logger.handlers):
        if handler not in handlers:
            logger.removeHandler(handler)
    logger.setLevel(level)


class FakeLink:
    name = "fake0"
    mtu = 1500
    layer = 2
    mac = b"\x02\0\0\0\0\x01"

    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize("argv", [["up", *LO], ["ping", *LO, "10.0.0.1"], ["nc", *LO, "10.0.0.1", "80"],
                                  ["nc", "-l", *LO, "80"]])
def test_ctrl_c_during_start_up_is_one_line_and_130(argv: list[str], monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str], clean_logging: None) -> None:
    def interrupted(args: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_open_link", interrupted)
    assert cli.main(argv) == cli.EXIT_INTERRUPTED
    assert capsys.readouterr().err == "usernet: interrupted\n"


@pytest.mark.parametrize("command", ["drill", "demo"])
def test_ctrl_c_and_internal_errors_in_drill_and_demo(command: str, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str], clean_logging: None) -> None:
    import usernet.demo
    import usernet.drill

    error: list[BaseException] = []

    def fail(*args: Any, **kw: Any) -> Any:
        raise error[0]

    monkeypatch.setattr(usernet.demo, "run_demo", fail)
    monkeypatch.setattr(usernet.drill, "parse_script", fail)
    argv = ["drill", "tests/conformance/active-open.pkt"] if command == "drill" else ["demo"]

    error[:] = [KeyboardInterrupt()]
    assert cli.main(argv) == cli.EXIT_INTERRUPTED
    assert capsys.readouterr().err == "usernet: interrupted\n"

    error[:] = [RuntimeError("boom")]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("usernet: internal error: RuntimeError: boom") and len(err.splitlines()) == 1
    assert "Traceback" not in err

    assert cli.main([*argv, "--log-level", "debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.splitlines()[-1] == "usernet: internal error: RuntimeError: boom"


# --------------------------------------------------------------------------- logging, tracer and pcap flags

@pytest.mark.parametrize(("flags", "level"), [([], logging.WARNING), (["-v"], logging.INFO), (["-vv"], logging.DEBUG),
                                              (["--log-level", "error", "-vv"], logging.ERROR),
                                              (["--log-level", "info"], logging.INFO),
                                              (["--log-level", "debug"], logging.DEBUG)])
@pytest.mark.parametrize("command", [["up", *LO], ["ping", *LO, "10.0.0.1"], ["nc", *LO, "10.0.0.1", "80"],
                                     ["drill", "x.pkt"], ["demo"]])
def test_log_level_on_every_command(command: list[str], flags: list[str], level: int,
                                    capsys: pytest.CaptureFixture[str], clean_logging: None) -> None:
    if command[0] == "demo":  # demo has no -v
        flags = [flag for flag in flags if not flag.startswith("-v")]
        level = level if flags else logging.WARNING
    args = cli.build_parser().parse_args([*command, *flags])
    assert cli._configure_logging(args) == level
    logger = logging.getLogger("usernet.host")
    assert logger.getEffectiveLevel() == level
    logger.error("to stderr")
    assert "usernet.host ERROR to stderr" in capsys.readouterr().err


def _host_kwargs(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    import usernet.api.host

    seen: dict[str, Any] = {}

    class FakeHost:
        def __init__(self, link: Any, **kw: Any) -> None:
            seen.update(kw, link=link)

    monkeypatch.setattr(cli, "_open_link", lambda args: FakeLink())
    monkeypatch.setattr(cli, "_kernel_addresses", lambda name: [])
    monkeypatch.setattr(usernet.api.host, "Host", FakeHost)
    cli._make_host(cli.build_parser().parse_args(argv))
    return seen


@pytest.mark.parametrize("command", [["up"], ["ping", "10.0.0.1"], ["nc", "10.0.0.1", "80"], ["nc", "-l", "80"]])
def test_trace_and_pcap_flags_reach_the_host(command: list[str], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    pcap = str(tmp_path / "run.pcap")
    base = [command[0], *LO, *command[1:]]
    plain = _host_kwargs(base, monkeypatch)
    assert plain["trace"] is False and plain["pcap"] is None
    assert (plain["addr"], plain["gateway"], plain["mtu"], plain["mac"]) == ("10.0.0.2/24", None, None, None)

    traced = _host_kwargs([*base, "--trace", "--pcap", pcap], monkeypatch)
    assert traced["trace"] == {"out": sys.stderr, "verbose": 0, "absolute": False, "hexdump": False}
    assert traced["pcap"] == pcap

    full = _host_kwargs([*base, "--trace", "-S", "-x", "-vv", "--pcap", pcap, "--pcap-fix-checksums",
                         "--gateway", "10.0.0.1", "--mtu", "1400", "--mac", "02:00:00:00:00:07", "--seed", "5"],
                        monkeypatch)
    assert full["trace"] == {"out": sys.stderr, "verbose": 2, "absolute": True, "hexdump": True}
    assert full["pcap"] == {"path": pcap, "fix_checksums": True}
    assert (full["gateway"], full["mtu"], full["mac"], full["seed"]) == ("10.0.0.1", 1400, "02:00:00:00:00:07", 5)


def test_mtu_above_the_links_is_refused_and_the_link_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    link = FakeLink()
    monkeypatch.setattr(cli, "_open_link", lambda args: link)
    args = cli.build_parser().parse_args(["up", *LO, "--mtu", "9000"])
    with pytest.raises(cli.UsageError, match="--mtu 9000: larger than fake0's MTU 1500"):
        cli._make_host(args)
    assert link.closed


def test_kernel_holding_our_address_is_a_warning(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli, "_kernel_addresses", lambda name: ["10.0.0.9/24", "10.0.0.2/24"])
    cli._check_link(cli.build_parser().parse_args(["up", *LO]), FakeLink())
    err = capsys.readouterr().err
    assert err.startswith("usernet: warning: the kernel also holds 10.0.0.2 on fake0")
    assert len(err.splitlines()) == 1 and "ip addr del 10.0.0.2/24 dev fake0" in err
