"""switchyard's TLS listener with Python's ssl module (OpenSSL) as the client.

A private CA and two certificates (alpha.test, the default, and beta.test) are made
with the openssl command; switchyard serves both on one [[tls]] listener in front of a
WebSocket echo upstream (which answers plain GETs with 200). Each check prints
`ok NAME` or `FAILED NAME: why`; the last line is `N passed, M failed`.
"""

import argparse
import http
import os
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

from websockets.sync.client import connect
from websockets.sync.server import serve

STEP = 10  # seconds any one step may take


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=STEP)


def certificates(directory):
    """ca.pem, and NAME.pem / NAME.key for alpha.test and beta.test, signed by it."""
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key", cwd=directory)
    openssl("req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=switchyard test CA",
            "-days", "2", "-out", "ca.pem", cwd=directory)
    for name in ("alpha.test", "beta.test"):
        openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{name}.ec",
                cwd=directory)
        openssl("pkcs8", "-topk8", "-nocrypt", "-in", f"{name}.ec", "-out", f"{name}.key",
                cwd=directory)
        openssl("req", "-new", "-key", f"{name}.key", "-subj", f"/CN={name}",
                "-out", f"{name}.csr", cwd=directory)
        with open(os.path.join(directory, f"{name}.ext"), "w") as f:
            f.write(f"subjectAltName = DNS:{name}\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext",
                "-out", f"{name}.pem", cwd=directory)


def echo_upstream():
    """A WebSocket echo on a thread of its own that answers other requests with 200."""

    def echo(ws):
        for message in ws:
            ws.send(message)

    def plain(connection, request):
        if request.headers.get("Upgrade") is None:
            return connection.respond(http.HTTPStatus.OK, "hello over TLS\n")
        return None

    server = serve(echo, "127.0.0.1", 0, process_request=plain)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.socket.getsockname()[1]


def start_switchyard(binary, directory, upstream):
    path = os.path.join(directory, "switchyard.toml")
    with open(path, "w") as f:
        f.write(f"""workers = 1
shutdown_grace = "1s"

[[tls]]
listen = ["127.0.0.1:0"]
certificates = [
  {{ cert = "alpha.test.pem", key = "alpha.test.key" }},
  {{ cert = "beta.test.pem", key = "beta.test.key" }},
]

[upstreams.echo]
servers = ["127.0.0.1:{upstream}"]

[[routes]]
prefix = "/"
upstream = "echo"
""")
    process = subprocess.Popen([binary, "--config", path], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + STEP
    for line in process.stderr:
        found = re.search(r"listening for TLS on (\S+)", line)
        if found:
            threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True).start()
            host, port = found.group(1).rsplit(":", 1)
            return process, int(port)
        if time.monotonic() > deadline:
            break
    process.kill()
    raise RuntimeError("switchyard did not say where it listens for TLS")


def context(directory, version=None, alpn=("http/1.1",)):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(os.path.join(directory, "ca.pem"))
    if version is not None:
        ctx.minimum_version = version
        ctx.maximum_version = version
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def tls_connection(port, ctx, name):
    raw = socket.create_connection(("127.0.0.1", port), timeout=STEP)
    return ctx.wrap_socket(raw, server_hostname=name)


def get(conn, host):
    conn.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    answer = b""
    while chunk := conn.recv(65536):
        answer += chunk
    return answer.decode("latin-1")


def subject_names(conn):
    return [value for kind, value in conn.getpeercert().get("subjectAltName", ()) if kind == "DNS"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--switchyard", required=True)
    args = parser.parse_args()
    results = []

    def check(name, test):
        try:
            test()
            results.append(True)
            print(f"ok {name}", flush=True)
        except Exception as error:  # every failure is reported, then counted
            results.append(False)
            print(f"FAILED {name}: {error!r}", flush=True)

    with tempfile.TemporaryDirectory() as directory:
        certificates(directory)
        upstream = echo_upstream()
        process, port = start_switchyard(args.switchyard, directory, upstream)
        try:
            def handshake(version, expected):
                def test():
                    with tls_connection(port, context(directory, version), "alpha.test") as conn:
                        assert conn.version() == expected, conn.version()
                        assert conn.selected_alpn_protocol() == "http/1.1"
                        answer = get(conn, "alpha.test")
                        assert answer.startswith("HTTP/1.1 200"), answer
                        assert "hello over TLS" in answer, answer
                return test

            check("TLS 1.3 handshake, ALPN http/1.1, a request", handshake(ssl.TLSVersion.TLSv1_3, "TLSv1.3"))
            check("TLS 1.2 handshake, ALPN http/1.1, a request", handshake(ssl.TLSVersion.TLSv1_2, "TLSv1.2"))

            def never_h2():
                ctx = context(directory, alpn=("h2", "http/1.1"))
                with tls_connection(port, ctx, "alpha.test") as conn:
                    assert conn.selected_alpn_protocol() == "http/1.1", conn.selected_alpn_protocol()

            check("ALPN: offered h2 and http/1.1, http/1.1 is chosen", never_h2)

            def sni(name):
                def test():
                    with tls_connection(port, context(directory), name) as conn:
                        assert subject_names(conn) == [name], subject_names(conn)
                return test

            check("SNI beta.test gets the second certificate", sni("beta.test"))
            check("SNI alpha.test gets the first certificate", sni("alpha.test"))

            def no_sni():
                ctx = context(directory)
                ctx.check_hostname = False
                raw = socket.create_connection(("127.0.0.1", port), timeout=STEP)
                with ctx.wrap_socket(raw) as conn:
                    assert subject_names(conn) == ["alpha.test"], subject_names(conn)

            check("no SNI gets the first (default) certificate", no_sni)

            def wss():
                raw = socket.create_connection(("127.0.0.1", port), timeout=STEP)
                with connect("wss://beta.test/ws", sock=raw, ssl=context(directory),
                             server_hostname="beta.test", open_timeout=STEP,
                             close_timeout=STEP, max_size=None) as ws:
                    for message in ("hello", "x" * 100_000, b"\x00\x01binary"):
                        ws.send(message)
                        assert ws.recv(timeout=STEP) == message
                    assert ws.socket.version() in ("TLSv1.3", "TLSv1.2")

            check("wss echo through switchyard", wss)

            def plain_http():
                with socket.create_connection(("127.0.0.1", port), timeout=STEP) as raw:
                    raw.sendall(b"GET / HTTP/1.1\r\nHost: alpha.test\r\n\r\n")
                    answer = raw.recv(4096).decode("latin-1")
                    assert answer.startswith("HTTP/1.1 400"), answer

            check("plain HTTP on the TLS port gets 400", plain_http)
        finally:
            process.terminate()
            try:
                process.wait(timeout=STEP)
            except subprocess.TimeoutExpired:
                process.kill()

    passed = sum(results)
    print(f"{passed} passed, {len(results) - passed} failed")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
