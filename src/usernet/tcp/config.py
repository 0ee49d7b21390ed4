"""Tunables of the TCP engine, with the RFC or the Linux default each comes from."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class TcpConfig:
    sndbuf: int = 1 << 20             # SO_SNDBUF
    rcvbuf: int = 1 << 20             # SO_RCVBUF: the most we advertise
    rto_initial: float = 1.0          # RFC 6298 2.1
    rto_min: float = 0.2              # RFC 6298 says 1 s; Linux uses 200 ms (configurable here)
    rto_max: float = 60.0             # RFC 6298 2.5
    syn_retries: int = 6              # Linux tcp_syn_retries
    synack_retries: int = 5           # Linux tcp_synack_retries
    data_retries: int = 15            # Linux tcp_retries2
    delayed_ack: float = 0.04         # RFC 9293 3.8.6.3: under 500 ms; Linux's minimum is 40 ms
    msl: float = 30.0                 # TIME-WAIT lasts 2 * msl (Linux: 60 s)
    fin_timeout: float = 60.0         # an orphaned FIN-WAIT-2 connection is dropped after this (Linux)
    keepalive_idle: float = 7200.0    # RFC 1122 4.2.3.6 default, TCP_KEEPIDLE
    keepalive_interval: float = 75.0  # TCP_KEEPINTVL
    keepalive_count: int = 9          # TCP_KEEPCNT
    persist_min: float = 0.2
    initial_window_segments: int = 10  # RFC 6928
    congestion: str = "cubic"         # "cubic" (RFC 9438) or "newreno" (RFC 5681/6582)
    timestamps: bool = True           # RFC 7323
    window_scaling: bool = True       # RFC 7323
    sack: bool = True                 # RFC 2018
    dsack: bool = True                # RFC 2883 D-SACK when SACK is on (on in Linux, tcp_dsack=1, and FreeBSD)
    challenge_ack_limit: int = 1000   # RFC 5961 10: host-wide challenge ACKs per second, on average: each
    #                                   second's budget is drawn uniformly from [limit/2, 3*limit/2) (Linux
    #                                   tcp_send_challenge_ack since CVE-2016-5696), so it cannot be counted
    invalid_ratelimit: float = 0.5    # Linux tcp_invalid_ratelimit (500 ms): per connection, at most one ACK
    #                                   per interval answers a non-data segment that is unacceptable (out of
    #                                   window, PAWS, ACK of unsent data) and at most one challenge ACK
    mem_limit: int = 96 << 20         # host-wide bytes in socket buffers (send + receive + out of order):
    #                                   Linux tcp_mem[2] of a 1 GB host (tcp_init_mem: free pages / 16 * 1.5);
    #                                   pressure begins at 2/3 of it (tcp_mem[1])
    syn_backlog: int = 256            # half-open connections per listener before SYN cookies
    syn_cookies: bool = True          # RFC 4987 3.6 (Linux tcp_syncookies=1)
    max_ooo_segments: int = 4096      # out-of-order pieces kept (bytes are bounded by the window)
