"""Congestion control behind one small interface: NewReno (RFC 5681, RFC 6582) and CUBIC (RFC 9438)."""

from __future__ import annotations


class Congestion:
    """Window state shared by the algorithms; subclasses decide how cwnd grows and shrinks."""

    name = "base"

    def __init__(self, mss: int, initial_segments: int) -> None:
        self.mss = mss
        self.cwnd = min(initial_segments * mss, max(2 * mss, 14600))  # RFC 6928 IW
        self.ssthresh = 1 << 30
        self._acked_in_ca = 0

    def on_ack(self, acked: int, now: float, rtt: float | None) -> None:
        """New data acknowledged outside recovery."""
        if self.cwnd < self.ssthresh:
            # RFC 5681 3.1 slow start with RFC 3465 2.2's L = 2 SMSS, so that a receiver ACKing
            # every second segment does not halve the growth: FreeBSD's abc_l_var = 2; Linux
            # (tcp_slow_start) adds every segment acknowledged.
            self.cwnd += min(acked, 2 * self.mss)
        else:
            self._avoid(acked, now, rtt)

    def _avoid(self, acked: int, now: float, rtt: float | None) -> None:
        # RFC 5681 3.1: about one SMSS per RTT.
        self._acked_in_ca += acked
        if self._acked_in_ca >= self.cwnd:
            self._acked_in_ca -= self.cwnd
            self.cwnd += self.mss

    def on_loss(self, flight: int, now: float) -> None:
        """Entering fast recovery (RFC 5681 3.2 step 2)."""
        self.ssthresh = max(flight // 2, 2 * self.mss)
        self.cwnd = self.ssthresh

    def on_timeout(self, flight: int, now: float) -> None:
        """RTO expiry (RFC 5681 3.1, equation 4; loss window of one segment)."""
        self.ssthresh = max(flight // 2, 2 * self.mss)
        self.cwnd = self.mss


class NewReno(Congestion):
    name = "newreno"


class Cubic(Congestion):
    """RFC 9438: W_cubic(t) = C (t - K)^3 + W_max, with the Reno-friendly region (4.3)."""

    name = "cubic"
    C = 0.4
    BETA = 0.7

    def __init__(self, mss: int, initial_segments: int) -> None:
        super().__init__(mss, initial_segments)
        self.w_max = 0.0        # in segments
        self.k = 0.0
        self.epoch_start: float | None = None
        self.w_est = 0.0

    def _avoid(self, acked: int, now: float, rtt: float | None) -> None:
        mss = self.mss
        cwnd_seg = self.cwnd / mss
        if self.epoch_start is None:
            self.epoch_start = now
            if cwnd_seg < self.w_max:
                self.k = ((self.w_max - cwnd_seg) / self.C) ** (1 / 3)
            else:
                self.k = 0.0
                self.w_max = cwnd_seg
            self.w_est = cwnd_seg
        t = now - self.epoch_start + (rtt or 0.0)
        target = self.C * (t - self.k) ** 3 + self.w_max
        # Reno-friendly estimate (RFC 9438 4.3): alpha = 3 (1 - beta) / (1 + beta)
        self.w_est += 3 * (1 - self.BETA) / (1 + self.BETA) * acked / self.cwnd
        if target < self.w_est:
            target = self.w_est
        if target > cwnd_seg:
            # RFC 9438 4.4: grow by (target - cwnd) / cwnd per acked segment, capped at 1.5x.
            target = min(target, 1.5 * cwnd_seg)
            self.cwnd += int((target - cwnd_seg) / cwnd_seg * acked) or 1
        else:
            self._acked_in_ca += acked  # TCP-friendly floor: at least Reno's growth
            if self._acked_in_ca >= 100 * self.cwnd:
                self._acked_in_ca = 0
                self.cwnd += mss

    def _reduce(self) -> None:
        cwnd_seg = self.cwnd / self.mss
        # RFC 9438 4.7 fast convergence
        self.w_max = cwnd_seg * (1 + self.BETA) / 2 if cwnd_seg < self.w_max else cwnd_seg
        self.epoch_start = None

    def on_loss(self, flight: int, now: float) -> None:
        self._reduce()
        self.ssthresh = max(int(self.cwnd * self.BETA), 2 * self.mss)
        self.cwnd = self.ssthresh

    def on_timeout(self, flight: int, now: float) -> None:
        self._reduce()
        self.ssthresh = max(int(self.cwnd * self.BETA), 2 * self.mss)
        self.cwnd = self.mss


def make(name: str, mss: int, initial_segments: int) -> Congestion:
    if name == "cubic":
        return Cubic(mss, initial_segments)
    if name == "newreno":
        return NewReno(mss, initial_segments)
    raise ValueError(f"unknown congestion control {name!r}")
