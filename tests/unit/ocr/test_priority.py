"""``ocr_model.lower_priority``: every thread of the process, and those it starts later, run at
the niceness asked for (in a process of its own: niceness cannot be lowered back unprivileged)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

CODE = """
import json, os, sys, threading
sys.path.insert(0, "model_repo")
import ocr_model

before = threading.Event(); stop = threading.Event()
seen = {}

def older():
    before.set(); stop.wait()

def later():
    seen["later"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

t = threading.Thread(target=older); t.start(); before.wait()
got = ocr_model.lower_priority(7)
seen["older"] = os.getpriority(os.PRIO_PROCESS, t.native_id)
u = threading.Thread(target=later); u.start(); u.join()
stop.set(); t.join()
seen["returned"] = got
seen["zero"] = ocr_model.lower_priority(0)
print(json.dumps(seen))
"""


def test_lower_priority_reaches_every_thread_and_those_started_after() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CODE], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    # a thread that ran before the call, one started after it, and the process as reported
    assert seen == {"older": 7, "later": 7, "returned": 7, "zero": 7}
