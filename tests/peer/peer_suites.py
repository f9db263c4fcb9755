"""Run each SDK's own shipped test suite bare and with groupspec installed on every client; fail on any test
that passes bare and fails hooked.

    python tests/peer/peer_suites.py [--suites segment,rudderstack,customerio] [--modes consumer,inline]
                                     [--jobs 3] [--json summary.json]

The suites are the `test` packages inside the installed wheels (`segment/analytics/test/`,
`rudderstack/analytics/test/`, `customerio/analytics/test/`). Each runs in its own pytest process with
`peer_plugin.py` (next to this file): the network stubbed (any host but loopback answers `200 {}`), Segment's
`TestClient.fail` override undone, and, in a hooked run, `install(client, config, mode=MODE)` on every
`Client` the suite creates. A test that fails bare (it needs the real API, a source checkout, ...) is listed as
not comparable; a regression is confirmed by running the suite hooked once more. Exit status 1 on a regression.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
SUITES = {"segment": "segment.analytics", "rudderstack": "rudderstack.analytics",
          "customerio": "customerio.analytics"}
#: Customer.io's suite names its modules client.py, consumer.py, ... (not test_*.py)
PYTHON_FILES = {"customerio": "*.py"}
TIMEOUT = 900


def suite_dir(name: str) -> Path:
    spec = importlib.util.find_spec(SUITES[name])
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{SUITES[name]} is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "test"


def run(name: str, mode: str, workdir: Path) -> dict[str, str]:
    """test id -> passed | failed | skipped, for one run of suite `name` (mode "bare": no groupspec)."""
    report = workdir / f"{name}-{mode}.xml"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    env.pop("GROUPSPEC_PEER_MODE", None)
    if mode != "bare":
        env["GROUPSPEC_PEER_MODE"] = mode
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "peer_plugin",
            "--rootdir", str(workdir), "--junitxml", str(report), "-o", "junit_family=xunit1",
            "-o", f"python_files={PYTHON_FILES.get(name, 'test_*.py')}", str(suite_dir(name))]
    log = workdir / f"{name}-{mode}.log"
    with log.open("wb") as out:
        subprocess.run(args, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=TIMEOUT)
    if not report.exists():
        raise SystemExit(f"{name} ({mode}) produced no report; see {log}")
    results: dict[str, str] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        test = f"{case.get('classname')}::{case.get('name')}"
        if case.find("failure") is not None or case.find("error") is not None:
            outcome = "failed"
        elif case.find("skipped") is not None:
            outcome = "skipped"
        else:
            outcome = "passed"
        if results.get(test) != "failed":  # subtests report under one id: any failure fails it
            results[test] = outcome
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suites", default=",".join(SUITES))
    parser.add_argument("--modes", default="consumer,inline")
    parser.add_argument("--jobs", type=int, default=3, help="suite runs at once")
    parser.add_argument("--json", help="write the summary here")
    args = parser.parse_args()
    suites = [s for s in args.suites.split(",") if s]
    modes = [m for m in args.modes.split(",") if m]
    summary: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="groupspec-peers-") as tmp:
        workdir = Path(tmp)
        runs = [(s, m) for s in suites for m in ["bare", *modes]]
        with ThreadPoolExecutor(args.jobs) as pool:
            outcomes = dict(zip(runs, pool.map(lambda sm: run(*sm, workdir), runs)))
        regressed = False
        for suite in suites:
            bare = outcomes[suite, "bare"]
            passing = {t for t, o in bare.items() if o == "passed"}
            row = {"tests": len(bare), "passed_bare": len(passing),
                   "not_comparable": sorted(t for t, o in bare.items() if o == "failed"), "modes": {}}
            for mode in modes:
                hooked = outcomes[suite, mode]
                lost = sorted(t for t in passing if hooked.get(t) != "passed")
                if lost:  # confirm once, alone: the suites have timing-sensitive tests
                    again = run(suite, mode, workdir)
                    lost = [t for t in lost if again.get(t) != "passed"]
                row["modes"][mode] = {"passed": sum(o == "passed" for o in hooked.values()), "regressions": lost}
                regressed |= bool(lost)
            summary[suite] = row
    for suite, row in summary.items():
        print(f"{suite}: {row['tests']} tests, {row['passed_bare']} pass bare; "
              f"not comparable (fail bare): {len(row['not_comparable'])}")
        for test in row["not_comparable"]:
            print(f"  - {test}")
        for mode, res in row["modes"].items():
            verdict = "no regression" if not res["regressions"] else f"{len(res['regressions'])} REGRESSIONS"
            print(f"  hooked ({mode}): {res['passed']} pass; {verdict}")
            for test in res["regressions"]:
                print(f"    ! {test}")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return 1 if regressed else 0


if __name__ == "__main__":
    sys.exit(main())
