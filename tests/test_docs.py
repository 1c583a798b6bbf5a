"""Every `spanqa ...` command line that README.md and docs/*.md show a user typing, run as typed.

Commands are extracted from the Markdown's fenced code blocks (not copied here): a line that
starts with `spanqa` (or `$ spanqa`, in a transcript whose other lines are its output), with
backslash continuations joined. A block preceded by `<!-- docs-test: skip (reason) -->` is
skipped with that reason (the network, a GPU, a remote cluster); a command typed the same way
in an earlier document is run there, once. Each document's commands run in order in one working
directory beside a `shared` tree whose model is the real stand-in and whose SQuAD files are the
first held-out paragraphs, SLICE_QUESTIONS questions or just over (so `../shared/...` in the docs
works as written); one package cache serves every document. `spanqa serve` is started, waited for until
ready, and stopped at the end of its document.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SKIP = re.compile(r"<!--\s*docs-test:\s*skip\s*\((?P<reason>[^)]*)\)\s*-->")
ENV = r"^(?:[A-Z_][A-Z0-9_]*=\S*\s+)*"  # `VAR=value ` assignments before the command
SLICE_QUESTIONS = 210  # the accuracy guard needs 200 questions; the slice ends at a paragraph


@dataclass(frozen=True)
class DocCommand:
    doc: str
    line: int
    text: str
    skip: str | None

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line} {self.text[:60]}"


def doc_commands(path: Path) -> list[DocCommand]:
    """The spanqa command lines of one Markdown file, in order."""
    out: list[DocCommand] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    fence: str | None = None
    transcript = False
    skip: str | None = None
    pending: str | None = None  # a skip marker waiting for its block
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if fence is None:
            m = SKIP.search(line)
            if m:
                pending = m.group("reason")
            elif stripped.startswith("```"):
                fence, skip, pending = stripped[:3], pending, None
                # a transcript ("$ command" then its output): only the "$ " lines are typed
                end = next((k for k in range(i + 1, len(lines)) if lines[k].strip().startswith("```")), len(lines))
                transcript = any(lines[k].lstrip().startswith("$ ") for k in range(i + 1, end))
            elif stripped:
                pending = None
            i += 1
            continue
        if stripped.startswith(fence):
            fence = skip = None
            i += 1
            continue
        start = i
        if transcript and not stripped.startswith("$ "):
            i += 1
            continue
        text = re.sub(r"^\$ ", "", stripped)
        while text.endswith("\\") and i + 1 < len(lines):
            i += 1
            text = text[:-1].rstrip() + " " + lines[i].strip()
        i += 1
        if re.match(ENV + r"spanqa\s", text) or re.search(r"&&\s*spanqa(\s|$)", text):
            command = _strip_comment(text)
            out.append(DocCommand(path.relative_to(ROOT).as_posix(), start + 1, command, skip))
    return out


def starts_server(command: str) -> bool:
    """`spanqa serve ...`, after any `VAR=value` assignments."""
    return re.match(ENV + r"spanqa serve\b", command) is not None


def _strip_comment(text: str) -> str:
    """The command without a trailing `# comment` (a # after whitespace, outside quotes)."""
    quote = None
    for k, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and k and text[k - 1].isspace():
            return text[:k].rstrip()
    return text


def _once(commands: list[DocCommand]) -> list[DocCommand]:
    """A command typed the same way in an earlier document is run there: here it is skipped."""
    first: dict[str, DocCommand] = {}
    out = []
    for c in commands:
        earlier = first.setdefault(c.text, c) if c.skip is None else c
        if earlier is not c and not starts_server(c.text):
            c = DocCommand(c.doc, c.line, c.text, f"the same command as {earlier.doc}:{earlier.line}, which runs")
        out.append(c)
    return out


ALL = _once([c for doc in DOCS for c in doc_commands(doc)])


def test_the_docs_show_commands_and_every_skip_says_why():
    assert len([c for c in ALL if c.skip is None]) >= 10, [c.id for c in ALL]
    for c in ALL:
        assert c.skip is None or c.skip.strip(), c.id


def test_a_command_typed_again_runs_once():
    a, b, serve = (
        DocCommand(doc, 1, text, None)
        for doc, text in (("A.md", "spanqa run x"), ("B.md", "spanqa run x"), ("B.md", "spanqa serve"))
    )
    assert _once([a, b, serve, serve]) == [
        a,
        DocCommand("B.md", 1, "spanqa run x", "the same command as A.md:1, which runs"),
        serve,
        serve,
    ]


@pytest.fixture(scope="session")
def docs_shared(tmp_path_factory, shared_dir) -> Path:
    """A `shared` tree like ../shared whose SQuAD files are the first held-out questions."""
    root = tmp_path_factory.mktemp("docs") / "shared"
    (root / "models").mkdir(parents=True)
    (root / "models" / "standin-minilm-squad").symlink_to(shared_dir / "models" / "standin-minilm-squad")
    (root / "data" / "squad").mkdir(parents=True)
    (root / "data" / "vocab").symlink_to(shared_dir / "data" / "vocab")
    data = json.loads((shared_dir / "data" / "squad" / "dev-v1.1-heldout.json").read_text(encoding="utf-8"))
    kept, count = [], 0
    for article in data["data"]:
        paragraphs = []
        for paragraph in article["paragraphs"]:
            if count >= SLICE_QUESTIONS:
                break
            paragraphs.append(paragraph)
            count += len(paragraph["qas"])
        if not paragraphs:
            break
        kept.append({**article, "paragraphs": paragraphs})
    assert count >= SLICE_QUESTIONS, count  # the README's int8 guard takes 200 of them
    sliced = json.dumps({"version": data.get("version", "1.1"), "data": kept})
    for name in ("dev-v1.1-heldout.json", "dev-v1.1.json"):
        (root / "data" / "squad" / name).write_text(sliced, encoding="utf-8")
    return root


class _Docs:
    """One working directory per document, the servers it started, and one package cache."""

    def __init__(self, base: Path, locks: Path):
        self.base = base
        self.home = base / "spanqa-home"
        self.servers: list[subprocess.Popen] = []
        self.locks = locks  # shared by the xdist workers: a document's servers hold their port
        self.held: list = []

    def workdir(self, doc: str) -> Path:
        path = self.base / doc.replace("/", "_")  # beside shared/, so ../shared is as the docs say
        path.mkdir(parents=True, exist_ok=True)
        return path

    def env(self) -> dict:
        env = dict(os.environ, SPANQA_HOME=str(self.home), PYTHONUNBUFFERED="1")
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        return env

    def stop_servers(self) -> None:
        """SIGTERM to each server's process group, then wait until the whole group has gone (the
        server drains after its shell has died), so the next server finds its port free."""
        for proc in self.servers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=60)  # the shell, or the server itself where the shell exec'd it
            deadline = time.monotonic() + 60
            while _group_alive(proc.pid) and time.monotonic() < deadline + 10:
                if time.monotonic() > deadline:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                time.sleep(0.2)
        self.servers.clear()
        for lock in self.held:
            lock.release()
        self.held.clear()

    def hold_port(self, port: int) -> None:
        """The port for this document's servers until stop_servers: another worker's document
        that serves on it waits."""
        from filelock import FileLock

        lock = FileLock(str(self.locks / f"docs-port-{port}.lock"))
        lock.acquire(timeout=1800)
        self.held.append(lock)


