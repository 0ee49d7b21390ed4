"""Unit tests of the drill parser and runner: the rules of issue 10 one by one, on small scripts
and hand-built packets (the scripts of the corpus test them end to end)."""

from __future__ import annotations

import pytest

from usernet.drill import ScriptError, parse_script, run_script
from usernet.drill.parser import PacketEvent
from usernet.drill.runner import Failure, Runner
from usernet.wire import ipv4
from usernet.wire import tcp as tcpwire
from usernet.wire.tcp import ACK, FIN, PSH, RST

HANDSHAKE = """\
0     socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0    setsockopt(3, SOL_SOCKET, SO_REUSEADDR, [1], 4) = 0
+0    bind(3, ..., ...) = 0
+0    listen(3, 1) = 0
+0    < S 0:0(0) win 65535 <mss 1460>
+0    > S. 0:0(0) ack 1 <mss 1460>
+.1   < . 1:1(0) ack 1 win 65535
+0    accept(3, ..., ...) = 4
"""


def packet_line(text: str) -> PacketEvent:
    event = parse_script(f"0 {text}").events[0]
    assert event.packet is not None
    return event.packet


def run(text: str, **kw):  # type: ignore[no-untyped-def]
    return run_script(parse_script(text, "<test>"), **kw)


# ----------------------------------------------------------------- parser


def test_no_flags_field_is_a_segment_without_flags() -> None:
    packet = packet_line("< - 1:11(10) win 100")
    assert packet.flags == 0 and packet.length == 10 and packet.window == 100


@pytest.mark.parametrize("text", ["< P. 1:1001 (1000) ack 1 win 5", "< P. 1 : 1001 ( 1000 ) ack 1 win 5",
                                  "<  P.   1:1001(1000)   ack 1   win 5"])
def test_free_spacing_between_tokens(text: str) -> None:
    packet = packet_line(text)
    assert (packet.flags, packet.seq_start, packet.seq_end, packet.length, packet.ack) == (PSH | ACK, 1, 1001,
                                                                                           1000, 1)


def test_spaced_sequence_numbers_are_still_checked() -> None:
    with pytest.raises(ScriptError, match="disagree"):
        packet_line("< P. 1:1001 (999) ack 1 win 5")


def test_ip_prefix() -> None:
    packet = packet_line("< (tos 0x12) S 0:0(0) win 5")
    assert (packet.tos, packet.ecn, packet.ttl) == (0x12, None, None)
    assert packet_line("> (ttl 7) . 1:1(0) ack 1").ttl == 7
    assert packet_line("> [ect0] . 1:1(0) ack 1").ecn == 2
    assert packet_line("> [ect01] . 1:1(0) ack 1").ecn == "ect01"
    assert packet_line("< (tos 0x4, flowlabel 0x1) . 1:1(0) ack 1 win 5").tos == 4
    with pytest.raises(ScriptError, match="bad IP field"):
        packet_line("< (colour 3) . 1:1(0) ack 1 win 5")


def test_backtick_command_over_several_lines_keeps_comments_inside_and_line_numbers() -> None:
    script = parse_script("`echo a // kept\n  echo b /* kept */`\n/* a\ncomment */\n"
                          "+0 < . 1:1(0) ack 1 win 5 // gone\n")
    shell, packet = script.events
    assert shell.kind == "shell" and shell.text == "echo a // kept\n  echo b /* kept */"
    assert packet.line == 5 and packet.packet is not None and packet.packet.window == 5


def test_unterminated_backtick_is_a_script_error() -> None:
    with pytest.raises(ScriptError):
        parse_script("0 `echo a\n")


def test_blocking_time_with_spaces() -> None:
    time = parse_script("+0 ...0.1 read(4, ..., 10) = 10").events[0].time
    assert (time.kind, time.start, time.end, time.blocking) == ("relative", 0.0, 0.1, True)


def test_msghdr_and_iovec_arguments() -> None:
    call = parse_script("0 recvmsg(4, {msg_name(...)=..., msg_iov(1)=[{..., 100}], msg_flags=0}, 0) = 100")
    syscall = call.events[0].syscall
    assert syscall is not None
    msg = syscall.args[1]
    assert msg["msg_name"] is ... and msg["msg_flags"] == 0 and msg["msg_iov"] == [{"_items": [..., 100]}]


