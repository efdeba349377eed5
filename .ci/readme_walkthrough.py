"""Follow the README literally, as a new user would, from a fresh clone.

    python3 .ci/readme_walkthrough.py [--demo-and-api] [--keep]

1. `git clone` this repository (its committed HEAD) into a temporary folder;
2. run the commands of the README's first code block there, exactly as printed
   (`./run demo`, `./run tests`; --demo-and-api leaves out the test command when the caller
   runs it itself, as .ci/run does);
3. run the code blocks of its "Try the API" section, as printed, in one bash session (so
   `export`s and `$!` carry from block to block);
4. check what they printed: the demo's stage lines, no library log noise, no duplicate
   messages at the stand-ins; the API's answers (the shipment delivered with 2 scans), the
   demo's model in `models list`; afterwards no process of the clone is left running.

Stores as the README says: DATABASE_URL and REDIS_URL unset, so embedded ones. Standard
library only: it runs before the clone has a virtualenv. Timings per step are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIMITS = {"demo": 15 * 60, "tests": 40 * 60, "api": 5 * 60}
# What a library's log line or a build tool looks like: none of it may reach the terminal.
NOISE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ |initdb|alembic|setuptools|"
                   r"BuildBackendWarning|^WARNING: |^Collecting |^Successfully installed",
                   re.IGNORECASE | re.MULTILINE)
STAGE = re.compile(r"^\[\s*\d+:\d\d\] (\d+)/(\d+) ", re.MULTILINE)


@dataclass
class Step:
    name: str
    output: str
    seconds: float


def fail(message: str, output: str = "") -> None:
    if output:
        print(output[-6000:], file=sys.stderr)
    raise SystemExit(f"README walk-through: {message}")


def bash_blocks(markdown: str) -> list[tuple[str, str]]:
    """Every ```bash block with the `## ` heading it sits under."""
    blocks, heading = [], ""
    lines = iter(markdown.splitlines())
    for line in lines:
        if line.startswith("## "):
            heading = line[3:].strip()
        elif line.strip() == "```bash":
            body = []
            for inner in lines:
                if inner.strip() == "```":
                    break
                body.append(inner)
            blocks.append((heading, "\n".join(body) + "\n"))
    return blocks


