"""Runs the Autobahn cases twice, direct and through switchyard, and compares them.

Pass 1: kosoku (fuzzing client) -> echo server.
Pass 2: kosoku -> switchyard -> the same echo server.
With --byte-tunnel, pass 3: kosoku -> switchyard with ws_validate = false
(byte-tunnel.toml) -> the same echo server, compared with the same pass 1.

Everything listens on 127.0.0.1 on free ports; every process started here runs
in its own process group and is ended when the run ends, however it ends. The
whole run has one deadline (--timeout). Called by run.sh, which provides the
Python environment and the proxy binary.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import compare  # noqa: E402

# The CI subset keeps every framing, fragmentation, control-frame, UTF-8, close
# and limits case (1.x-10.x) and, of the permessage-deflate cases (12.x: five
# payload kinds, 13.x: seven negotiated parameter sets, each at 18 message
# sizes), the sizes 16 B to 1 KiB (.1-.4) and 8 KiB sent in 256-byte fragments
# (.11): compressed frames, RSV1 and compressed continuations under every
# negotiation. The larger sizes send a thousand messages of up to 128 KiB per
# case, are nine tenths of the suite's time, and test the compressor rather
# than framing; --all runs them too. (kosoku globs match from the start of the
# id, so `12.*.1` would also match 12.1.10-12.1.18: hence the explicit list.)
LARGE_COMPRESSION_SIZES = [*range(5, 11), *range(12, 19)]
CI_EXCLUDES = [f"{group}.*.{size}" for group in (12, 13) for size in LARGE_COMPRESSION_SIZES]

STARTUP_SECONDS = 15
STOP_SECONDS = 5


class RunError(Exception):
    """The run could not be carried out (as opposed to cases that differ)."""


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise RunError(f"the whole run took longer than --timeout {self.seconds:g}s")
        return left


def log(message: str) -> None:
    print(f"autobahn: {message}", flush=True)


def start(stack: ExitStack, argv: list[str], output: Path) -> subprocess.Popen[bytes]:
    """Starts a process in a group of its own, ended (group and all) when `stack` closes."""
    with output.open("wb") as sink:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    stack.callback(stop, process)
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    for signum, wait in ((signal.SIGTERM, STOP_SECONDS), (signal.SIGKILL, STOP_SECONDS)):
        try:
            os.killpg(process.pid, signum)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def raise_terminated(signum: int, _frame: object) -> None:
    raise RunError(f"stopped by signal {signum}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def start_echo_server(stack: ExitStack, results: Path) -> tuple[subprocess.Popen[bytes], int]:
    output = results / "echo-server.log"
    process = start(stack, [sys.executable, "-u", str(HERE / "echo_server.py")], output)
    until = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < until:
        for line in output.read_text(errors="replace").splitlines():
            if line.startswith("PORT "):
                return process, int(line.split()[1])
        if process.poll() is not None:
            break
        time.sleep(0.05)
    raise RunError(f"the echo server did not start:\n{tail(output)}")


def start_proxy(
    stack: ExitStack, binary: Path, upstream: int, extra: list[str], output: Path
) -> tuple[subprocess.Popen[bytes], int]:
    # The port is probed free and then handed over, so another process may take it
    # in between: a proxy that exits at start-up is tried again on a fresh port.
    for _attempt in range(3):
        port = free_port()
        argv = [str(binary), "--listen", f"127.0.0.1:{port}", "--upstream", f"127.0.0.1:{upstream}", *extra]
        process = start(stack, argv, output)
        until = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < until and process.poll() is None:
            if accepts(port):
                log(f"switchyard: {' '.join(argv)}")
                return process, port
            time.sleep(0.05)
        stop(process)
    raise RunError(f"switchyard did not start:\n{tail(output)}")


def run_cases(
    label: str, port: int, results: Path, selection: list[str], parallelism: int, deadline: Deadline
) -> float:
    """Runs kosoku against 127.0.0.1:port; returns the wall time in seconds."""
    report_dir = results / label
    argv = [
        str(Path(sys.executable).with_name("kosoku")),
        "--outdir", str(report_dir),
        "--parallelism", str(parallelism),
        *selection,
        f"ws://127.0.0.1:{port}",
    ]
    output = results / f"kosoku-{label}.log"
    began = time.monotonic()
    with ExitStack() as stack:
        process = start(stack, argv, output)
        try:
            process.wait(timeout=deadline.remaining())
        except subprocess.TimeoutExpired:
            raise RunError(f"{label}: kosoku still running at the deadline") from None
    elapsed = time.monotonic() - began
    # kosoku exits 1 when a case is not passed by the server; the comparison is
    # what counts here. No report at all means the run itself broke.
    if not (report_dir / "index.json").is_file():
        raise RunError(f"{label}: kosoku wrote no report (exit {process.returncode}):\n{tail(output)}")
    cases = len(compare.load_outcomes(report_dir))
    log(f"{label}: {cases} cases in {elapsed:.1f}s")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proxy", type=Path, required=True, help="the switchyard binary")
    parser.add_argument("--results", type=Path, default=HERE / "results", help="report directory (replaced)")
    parser.add_argument("--all", action="store_true", help="run every case, the 9.x/12.x/13.x ones too")
    parser.add_argument("--case", action="append", default=[], metavar="GLOB",
                        help="run only these case ids or globs (repeatable), e.g. 5.* or 7.9.1")
    parser.add_argument("--parallelism", type=int, default=2, help="cases run at once by kosoku")
    parser.add_argument("--timeout", type=float, default=None,
                        help="deadline for the whole run in seconds [default: 900, with --all 2400]")
    parser.add_argument("--byte-tunnel", action="store_true",
                        help="also a pass through switchyard with ws_validate = false (byte-tunnel.toml), "
                             "compared with the same direct run")
    parser.add_argument("proxy_args", nargs="*", help="extra switchyard arguments (after --)")
    args = parser.parse_args()

    selection = [arg for glob in args.case for arg in ("--include", glob)]
    if not args.all and not args.case:
        selection += [arg for glob in CI_EXCLUDES for arg in ("--exclude", glob)]
    if args.all:
        scope = "all cases"
    elif args.case:
        scope = f"cases {' '.join(args.case)}"
    else:
        scope = "the CI subset (12.x/13.x only at sizes .1-.4 and .11; --all for every case)"
    deadline = Deadline(args.timeout or (2400 if args.all else 900))
    passes = [("proxied", args.proxy_args)]
    if args.byte_tunnel:
        passes.append(("byte-tunnel", [*args.proxy_args, "--config", str(HERE / "byte-tunnel.toml")]))

    results: Path = args.results
    shutil.rmtree(results, ignore_errors=True)
    results.mkdir(parents=True)

    log(f"{scope}, parallelism {args.parallelism}, reports in {results}")
    try:
        with ExitStack() as stack:
            # SIGTERM (e.g. from `timeout`) and Ctrl-C unwind like an error, so
            # the stack still ends every process it started.
            signal.signal(signal.SIGTERM, raise_terminated)
            signal.signal(signal.SIGINT, raise_terminated)
            echo, echo_port = start_echo_server(stack, results)
            log(f"echo server on 127.0.0.1:{echo_port}")
            seconds = {"direct": run_cases("direct", echo_port, results, selection, args.parallelism, deadline)}
            for label, extra in passes:
                with ExitStack() as proxy_stack:
                    output = results / ("switchyard.log" if label == "proxied" else f"switchyard-{label}.log")
                    proxy, proxy_port = start_proxy(proxy_stack, args.proxy, echo_port, extra, output)
                    seconds[label] = run_cases(label, proxy_port, results, selection, args.parallelism, deadline)
                    if proxy.poll() is not None:
                        raise RunError(f"switchyard exited during the {label} run (status {proxy.returncode})")
            if echo.poll() is not None:
                raise RunError(f"the echo server exited during the run (status {echo.returncode})")
    except (RunError, compare.ReportError) as err:
        log(f"error: {err}")
        print("0 passed, 1 failed")
        return 2

    log("time: " + ", ".join(f"{label} {elapsed:.1f}s" for label, elapsed in seconds.items()))
    if len(passes) == 1:
        return compare.compare(
            results / "direct", results / "proxied", results / "comparison.txt", show_all=False
        )
    # One comparison per proxied pass; the last line adds them up (a case counts once
    # per pass).
    status, passed, failed = 0, 0, 0
    for label, _extra in passes:
        print(f"autobahn: direct against {label}")
        counts = compare.Counts()
        status = max(status, compare.compare(
            results / "direct", results / label, results / f"comparison-{label}.txt",
            show_all=False, counts=counts,
        ))
        passed, failed = passed + counts.passed, failed + counts.failed
    print(f"{passed} passed, {failed} failed")
    return status


if __name__ == "__main__":
    sys.exit(main())