def _group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process is left in the group: an orphan's zombie may wait for
    an init that does not reap it."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


@pytest.fixture(scope="module")
def docs_run(docs_shared, tmp_path_factory):
    state = _Docs(docs_shared.parent, tmp_path_factory.getbasetemp().parent)
    yield state
    state.stop_servers()


def _port(command: str) -> int:
    m = re.search(r"--port[ =](\d+)", command)
    return int(m.group(1)) if m else 8000


def _serve(state: _Docs, command: DocCommand, cwd: Path) -> None:
    state.stop_servers()  # one server at a time on its port
    state.hold_port(_port(command.text))
    log = open(cwd / f"serve-{command.line}.log", "w")
    # Its own process group: `sh -c` may not exec the server, and a SIGTERM to the shell alone
    # would leave the server (and its Ray cluster) running, still answering on the port.
    proc = subprocess.Popen(command.text, shell=True, cwd=cwd, env=state.env(), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    state.servers.append(proc)
    url = f"http://127.0.0.1:{_port(command.text)}/readyz"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert proc.poll() is None, (cwd / f"serve-{command.line}.log").read_text()
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    pytest.fail(f"{command.id}: not ready within 300 s")


@pytest.mark.parametrize("command", ALL, ids=[c.id for c in ALL])
def test_doc_command(command: DocCommand, docs_run: _Docs):
    if command.skip is not None:
        pytest.skip(command.skip)
    cwd = docs_run.workdir(command.doc)
    if command.doc != getattr(docs_run, "doc", None):
        docs_run.stop_servers()
        docs_run.doc = command.doc
    if starts_server(command.text):
        _serve(docs_run, command, cwd)
        return
    result = subprocess.run(command.text, shell=True, cwd=cwd, env=docs_run.env(), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{command.id}\n$ {command.text}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
