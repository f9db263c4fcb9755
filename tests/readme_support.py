"""Running the README as a new user would: its code blocks by section, in order, in a fresh folder.

A block introduced by "Save this as `NAME`" (or "and this as `NAME`") is written to that file; a `sh` block's
commands run one by one; a Python block without a file name runs as a script; `groupspec serve` and `flask ...
run` start in the background (on free ports: `localhost:8080` and `localhost:5000` in the README's text are
replaced by them) and run until the session ends. `pip install` and the test command are not run here: `check`
says what covers them.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
#: how the README's programs run here: with this interpreter, whatever PATH holds
PROGRAMS = {"groupspec": [sys.executable, "-m", "groupspec.plugin.cli"], "flask": [sys.executable, "-m", "flask"],
            "mkdocs": [sys.executable, "-m", "mkdocs"], "python": [sys.executable]}
#: the README's service addresses (the programs' default ports)
PORTS = {"groupspec serve": 8080, "flask": 5000}
_SAVE = re.compile(r"this as `([^`]+)`")
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.S | re.M)


@dataclass(frozen=True)
class Block:
    section: str  # the `## ` heading it is under
    lang: str
    text: str
    file: str | None  # the file the README says to save it as


def blocks(text: str | None = None) -> list[Block]:
    """Every fenced block of the README, with its section and, when the README names one, its file."""
    text = README.read_text() if text is None else text
    found = []
    for match in _FENCE.finditer(text):
        before = text[: match.start()]
        headings = re.findall(r"^## (.+)$", before, re.M)
        lead = before.rstrip("\n").rsplit("\n\n", 1)[-1]  # the paragraph just before the block
        named = _SAVE.findall(lead) if lead.rstrip().endswith(":") else []
        found.append(Block(headings[-1] if headings else "", match.group(1), match.group(2),
                           named[-1] if named else None))
    return found


def commands(block: Block) -> list[str]:
    """A shell block's commands: one a line, comments and blank lines left out."""
    out = []
    for line in block.text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(line.split("  #")[0].rstrip())
    return out


def check_pip(command: str) -> None:
    """A `pip install` of this project: each extra it names exists, and what it adds beyond them is installed."""
    words = shlex.split(command)[2:]
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for word in words:
        if word in ("-e", "."):
            continue
        target = re.fullmatch(r"\.\[([\w,]+)\]", word)
        if target:
            missing = set(target.group(1).split(",")) - set(extras)
            assert not missing, f"README installs extras pyproject.toml does not have: {missing}"
        else:
            __import__(word)  # a package of the user's app (flask): the test extra installs it


class Session:
    """One new user's terminal: a folder, an environment, the servers they started."""

    def __init__(self, folder: Path, *, env: dict[str, str] | None = None,
                 files: dict[str, Callable[[str], str]] | None = None,
                 handlers: dict[str, Callable[[Block, "Session"], None]] | None = None) -> None:
        self.folder = folder
        self.fixed = env or {}  # values the test sets over the README's placeholders
        self.env = {**os.environ, **self.fixed}
        self.files = files or {}  # file name -> an edit the test makes (pointing it at a stand-in)
        self.handlers = handlers or {}  # block language -> how the test runs it (js: as analytics.js would)
        self.ports = {name: _free_port() for name in PORTS}
        self.servers: list[subprocess.Popen] = []
        self.outputs: dict[str, str] = {}

    def local(self, text: str) -> str:
        """The README's text with its service addresses replaced by this session's ports."""
        for name, port in PORTS.items():
            text = text.replace(f"localhost:{port}", f"127.0.0.1:{self.ports[name]}")
        return text

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def run(self, section: str) -> None:
        """Every block of `section`, in order."""
        found = [b for b in blocks() if b.section.startswith(section)]
        assert found, f"README has no section {section!r}"
        for block in found:
            if block.file:
                text = self.local(block.text)
                (self.folder / block.file).write_text(self.files.get(block.file, lambda t: t)(text))
            elif block.lang == "sh":
                for command in commands(block):
                    for part in command.split(" && "):
                        self.command(part)
            elif block.lang == "python":
                done = subprocess.run([sys.executable, "-c", self.local(block.text)], cwd=self.folder, env=self.env,
                                      capture_output=True, text=True, timeout=60)
                assert done.returncode == 0, done.stderr
            elif block.lang in self.handlers:
                self.handlers[block.lang](block, self)
            else:
                raise AssertionError(f"no way to run a {block.lang!r} block of README section {section!r}")

    def command(self, command: str) -> None:
        if command.startswith("export "):
            self.env.update(word.split("=", 1) for word in shlex.split(command)[1:])
            self.env.update(self.fixed)
        elif command.startswith("pip install"):
            check_pip(command)
        elif command == "python -m pytest":
            assert "python -m pytest" in (ROOT / ".ci/run").read_text()
        elif background := next((name for name in PORTS if command.startswith(name)), None):
            self.start(background, command)
        else:
            self.outputs[command] = self.shell(command)

    def argv(self, command: str) -> str:
        words = command.split(" ", 1)
        program = PROGRAMS.get(words[0])
        return self.local(" ".join([*map(shlex.quote, program), *words[1:]]) if program else command)

    def shell(self, command: str) -> str:
        """Run `command`; with a server running (its work is asynchronous), retry until it succeeds."""
        deadline = time.monotonic() + (20 if self.servers else 0)
        while True:
            done = subprocess.run(["bash", "-c", self.argv(command)], cwd=self.folder, env=self.env,
                                  capture_output=True, text=True, timeout=120)
            if done.returncode == 0:
                return done.stdout
            if time.monotonic() > deadline:
                raise AssertionError(f"README command failed ({done.returncode}): {command}\n"
                                     f"{done.stdout}{done.stderr}")
            time.sleep(0.2)

    def start(self, name: str, command: str) -> None:
        log = (self.folder / f"{name.split()[0]}.log").open("ab")
        proc = subprocess.Popen(["bash", "-c", f"exec {self.argv(command)} --port {self.ports[name]}"],
                                cwd=self.folder, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.servers.append(proc)
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"{command} exited: {(self.folder / log.name).read_text()[-2000:]}"
            try:
                socket.create_connection(("127.0.0.1", self.ports[name]), timeout=1).close()
                return
            except OSError:
                assert time.monotonic() < deadline, f"{command} did not start listening"
                time.sleep(0.1)

    def close(self) -> None:
        """Stop the servers this session started (each leads its own process group: its children with it)."""
        for proc in self.servers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(5)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
