"""``usernet get URL``: fetch a URL over a usernet host (:mod:`usernet.apps.http_client`).

Exit codes follow curl where curl has one: 0 for a final 2xx or 3xx response, 22 for a final status
>= 400 (curl -f; the body is still written), 60 when the server's certificate is not trusted (bad
chain, name mismatch, expired), 35 for any other TLS failure, 1 for network errors (refused,
unreachable, timeout, unknown name, a malformed or truncated response, too many redirects), 2 for
usage. Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, BinaryIO

EXIT_HTTP = 22     # curl -f: the server answered >= 400
EXIT_TLS = 35      # curl: SSL connect error
EXIT_CERT = 60     # curl: peer certificate cannot be authenticated
MAX_DATA = 64 << 20  # --data @FILE read into memory


def add_parser(sub: Any) -> None:
    from usernet.cli import _add_link_options

    get = sub.add_parser("get", help="fetch an http:// or https:// URL: the body to stdout (or -o FILE)",
                         description="HTTP/1.1 GET (or POST with --data) from a usernet host, redirects "
                                     "followed. Exit 0 for 2xx/3xx, 22 for HTTP >= 400, 60 untrusted "
                                     "certificate, 35 other TLS failures, 1 network errors, 2 usage.")
    _add_link_options(get)
    get.add_argument("-o", "--output", metavar="FILE", help="write the body to FILE (default stdout)")
    trust = get.add_mutually_exclusive_group()
    trust.add_argument("--cacert", metavar="PEM", help="trust the CA certificates in PEM (not the system store)")
    trust.add_argument("-k", "--insecure", action="store_true", help="do not verify the server's certificate")
    get.add_argument("-H", "--header", dest="headers", action="append", default=[], metavar="'NAME: VALUE'",
                     help="an extra request header (repeatable)")
    get.add_argument("-d", "--data", metavar="@FILE|STRING", help="POST this body (@FILE: the file's bytes)")
    get.add_argument("-X", "--request", dest="method", metavar="METHOD", help="the method (default GET, "
                     "or POST with --data)")
    get.add_argument("--timeout", type=float, default=10.0, metavar="S",
                     help="for connecting and each read (default 10)")
    get.add_argument("--max-redirects", type=int, default=5, metavar="N", help="redirects followed (default 5)")
    get.add_argument("url", metavar="URL")
    get.set_defaults(func=cmd_get)


def _parse_headers(lines: list[str]) -> list[tuple[str, str]]:
    from usernet.cli import UsageError

    headers = []
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon or not name.strip() or name != name.strip():
            raise UsageError(f"-H {line!r}: expected 'Name: value'")
        if any(c in value for c in "\r\n\0"):
            raise UsageError(f"-H {name}: the value carries CR, LF or NUL")
        headers.append((name, value.strip()))
    return headers


def _read_data(spec: str) -> bytes:
    from usernet.cli import UsageError

    if not spec.startswith("@"):
        return spec.encode("utf-8")
    path = spec[1:]
    try:
        if os.path.getsize(path) > MAX_DATA:
            raise UsageError(f"--data {spec}: larger than {MAX_DATA} bytes")
        with open(path, "rb") as f:
            return f.read()
    except OSError as err:
        raise UsageError(f"--data {spec}: {err.strerror}") from None


class _Progress:
    """``received / total  NN%`` on stderr, at most ten times a second, only on a terminal."""

    def __init__(self, total: int | None) -> None:
        self.total, self.done, self.last = total, 0, 0.0
        self.on = sys.stderr.isatty()

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.on and now - self.last >= 0.1:
            self.last = now
            self._draw()

    def _draw(self) -> None:
        if self.total:
            text = f"\r{self.done:,} / {self.total:,} bytes {100 * self.done // self.total:3d}%"
        else:
            text = f"\r{self.done:,} bytes"
        sys.stderr.write(text)
        sys.stderr.flush()

    def finish(self) -> None:
        if self.on:
            self._draw()
            sys.stderr.write("\n")
            sys.stderr.flush()


def cmd_get(args: argparse.Namespace) -> int:
    import ssl  # here: every other command runs without loading OpenSSL
    from urllib.parse import urlsplit

    from usernet.apps.http_client import Client, _split_url
    from usernet.cli import UsageError, _is_literal, _make_host, _names_resolvable

    try:
        origin, _ = _split_url(args.url)
    except ValueError as err:
        raise UsageError(str(err)) from None
    if not _is_literal(origin.host) and not _names_resolvable(args):
        raise UsageError(f"{origin.host}: a host name needs a resolver: give --dns IP (or --hosts FILE)")
    if args.timeout <= 0:
        raise UsageError("--timeout: must be positive")
    if args.max_redirects < 0:
        raise UsageError("--max-redirects: must be 0 or more")
    if args.cacert is not None and not os.path.isfile(args.cacert):
        raise UsageError(f"--cacert {args.cacert}: no such file")
    headers = _parse_headers(args.headers)
    data = _read_data(args.data) if args.data is not None else None
    if data is not None and not any(n.lower() == "content-type" for n, _ in headers):
        headers.append(("Content-Type", "application/x-www-form-urlencoded"))  # as curl -d
    method = (args.method or ("POST" if data is not None else "GET")).upper()
    context = None
    if args.cacert is not None and urlsplit(args.url).scheme.lower() == "https":
        try:
            context = ssl.create_default_context(cafile=args.cacert)
        except (ssl.SSLError, ValueError) as err:
            raise UsageError(f"--cacert {args.cacert}: not a PEM certificate file ({err})") from None
    out: BinaryIO | None = None
    if args.output is not None:
        try:
            out = open(args.output, "wb")  # noqa: SIM115 - closed below, after the body
        except OSError as err:
            raise UsageError(f"-o {args.output}: {err.strerror}") from None
    host = _make_host(args)
    try:
        with host, Client(host, timeout=args.timeout, insecure=args.insecure, context=context) as client:
            response = client.request(method, args.url, headers=headers, data=data,
                                      max_redirects=args.max_redirects, stream=True)
            with response:
                sink = out if out is not None else sys.stdout.buffer
                progress = _Progress(response.content_length)
                for piece in response.iter_content():
                    sink.write(piece)
                    progress.update(len(piece))
                sink.flush()
                progress.finish()
            if response.status >= 400:
                print(f"usernet get: {response.url}: HTTP {response.status} {response.reason}", file=sys.stderr,
                      flush=True)
                return EXIT_HTTP
            return 0
    except ssl.SSLCertVerificationError as err:
        _error(args.url, f"certificate not trusted ({err.verify_message or err.reason})")
        return EXIT_CERT
    except ssl.SSLError as err:
        _error(args.url, f"TLS failed ({err.reason or err})")
        return EXIT_TLS
    except TimeoutError:
        _error(args.url, f"timed out after {args.timeout:g} s")
        return 1
    except OSError as err:
        if isinstance(err, BrokenPipeError) and out is None:
            raise  # stdout went away: the CLI's handling of a closed pipe
        _error(args.url, str(err.strerror or err))
        return 1
    except ValueError as err:  # a redirect to a URL that is not http(s)
        _error(args.url, str(err))
        return 1
    finally:
        if out is not None:
            out.close()


def _error(url: str, text: str) -> None:
    print(f"usernet get: {url}: {text}", file=sys.stderr, flush=True)
