"""`kscribe demo`: from nothing configured to a printed, redacted session, in well under a minute,
with nothing left running, also when interrupted with Ctrl-C."""

import base64
import os
import re
import signal
import subprocess
import time
import uuid

import pytest

import harness


def processes_mentioning(needle):
    """Pids whose command line or environment mentions `needle` (the demo's directory)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        for what in ("cmdline", "environ"):
            try:
                with open("/proc/%s/%s" % (pid, what), "rb") as f:
                    if needle.encode() in f.read():
                        found.append(int(pid))
                        break
            except OSError:
                pass
    return found


def demo_env(secret):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KUBE", "KSCRIBE_HOME", "NO_COLOR"))}
    env["KSCRIBE_DEMO_SECRET"] = secret
    return env


def test_demo(kscribe_bin, workdir):
    secret = "planted-" + uuid.uuid4().hex
    needles = [secret, base64.b64encode(secret.encode()).decode(),
               base64.b64encode(base64.b64encode(secret.encode())).decode()]
    d = os.path.join(workdir, "demo")
    start = time.monotonic()
    p = subprocess.run([kscribe_bin, "demo", "--dir", d], capture_output=True, timeout=120,
                       env=demo_env(secret), start_new_session=True)
    elapsed = time.monotonic() - start
    out, err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
    assert p.returncode == 0, out[-6000:] + err[-4000:]
    assert elapsed < 45, elapsed
    print("demo took %.1fs" % elapsed)
    # the session, printed with the viewer
    assert "DEMO" in out and "session   " in out
    table = out[out.index("SEQ  "):]
    assert re.search(r"POST +/api/v1/namespaces/default/secrets(\?\S*)? +201 +2 MODIFY", table)
    assert re.search(r"GET +/api/v1/namespaces/default/secrets/demo-db(\?\S*)? +200 +3 SENSITIVE", table)
    assert re.search(r"DELETE +/api/v1/namespaces/default/configmaps/demo-config(\?\S*)? +200 +3 "
                     r"SENSITIVE", table)
    assert re.search(r"PATCH +/apis/apps/v1/namespaces/default/deployments/web", table)
    assert re.search(r"GET +/api/v1/namespaces/default/pods\?\S*watch=(true|1)", table)
    assert '"password": "[REDACTED]"' in out
    for n in needles:
        assert n not in out and n not in err
    # every file it wrote is listed, and none holds the Secret's value in any form
    listed = re.findall(r"^  (/\S+)  \(", out, re.M)
    home = os.path.join(d, "home")
    on_disk = []
    for root, _, files in os.walk(home):
        on_disk += [os.path.join(root, f) for f in files]
    assert sorted(on_disk + [os.path.join(d, "report.html")]) == sorted(listed)
    assert any(f.endswith(".jsonl") for f in listed) and any("audit" in f for f in listed)
    for f in listed:
        data = open(f, "rb").read()
        for n in needles:
            assert n.encode() not in data, f
    assert processes_mentioning(d) == []


def test_demo_interrupted_leaves_nothing_running(kscribe_bin, workdir):
    d = os.path.join(workdir, "demo-int")
    p = subprocess.Popen([kscribe_bin, "demo", "--dir", d], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=demo_env("planted-" + uuid.uuid4().hex),
                         start_new_session=True)
    try:
        # wait until the API server, kscribe serve and kubectl are all up
        line = b""
        deadline = time.monotonic() + 60
        while b"The agent's script" not in line and time.monotonic() < deadline:
            line = p.stdout.readline()
            if not line and p.poll() is not None:
                break
        assert len(processes_mentioning(d)) >= 2
        p.send_signal(signal.SIGINT)
        rc = p.wait(15)
        assert rc == 128 + signal.SIGINT
        assert b"interrupted" in p.stderr.read()
        harness.wait_for(lambda: processes_mentioning(d) == [], 5, "the demo's children to end")
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
