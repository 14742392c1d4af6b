"""The admin listener's status page in a real browser.

Starts switchyard with an admin listener in front of a WebSocket echo upstream (and a
second, refused, upstream server), opens WebSocket tunnels on two routes, loads `/status`
in headless Chromium driven by chromedriver, and checks that the page shows them: the
count, each client's address and port, the routes, the upstream servers' states; then
closes a tunnel and checks that the page follows. Saves a screenshot.

    python status_page.py --switchyard target/debug/switchyard [--screenshot FILE]

Last line: `N passed, M failed`. Everything is on 127.0.0.1 and bounded in time.
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from websockets.sync.client import connect
from websockets.sync.server import serve

# The whole run, set up and tear down included.
DEADLINE_SECONDS = 120
# How long the page may take to show a change (it refreshes every second).
PAGE_WAIT_SECONDS = 10
# Tunnels per route, and messages each sends.
CHAT_TUNNELS = 3
FEED_TUNNELS = 2
MESSAGES = 4


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def echo_server():
    """A WebSocket echo upstream on a thread of its own; returns (server, port)."""

    def echo(ws):
        for message in ws:
            ws.send(message)

    server = serve(echo, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.socket.getsockname()[1]


def config(directory, listen, admin, echo_port, dead_port):
    path = os.path.join(directory, "switchyard.toml")
    with open(path, "w") as f:
        f.write(
            f"""listen = ["127.0.0.1:{listen}"]
admin_listen = "127.0.0.1:{admin}"
workers = 2
shutdown_grace = "1s"

[upstreams.chat]
servers = ["127.0.0.1:{echo_port}", "127.0.0.1:{dead_port}"]

[upstreams.feed]
servers = ["127.0.0.1:{echo_port}"]

[[routes]]
prefix = "/chat/"
upstream = "chat"

[[routes]]
prefix = "/feed/"
upstream = "feed"
"""
        )
    return path


def wait_ready(admin, process):
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"switchyard exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError("switchyard did not become ready within 15 s")


def open_tunnel(listen, path):
    """A WebSocket through the proxy that exchanged MESSAGES messages; returns
    (client, "127.0.0.1:port")."""
    ws = connect(f"ws://127.0.0.1:{listen}{path}", open_timeout=10, close_timeout=5)
    for i in range(MESSAGES):
        text = f"message {i} on {path}"
        ws.send(text)
        if ws.recv(timeout=10) != text:
            raise RuntimeError("the echo differs")
    host, port = ws.socket.getsockname()[:2]
    return ws, f"{host}:{port}"


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,600",
        "--hide-scrollbars",
    ):
        options.add_argument(argument)
    service = Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    return webdriver.Chrome(options=options, service=service)


def text(driver, selector):
    return driver.find_element(By.CSS_SELECTOR, selector).text


def rows(driver, table):
    """The cells' texts of each row of a table's body, read in one script: the page
    replaces its tables on every refresh, so elements found one call earlier may be gone."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0]),"
        " row => Array.from(row.cells, cell => cell.textContent));",
        f"#{table} tbody tr",
    )


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, name, condition):
        """Runs `condition` (a callable returning a truth value, or raising) and reports."""
        try:
            ok = bool(condition())
            detail = ""
        except Exception as error:  # a check that cannot run has failed
            ok, detail = False, f": {type(error).__name__}: {error}"
        print(f"{'ok  ' if ok else 'FAIL'} {name}{detail}", flush=True)
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        return ok