# ----------------------------------------------------------------- system calls


def test_recv_flags_are_passed_through() -> None:
    result = run(HANDSHAKE + """\
+0    < P. 1:21(20) ack 1 win 65535
+0    recv(4, ..., 100, MSG_PEEK) = 20
+0    recvmsg(4, {msg_name(...)=..., msg_iov(1)=[{..., 100}], msg_flags=0}, MSG_PEEK) = 20
+0    readv(4, [{..., 5}, {..., 5}], 2) = 10
+0    recv(4, ..., 100, 0) = 10
+0    recv(4, ..., 100, MSG_DONTWAIT) = -1 EAGAIN (Resource temporarily unavailable)
+0    writev(4, [{..., 5}, {..., 5}], 2) = 10
+0    sendmsg(4, {msg_name(...)=..., msg_iov(1)=[{..., 7}], msg_flags=0}, 0) = 7
""")
    assert result.passed, result.message


def test_unsupported_flag_fails_the_line() -> None:
    result = run(HANDSHAKE + "+0    recv(4, ..., 100, MSG_OOB) = 0\n")
    assert not result.passed and result.line == 9 and "MSG_OOB" in result.message


def test_getsockopt_mismatch_names_the_values() -> None:
    result = run(HANDSHAKE + "+0    getsockopt(4, SOL_SOCKET, SO_ERROR, [5], [4]) = 0\n")
    assert not result.passed and result.line == 9 and "value 0, expected 5" in result.message
    relaxed = run(HANDSHAKE + "+0    getsockopt(4, SOL_SOCKET, SO_ERROR, [5], [4]) = 0\n", relaxed=True)
    assert not relaxed.passed and relaxed.line == 9


# ----------------------------------------------------------------- %{ }% blocks


def test_unevaluable_assertion_is_a_visible_note_or_a_failure_when_strict() -> None:
    text = HANDSHAKE + "%{ assert tcpi_nonexistent == 1 }%\n"
    result = run(text)
    assert result.passed
    assert len(result.unevaluated) == 1 and "line 9" in result.unevaluated[0]
    assert result.unevaluated[0] in result.notes
    strict = run(text, strict_asserts=True)
    assert not strict.passed and strict.line == 9 and "strict-asserts" in strict.message


def test_assertion_before_any_socket_is_not_skipped_silently() -> None:
    result = run("%{ assert tcpi_state == TCP_LISTEN }%\n0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n")
    assert result.passed and result.unevaluated
    assert not run("%{ assert tcpi_state == 1 }%\n", strict_asserts=True).passed


def test_listener_reads_as_listen() -> None:
    result = run("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 bind(3, ..., ...) = 0\n+0 listen(3, 1) = 0\n"
                 "%{ assert tcpi_state == TCP_LISTEN == TCPS_LISTEN }%\n", strict_asserts=True)
    assert result.passed, result.message


def test_failed_assertion_fails() -> None:
    result = run(HANDSHAKE + "%{\nassert tcpi_state == TCPS_ESTABLISHED\nassert tcpi_snd_mss == 536\n}%\n")
    assert not result.passed and result.line == 9


# ----------------------------------------------------------------- packets


def test_packets_after_the_last_event_are_notes() -> None:
    result = run(HANDSHAKE + "+0    < P. 11:21(10) ack 1 win 65535\n")
    assert result.passed, result.message
    assert any(note.startswith("after the last event, not checked") for note in result.notes)


def make_runner(relaxed: bool = False) -> Runner:
    runner = Runner(parse_script("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n"), relaxed=relaxed)
    return runner


def segment(runner: Runner, seq: int, ack: int, flags: int, payload: bytes = b"") -> bytes:
    tcp = tcpwire.build(runner.local, runner.remote, 8080, 48000, seq, ack, flags, 1000, b"", payload)
    return bytes(ipv4.build(src=runner.local, dst=runner.remote, proto=ipv4.PROTO_TCP, payload=tcp, ident=1))


