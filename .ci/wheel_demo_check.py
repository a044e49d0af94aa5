"""Run `shopfloor demo` from an installed wheel and check it serves: the board, sign-in, live machines, clean stop.

Standard library only (it runs in the wheel's fresh venv, outside the checkout). Exit 0 when every check passed.
"""

from __future__ import annotations

import http.cookiejar
import json
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

MACHINES = {"cnc-01", "cnc-02", "laser-01", "press-01", "brake-01"}


def main(shopfloor: str) -> int:
    import shopfloor as package  # the installed one, not a checkout

    where = Path(package.__file__).resolve()
    if "site-packages" not in where.parts:
        print(f"shopfloor is imported from {where}, not from the installed wheel", file=sys.stderr)
        return 1
    # The dashboards ship with the wheel: `shopfloor dashboards check` finds them without --dir.
    checked = subprocess.run([shopfloor, "dashboards", "check"], capture_output=True, text=True, timeout=60)
    if checked.returncode != 0:
        print(checked.stdout + checked.stderr, file=sys.stderr)
        print("shopfloor dashboards check failed in the installed wheel", file=sys.stderr)
        return 1
    proc = subprocess.Popen(
        [shopfloor, "demo", "--port", "0", "--no-browser", "--duration", "90", "--log-level", "WARNING"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    output: list[str] = []
    try:
        board = key = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (board is None or key is None):
            line = proc.stdout.readline()
            if not line:
                break
            output.append(line)
            if m := re.search(r"Board\s+(http://\S+)/board", line):
                board = m.group(1)
            if m := re.search(r"demo-admin\s+admin\s+(\S+)", line):
                key = m.group(1)
        if not (board and key):
            raise AssertionError("the demo printed no board URL and admin key")
        jar = http.cookiejar.CookieJar()
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        with browser.open(f"{board}/signin", data=urllib.parse.urlencode({"key": key}).encode(), timeout=10) as resp:
            page = resp.read().decode()  # the redirect after sign-in lands on the board
        if "<html" not in page or not any(c.name == "sf_session" for c in jar):
            raise AssertionError("signing in did not lead to the board")
        seen: set[str] = set()
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline and seen != MACHINES:
            req = urllib.request.Request(f"{board}/v1/machines", headers={"Authorization": f"Bearer {key}"})
            with urllib.request.urlopen(req, timeout=10) as resp:
                machines = json.load(resp)["machines"]
            seen = {m["id"] for m in machines if m["last_seen"] is not None and m["link"] == "online"}
            time.sleep(1)
        if seen != MACHINES:
            raise AssertionError(f"machines heard from through the chain: {sorted(seen)}")
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
        output.append(rest)
        if proc.returncode != 0:
            raise AssertionError(f"the demo exited with {proc.returncode} on Ctrl-C")
    except Exception as exc:
        print("".join(output), file=sys.stderr)
        print(f"wheel demo check failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    print(f"wheel demo check passed: board at {board}, {len(seen)} machines live, clean stop")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