def until(driver, condition):
    """Waits for the page to satisfy `condition(driver)`; True once it does."""
    WebDriverWait(driver, PAGE_WAIT_SECONDS, poll_frequency=0.1).until(condition)
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--switchyard", required=True, help="the switchyard binary")
    parser.add_argument("--screenshot", help="where to save the page's screenshot (PNG)")
    args = parser.parse_args()

    def timed_out(*_):
        print(f"FAIL the run took over {DEADLINE_SECONDS} s", flush=True)
        print("0 passed, 1 failed", flush=True)
        os._exit(1)

    signal.signal(signal.SIGALRM, timed_out)
    signal.alarm(DEADLINE_SECONDS)

    checks = Checks()
    echo, echo_port = echo_server()
    dead_port = free_port()  # bound and closed: nothing listens there
    listen, admin = free_port(), free_port()
    directory = tempfile.mkdtemp(prefix="switchyard-browser-")
    log = open(os.path.join(directory, "switchyard.log"), "w")
    proxy = subprocess.Popen(
        [args.switchyard, "--config", config(directory, listen, admin, echo_port, dead_port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    tunnels = []
    driver = None
    try:
        wait_ready(admin, proxy)
        for _ in range(CHAT_TUNNELS):
            tunnels.append(("/chat/",) + open_tunnel(listen, "/chat/room"))
        for _ in range(FEED_TUNNELS):
            tunnels.append(("/feed/",) + open_tunnel(listen, "/feed/prices"))
        total = len(tunnels)

        driver = browser()
        driver.get(f"http://127.0.0.1:{admin}/status")
        checks.check(
            "the page shows the open tunnels' count",
            lambda: until(driver, lambda d: text(d, "#tunnels-open") == str(total)),
        )
        checks.check("the title says switchyard", lambda: "switchyard" in driver.title)
        listed = lambda: {row[0]: row for row in rows(driver, "tunnels")}
        checks.check(
            "every client's address and port is listed with its route",
            lambda: all(
                client in listed() and listed()[client][1] == route
                for route, _, client in tunnels
            ),
        )
        checks.check(
            "the longest-lived tunnel is listed first",
            lambda: rows(driver, "tunnels")[0][0] == tunnels[0][2],
        )
        checks.check(
            "messages are counted each way",
            lambda: all(
                row[6] == str(MESSAGES) and row[7] == str(MESSAGES)
                for row in rows(driver, "tunnels")
            ),
        )
        per_route = lambda: {row[0]: row[1] for row in rows(driver, "routes")}
        checks.check(
            "tunnels per route",
            lambda: per_route().get("/chat/") == str(CHAT_TUNNELS)
            and per_route().get("/feed/") == str(FEED_TUNNELS),
        )
        states = lambda: {row[1]: row[2] for row in rows(driver, "upstreams")}
        # Round robin over two servers: a second tunnel on /chat/ tried the dead one.
        checks.check(
            "the refused upstream server is failed, the echo healthy",
            lambda: until(
                driver,
                lambda d: states().get(f"127.0.0.1:{dead_port}", "").startswith("failed")
                and states().get(f"127.0.0.1:{echo_port}") == "healthy",
            ),
        )
        checks.check("the generation is 1", lambda: text(driver, "#generation") == "1")
        if args.screenshot:
            os.makedirs(os.path.dirname(os.path.abspath(args.screenshot)), exist_ok=True)
            checks.check(
                f"screenshot saved to {args.screenshot}",
                lambda: driver.save_screenshot(args.screenshot),
            )

        # A tunnel closes: the page follows within a refresh or two.
        route, ws, gone = tunnels.pop(0)
        ws.close()
        checks.check(
            "the page follows a tunnel that closed",
            lambda: until(
                driver,
                lambda d: text(d, "#tunnels-open") == str(total - 1)
                and gone not in listed()
                and per_route().get(route) == str(CHAT_TUNNELS - 1),
            ),
        )
    except Exception as error:
        checks.check(f"the run completes ({error})", lambda: False)
    finally:
        if driver is not None:
            driver.quit()
        for _, ws, _ in tunnels:
            ws.close()
        proxy.terminate()
        try:
            proxy.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proxy.kill()
        echo.shutdown()
        log.close()
        if checks.failed:
            with open(log.name) as f:
                print("switchyard's log:\n" + f.read()[-4000:], flush=True)
    print(f"{checks.passed} passed, {checks.failed} failed", flush=True)
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
