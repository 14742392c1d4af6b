"""Compares two Autobahn report directories written by kosoku, case by case.

A case's outcome is what the suite judged and how the connection ended: the
verdict on the message exchange (OK, NON-STRICT, INFORMATIONAL, UNIMPLEMENTED,
FAILED), the verdict on the closing handshake, the close code the server sent and
whether the close was clean. A transparent proxy changes none of these, so every
case whose outcome differs between the direct and the proxied run is a finding.

Exit status: 0 when every case has the same outcome in both runs, 1 otherwise,
2 when a report cannot be read. The last line printed is `N passed, M failed`
(N: cases with the same outcome, M: cases that differ, ran in one run only, or
could not be run at all).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Outcome:
    """What one case came to in one run."""

    behavior: str
    behavior_close: str
    remote_close_code: int | None
    was_clean: bool | None

    def __str__(self) -> str:
        code = "-" if self.remote_close_code is None else str(self.remote_close_code)
        clean = {True: "clean", False: "unclean", None: "?"}[self.was_clean]
        return f"{self.behavior} / close {self.behavior_close} {code} {clean}"


MISSING = "(not run)"


class ReportError(Exception):
    """A report directory is absent or unreadable."""


def case_sort_key(case_id: str) -> list[int]:
    """1.2.10 after 1.2.9, as the suite orders them."""
    return [int(part) for part in case_id.split(".")]


def load_outcomes(report_dir: Path) -> dict[str, Outcome]:
    """Reads `index.json` and each case's report from one kosoku output directory."""
    index_path = report_dir / "index.json"
    try:
        index = json.loads(index_path.read_text())
    except FileNotFoundError:
        raise ReportError(f"{index_path}: no report (did the run finish?)") from None
    except (OSError, ValueError) as err:
        raise ReportError(f"{index_path}: {err}") from None

    outcomes: dict[str, Outcome] = {}
    # One agent (the server's `Server` header) per run; a proxy that rewrote the
    # header would show up as a second agent, which is not an outcome.
    for agent_cases in index.values():
        for case_id, entry in agent_cases.items():
            was_clean = None
            case_path = report_dir / entry.get("reportfile", "")
            if case_path.is_file():
                try:
                    was_clean = json.loads(case_path.read_text()).get("wasClean")
                except (OSError, ValueError) as err:
                    raise ReportError(f"{case_path}: {err}") from None
            outcomes[case_id] = Outcome(
                behavior=entry["behavior"],
                behavior_close=entry["behaviorClose"],
                remote_close_code=entry.get("remoteCloseCode"),
                was_clean=was_clean,
            )
    return outcomes


@dataclass(frozen=True)
class Row:
    """One case in both runs."""

    case_id: str
    direct: Outcome | None
    proxied: Outcome | None

    @property
    def finding(self) -> str | None:
        """Why this case does not pass, if it does not."""
        if self.direct != self.proxied:
            return "different"
        # ERROR: kosoku could not run the case to a verdict (no connection, a
        # crash), so the same ERROR twice proves nothing.
        if self.direct is None or self.direct.behavior == "ERROR":
            return "not run to a verdict"
        return None

    @property
    def plain(self) -> bool:
        """Judged OK in both respects, which is not worth a line on the terminal."""
        return self.direct is not None and (self.direct.behavior, self.direct.behavior_close) == ("OK", "OK")

    @property
    def direct_text(self) -> str:
        return str(self.direct) if self.direct else MISSING

    def line(self, width: int) -> str:
        if self.finding is None:
            return f"{self.case_id:<9} {self.direct_text:<{width}}  same"
        proxied = str(self.proxied) if self.proxied else MISSING
        return f"{self.case_id:<9} {self.direct_text:<{width}}  {proxied}   <-- {self.finding}"


def verdict_counts(outcomes: dict[str, Outcome]) -> str:
    """`301 OK / 216 other (NON-STRICT 4, UNIMPLEMENTED 209, ...)`."""
    counts = Counter(o.behavior for o in outcomes.values())
    ok = counts.pop("OK", 0)
    other = sum(counts.values())
    text = f"{ok} OK / {other} other"
    if counts:
        text += " (" + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + ")"
    return text


@dataclass
class Counts:
    """How many cases a comparison passed and failed."""

    passed: int = 0
    failed: int = 0


def compare(
    direct_dir: Path, proxied_dir: Path, table: Path | None, show_all: bool, counts: Counts | None = None
) -> int:
    try:
        direct = load_outcomes(direct_dir)
        proxied = load_outcomes(proxied_dir)
    except ReportError as err:
        print(f"autobahn: {err}", file=sys.stderr)
        if counts is None:
            print("0 passed, 1 failed")
        else:
            counts.failed = 1
        return 2

    case_ids = sorted(direct.keys() | proxied.keys(), key=case_sort_key)
    rows = [Row(case_id, direct.get(case_id), proxied.get(case_id)) for case_id in case_ids]
    differing = [row.case_id for row in rows if row.finding]

    width = max((len(row.direct_text) for row in rows), default=0)
    header = f"{'case':<9} {'direct':<{width}}  proxied"
    lines = [row.line(width) for row in rows]
    if table is not None:
        table.write_text("\n".join([header, *lines]) + "\n")

    shown = [line for line, row in zip(lines, rows) if show_all or row.finding or not row.plain]
    if shown:
        print(header)
        print("\n".join(shown))
        if not show_all:
            print("(not shown: cases judged OK with a close judged OK, the same through the proxy)")
    if table is not None:
        print(f"per-case table: {table}")

    if differing:
        by_finding: dict[str, list[str]] = {}
        for row in rows:
            if row.finding:
                by_finding.setdefault(row.finding, []).append(row.case_id)
        proxied_text = "proxied: " + "; ".join(
            f"{len(ids)} {finding} ({', '.join(ids[:8])}{', ...' if len(ids) > 8 else ''})"
            for finding, ids in by_finding.items()
        )
    else:
        proxied_text = "proxied identical"
    print(f"autobahn: {len(case_ids)} cases, direct {verdict_counts(direct)}, {proxied_text}")
    passed, failed = len(case_ids) - len(differing), len(differing)
    if counts is None:
        print(f"{passed} passed, {failed} failed")
    else:
        counts.passed, counts.failed = passed, failed
    return 1 if differing else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("direct", type=Path, help="kosoku report directory of the direct run")
    parser.add_argument("proxied", type=Path, help="kosoku report directory of the proxied run")
    parser.add_argument("--table", type=Path, help="write the full per-case table here")
    parser.add_argument("--all", action="store_true", help="print every case, not only the notable")
    args = parser.parse_args()
    return compare(args.direct, args.proxied, args.table, args.all)


if __name__ == "__main__":
    sys.exit(main())
