"""The command line as a user meets it: exit codes, one-line errors, the demo."""

from __future__ import annotations

import subprocess
import sys


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "usernet.cli", *args], capture_output=True, text=True, timeout=60)


def test_bad_flag_is_one_line_and_exit_2() -> None:
    result = run("up", "--no-such-flag")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_unusable_interface_is_one_line_and_exit_2() -> None:
    result = run("up", "--iface", "nonexistent0", "--addr", "10.0.0.2/24")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "nonexistent0" in result.stderr and "Traceback" not in result.stderr


def test_bad_impair_spec_and_serve_spec() -> None:
    assert run("up", "--iface", "lo", "--impair", "loss=7").returncode == 2
    result = run("ping", "--iface", "lo", "-c", "0", "10.0.0.1")
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_missing_link_choice() -> None:
    result = run("ping", "10.0.0.1")
    assert result.returncode == 2 and "--iface" in result.stderr


def test_demo_runs_without_root_or_devices() -> None:
    result = run("demo")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "demo passed" in result.stdout
    assert "ARP who-has 10.0.0.2 tell 10.0.0.1" in result.stdout
    assert "ConnectionRefusedError" in result.stdout
    assert "counters: bob" in result.stdout


def test_dhcp_flag_needs_ethernet() -> None:
    result = run("up", "--tun", "tun-x", "--dhcp")
    assert "DHCP needs Ethernet" in result.stderr
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
