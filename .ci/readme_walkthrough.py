#!/usr/bin/env python3
"""Runs README.md's curl walkthrough, as written, against `cargo run --example server`.

The walkthrough is the shell block after "In a second shell". Its KEY= line is replaced with the
key the server printed; every other line runs unchanged in bash. A comment line that directly
follows a command is that command's expected output, where "..." stands for any text. The check
fails on any difference, so the README cannot drift from what the server does.
"""

import re
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def walkthrough() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("```sh", text.index("In a second shell")) + len("```sh")
    return text[start : text.index("```", start)]


def expectations(block: str) -> list[str]:
    expected, previous_was_command = [], False
    for line in block.splitlines():
        if line.startswith("# ") and previous_was_command:
            expected.append(line[2:])
            continue
        previous_was_command = bool(line.strip()) and not line.startswith("#")
    return expected


def matches(pattern: str, line: str) -> bool:
    regex = ".*".join(re.escape(part) for part in pattern.split("..."))
    return re.fullmatch(regex, line) is not None


def main() -> int:
    subprocess.run(["cargo", "build", "-q", "--example", "server"], cwd=ROOT, check=True)
    # A fresh working directory: the server stores keys in ./keygate.db by default, and only a
    # first start (an empty store) prints the bootstrap key the walkthrough uses.
    workdir = tempfile.TemporaryDirectory()
    server = subprocess.Popen(
        [str(Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")).resolve() / "debug/examples/server")],
        stdout=subprocess.PIPE,
        text=True,
        cwd=workdir.name,
    )
    try:
        banner = [server.stdout.readline().rstrip("\n") for _ in range(3)]
        key = banner[2]
        if not re.fullmatch(r"idc_[A-Za-z0-9]{32}", key):
            print(f"server did not print a key: {banner}")
            return 1
        time.sleep(0.2)
        block = re.sub(r"^KEY=\S+", f"KEY={key}", walkthrough(), flags=re.M)
        run = subprocess.run(["bash", "-c", block], capture_output=True, text=True, timeout=60)
        got = run.stdout.splitlines()
        want = expectations(block)
        ok = run.returncode == 0 and len(got) == len(want)
        for i, pattern in enumerate(want):
            line = got[i] if i < len(got) else "<missing>"
            good = matches(pattern, line)
            ok &= good
            print(f"{'ok ' if good else 'BAD'} {pattern[:100]}")
            if not good:
                print(f"    got: {line[:300]}")
        if len(got) != len(want):
            print(f"expected {len(want)} output lines, got {len(got)}; stderr: {run.stderr}")
        print(f"README walkthrough: {len(want)} outputs as shown" if ok else "README walkthrough: FAILED")
        return 0 if ok else 1
    finally:
        server.terminate()
        server.wait(timeout=10)
        workdir.cleanup()


if __name__ == "__main__":
    sys.exit(main())