def test_describe_without_isn_prints_raw_numbers() -> None:
    runner = make_runner()
    text = runner.describe(segment(runner, 123456, 0, RST))
    assert text.startswith("R 123456:123456(0)") and "ack" not in text
    assert "ack 77" in runner.describe(segment(runner, 5, 77, RST))  # a raw ack field is shown


def test_ack_field_without_ack_flag_is_compared_raw() -> None:
    runner = make_runner()
    runner.match(1, packet_line("> R 5:5(0)"), segment(runner, 5, 0, RST))
    runner.match(1, packet_line("> R 5:5(0) ack 0"), segment(runner, 5, 0, RST))
    with pytest.raises(Failure, match="raw field"):
        runner.match(1, packet_line("> R 5:5(0)"), segment(runner, 5, 9, RST))
    with pytest.raises(Failure, match=r"ack 0 != 9"):
        runner.match(1, packet_line("> R 5:5(0) ack 9"), segment(runner, 5, 0, RST))


def fin_runner(relaxed: bool = True) -> Runner:
    runner = make_runner(relaxed)
    runner.our_isn = 1000
    runner.match(1, packet_line("> F. 1:1(0) ack 1"), segment(runner, 1001, 1, FIN | ACK))
    assert runner.our_fin == 1
    return runner


def test_relaxed_fin_ack_and_bare_ack_are_the_same_both_ways() -> None:
    runner = fin_runner()
    runner.match(2, packet_line("> F. 1:1(0) ack 11"), segment(runner, 1002, 11, ACK))   # Linux sent, FreeBSD written
    runner.match(3, packet_line("> . 2:2(0) ack 21"), segment(runner, 1001, 21, FIN | ACK))  # and vice versa


@pytest.mark.parametrize("line, seq, ack, flags", [
    ("> F. 1:1(0) ack 12", 1002, 11, ACK),          # wrong ack
    ("> F. 2:2(0) ack 11", 1002, 11, ACK),          # wrong sequence number for the FIN form
    ("> . 2:2(0) ack 11", 1001, 11, FIN | RST | ACK),  # another flag differs
    ("> F. 1:11(10) ack 11", 1002, 11, ACK),        # data is never equivalent
    ("> . 3:3(0) ack 11", 1001, 11, FIN | ACK),     # not the FIN's own place
])
def test_relaxed_fin_rule_does_not_hide_a_wrong_packet(line: str, seq: int, ack: int, flags: int) -> None:
    runner = fin_runner()
    with pytest.raises(Failure):
        runner.match(2, packet_line(line), segment(runner, seq, ack, flags))


def test_fin_rule_needs_relaxed_and_an_outstanding_fin() -> None:
    strict = fin_runner(relaxed=False)
    with pytest.raises(Failure):
        strict.match(2, packet_line("> F. 1:1(0) ack 11"), segment(strict, 1002, 11, ACK))
    runner = fin_runner()
    runner.our_fin = None  # acknowledged by the peer
    with pytest.raises(Failure):
        runner.match(2, packet_line("> F. 1:1(0) ack 11"), segment(runner, 1002, 11, ACK))


def test_inbound_ack_of_our_fin_ends_the_rule() -> None:
    result = run(HANDSHAKE + """\
+0    shutdown(4, SHUT_WR) = 0
+0    > F. 1:1(0) ack 1
+.1   < . 1:1(0) ack 2 win 65535
+.1   < . 1:11(10) ack 2 win 65535
+0~+.05 > F. 1:1(0) ack 11
""", relaxed=True)
    assert not result.passed and result.line == 13


def test_outbound_ip_fields_are_checked() -> None:
    runner = make_runner()
    packet = segment(runner, 5, 0, RST)
    runner.match(1, packet_line("> (ttl 64) R 5:5(0)"), packet)
    runner.match(1, packet_line("> [noecn] R 5:5(0)"), packet)
    with pytest.raises(Failure, match="tos"):
        runner.match(1, packet_line("> (tos 0x10) R 5:5(0)"), packet)
    with pytest.raises(Failure, match="ttl"):
        runner.match(1, packet_line("> (ttl 3) R 5:5(0)"), packet)
    with pytest.raises(Failure, match="ecn"):
        runner.match(1, packet_line("> [ect01] R 5:5(0)"), packet)