def user_env() -> dict[str, str]:
    """This machine's environment as a new user has it: no store URLs, no Parcelcast
    settings, nothing of an enclosing virtualenv or test run."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "REDIS_URL", "VIRTUAL_ENV", "PYTHONPATH")
           and not k.startswith(("PARCELCAST_", "TEST_", "PYTEST_"))}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if ".venv" not in p)
    return env


def run(name: str, script: str, cwd: Path, limit: float) -> Step:
    """`script` in bash, output shown as it comes and kept; its own process group."""
    print(f"\n=== {name}\n{script.rstrip()}\n---", flush=True)
    started = time.monotonic()
    process = subprocess.Popen(["bash", "-e", "-o", "pipefail", "-c", script], cwd=cwd,
                               env=user_env(), stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    assert process.stdout is not None
    lines = []
    deadline = started + limit
    for line in process.stdout:
        print(line, end="", flush=True)
        lines.append(line)
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            fail(f"{name} still running after {limit:.0f} s")
    status = process.wait()
    step = Step(name, "".join(lines), time.monotonic() - started)
    print(f"--- {name}: exit {status} after {step.seconds:.0f} s", flush=True)
    if status != 0:
        fail(f"{name} exited with {status}", step.output)
    return step


def check_demo(step: Step) -> None:
    stages = STAGE.findall(step.output)
    if not stages or len(stages) != int(stages[-1][1]):
        fail("the demo did not print one stamped line per stage", step.output)
    noise = NOISE.findall(step.output)
    if noise:
        fail(f"library output reached the terminal: {noise[:5]}", step.output)
    if "duplicates: SMS 0, e-mail 0" not in step.output:
        fail("the stand-ins saw duplicate messages", step.output)
    if not re.search(r"Logs: \S+", step.output):
        fail("the demo did not name its log files", step.output)


def json_documents(text: str) -> list[object]:
    """The JSON values in `text` (curl prints them back to back, without newlines)."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while (start := text.find("{", at)) != -1:
        try:
            value, at = decoder.raw_decode(text, start)
            found.append(value)
        except json.JSONDecodeError:
            at = start + 1
    return found


def check_api(step: Step) -> None:
    docs = [d for d in json_documents(step.output) if isinstance(d, dict)]
    ready = next((d for d in docs if "checks" in d), None)
    if ready is None or ready.get("status") != "ok":
        fail("the API never answered /readyz with ok", step.output)
    batch = next((d for d in docs if "accepted" in d), None)
    if batch is None or (batch["accepted"], batch["duplicates"]) != (2, 1):
        fail("the tracking events were not 2 accepted and 1 duplicate", step.output)
    shipment = next((d for d in reversed(docs) if "timeline" in d), None)
    if shipment is None or shipment["status"] != "delivered" or len(shipment["timeline"]) != 2:
        fail("the shipment did not come back delivered with 2 scans", step.output)
    if "champion" not in step.output:
        fail("`parcelcast models list` did not show the demo's champion", step.output)
    if not re.search(r"dropped parcelcast_demo_\d+", step.output):
        fail("`parcelcast demo --clean` did not drop the demo's database", step.output)


def leftovers(clone: Path) -> list[str]:
    """Processes still running from the clone (their command line names it)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(clone) in cmdline and int(proc.name) != os.getpid():
            found.append(f"{proc.name} {cmdline[:160]}")
    return found


def end_leftovers(clone: Path) -> None:
    """Stop what a failed step left running: the clone's own processes, by pid."""
    if (clone / ".venv" / "bin" / "parcelcast").exists():
        subprocess.run([str(clone / ".venv/bin/parcelcast"), "stores", "stop"], cwd=clone,
                       env=user_env(), stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=120)
    for line in leftovers(clone):
        try:
            os.kill(int(line.split()[0]), signal.SIGKILL)
        except ProcessLookupError:
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo-and-api", action="store_true",
                        help="only the demo and the API steps: the caller runs the README's "
                             "test command itself")
    parser.add_argument("--keep", action="store_true", help="keep the clone afterwards")
    args = parser.parse_args()

    if subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                      capture_output=True, text=True).stdout.strip():
        print("note: uncommitted changes are not part of the clone", file=sys.stderr)
    home = Path(tempfile.mkdtemp(prefix="parcelcast-readme-"))
    home.chmod(0o755)  # the embedded PostgreSQL runs as its own user and must get in
    clone = home / "parcelcast"
    steps: list[Step] = []
    try:
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
        blocks = bash_blocks((clone / "README.md").read_text())
        if not blocks:
            fail("README.md has no ```bash block")
        for line in blocks[0][1].splitlines():
            command = line.split("#", 1)[0].strip()
            if not command:
                continue
            if command.startswith("./run tests"):
                if args.demo_and_api:
                    print(f"\n=== {command}: run by the caller (--demo-and-api)", flush=True)
                    continue
                steps.append(run(command, line, clone, LIMITS["tests"]))
            elif command.startswith("./run demo"):
                steps.append(run(command, line, clone, LIMITS["demo"]))
                check_demo(steps[-1])
            else:
                fail(f"unexpected first command {command!r}")
        api = [body for heading, body in blocks if heading.lower().startswith("try the api")]
        if not api:
            fail('README.md has no "Try the API" ```bash block')
        steps.append(run("Try the API", "\n".join(api), clone, LIMITS["api"]))
        check_api(steps[-1])
        deadline = time.monotonic() + 20  # a stopped server takes a moment to exit
        while (left := leftovers(clone)) and time.monotonic() < deadline:
            time.sleep(0.5)
        if left:
            fail("processes of the clone still running after the README's last step:\n"
                 + "\n".join(left))
    finally:
        end_leftovers(clone)
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    print("\nREADME walk-through passed:")
    for step in steps:
        print(f"  {step.seconds:6.0f} s  {step.name}")


if __name__ == "__main__":
    main()
