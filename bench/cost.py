"""Benchmark: the cost of a message in `groupspec replay`, against an orjson floor, before and after.

    python bench/cost.py [--messages 200000] [--people 20000] [--before REV ...] [--callgrind]

On the stream of `bench/stream.py` (memory store, its contract), each measure is a whole process: CPU seconds
(user + sys) of the floor (parse each line, write it twice) and of `groupspec replay` at this tree and at every
`--before` revision (exported with `bench/revision.py`, nothing installed), best of `--repeat` runs. The
revisions' four outputs are compared byte for byte with this tree's (a regression check, not a source of
expected outputs). `--callgrind` also counts instructions per message with `valgrind --tool=callgrind` on a
smaller stream: the difference between two streams with the same group calls and 4,000 more tracks and
identifies, divided by 4,000 (interpreter start and imports cancel out); it does not drift with the machine's
load as seconds do.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

import stream
from revision import exported

OUTPUTS = ("forwarded.jsonl", "customerio.jsonl", "quarantine.jsonl", "summary.json")
FLOOR = """
import sys, orjson
with open(sys.argv[1], 'rb') as f, open(sys.argv[2] + '.a', 'wb') as a, open(sys.argv[2] + '.b', 'wb') as b:
    for line in f:
        line = line.rstrip(b'\\r\\n')
        if line.strip():
            obj = orjson.loads(line)
            a.write(orjson.dumps(obj) + b'\\n')
            b.write(orjson.dumps(obj) + b'\\n')
"""
REPLAY = "import sys; from groupspec.plugin.cli import main; sys.exit(main())"


def cpu_seconds(command: list[str], env: dict[str, str] | None = None) -> float:
    """User + sys CPU seconds of one child process."""
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    error = child.stderr.read().decode()
    child.stderr.close()
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])}... failed:\n{error[-2000:]}")
    return usage.ru_utime + usage.ru_stime


def instructions(command: list[str], env: dict[str, str] | None = None) -> int:
    """Instructions one process executes, counted by callgrind."""
    done = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *command], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"callgrind failed:\n{done.stderr[-2000:]}")
    return int(found[1])


class Runs:
    """The commands of the floor and of a replay at one code tree (None: this tree)."""

    def __init__(self, work: Path, config: Path) -> None:
        self.work, self.config = work, config

    def floor(self, path: Path) -> list[str]:
        return [sys.executable, "-c", FLOOR, str(path), str(self.work / "floor")]

    def replay(self, path: Path, out: Path) -> list[str]:
        return [sys.executable, "-c", REPLAY, "replay", "--config", str(self.config), "--out", str(out), str(path)]


def env_for(tree: Path | None) -> dict[str, str] | None:
    return None if tree is None else dict(os.environ, PYTHONPATH=str(tree / "path"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--people", type=int, default=20_000)
    parser.add_argument("--before", metavar="REV", action="append", default=[],
                        help="also measure this git revision (repeatable)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measure; the best is shown")
    parser.add_argument("--callgrind", action="store_true", help="also count instructions per message")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        work = Path(tmp)
        config = work / "groupspec.toml"
        config.write_text(stream.CONTRACT_TOML)
        path = work / "stream.jsonl"
        stream.write(path, args.messages, args.people)
        runs = Runs(work, config)
        trees: dict[str, Path | None] = {rev: stack.enter_context(exported(rev)) for rev in args.before}
        trees["this tree"] = None
        floor = min(cpu_seconds(runs.floor(path)) for _ in range(args.repeat))
        print(f"stream: {args.messages:,} messages, {args.people:,} people (bench/stream.py), memory store")
        print(f"{'':24} {'CPU s':>7} {'x floor':>8}  outputs")
        print(f"{'orjson floor':24} {floor:7.2f} {1:8.2f}")
        cpu: dict[str, float] = {}
        for name, tree in trees.items():  # interleaved: the machine's load shifts alike for all
            cpu[name] = min(cpu_seconds(runs.replay(path, work / name.replace(" ", "_")), env_for(tree))
                            for _ in range(args.repeat))
        mine = work / "this_tree"
        for name in trees:
            same = all((work / name.replace(" ", "_") / f).read_bytes() == (mine / f).read_bytes() for f in OUTPUTS)
            print(f"{'replay ' + name:24} {cpu[name]:7.2f} {cpu[name] / floor:8.2f}  "
                  f"{'identical' if same else 'DIFFER from this tree'}")
        if args.callgrind:
            small, big = work / "small.jsonl", work / "big.jsonl"
            stream.write(small, 1_500, 500)
            stream.write(big, 5_500, 500)
            print("instructions per message (callgrind; 4,000 tracks and identifies):")
            per = (instructions(runs.floor(big)) - instructions(runs.floor(small))) / 4000
            print(f"{'orjson floor':24} {per:10,.0f}")
            for name, tree in trees.items():
                counts = [instructions(runs.replay(p, work / "cg"), env_for(tree)) for p in (big, small)]
                value = (counts[0] - counts[1]) / 4000
                print(f"{'replay ' + name:24} {value:10,.0f} {value / per:8.2f}x floor")
    return 0


if __name__ == "__main__":
    sys.exit(main())
