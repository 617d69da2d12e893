"""kill -9 while requests stream, restart: nothing that completed before the last sync is lost,
the open session is recovered (manifest close_reason "recovered after crash"), the audit chain
verifies and continues."""

import os
import signal
import threading
import time

import pytest

import harness
import kscribe_schemas
import recorder_checks

PROXY = os.path.join(harness.SOURCE_DIR, "proxy", "server.cc")
pytestmark = pytest.mark.skipif(not os.path.exists(PROXY) or not harness.kscribe_bin(),
                                reason="needs the proxy (proxy/server.cc) on main and the binary")


def test_kill_9_and_recover(workdir):
    upstream = harness.ApiServer(os.path.join(workdir, "apiserver")).start()
    home = os.path.join(workdir, "kscribe", "home")
    storage = os.path.join(home, "sessions")
    audit = os.path.join(home, "audit", "audit.jsonl")
    ks = harness.Kscribe(os.path.join(workdir, "kscribe"), upstream, agent="crashy", extra_config={
        "sessions": {"api": {"idle_timeout": "5m", "storage": storage},
                     "sync_interval": "200ms"},
        "audit": {"path": audit}})
    restarted = None
    try:
        ks.start()
        k = harness.Kubectl(ks.kubeconfig, os.path.join(workdir, "kc"))
        done = []  # names of requests kubectl saw answered, in order
        stop = threading.Event()

        def agent():
            i = 0
            while not stop.is_set():
                name = "marker-%d" % i
                r = k.run("get", "configmap", name, "--ignore-not-found", timeout=20)
                if r.rc == 0:
                    done.append((time.monotonic(), name))
                i += 1
        t = threading.Thread(target=agent, daemon=True)
        t.start()
        harness.wait_for(lambda: len(done) >= 5, 60, "five answered requests")
        time.sleep(1.0)
        cutoff = time.monotonic() - 0.6  # answered at least three sync intervals before the kill
        os.killpg(ks.process.proc.pid, signal.SIGKILL)
        ks.process.proc.wait(10)
        stop.set()
        t.join(30)
        must_survive = [n for when, n in done if when < cutoff]
        assert must_survive

        restarted = harness.Process([ks.home.bin, "serve", "--config", ks.home.config],
                                    os.path.join(workdir, "restart.log"))
        harness.wait_for(lambda: "recovered session" in restarted.output() or
                         not restarted.alive(), 30, "recovery")
        assert restarted.alive(), restarted.output()
    finally:
        if restarted:
            restarted.stop()
        ks.stop()
        upstream.stop()

    found = kscribe_schemas.validate_sessions(storage)
    recovered = [(m, lines) for m, lines in found.values()
                 if m["close_reason"] == "recovered after crash"]
    assert len(recovered) == 1, [m for m, _ in found.values()]
    paths = {l["path"] for _, lines in found.values() for l in lines}
    for name in must_survive:
        assert "/api/v1/namespaces/default/configmaps/" + name in paths, name
    rc, out = recorder_checks.audit_verify(ks.home.bin, audit)
    assert rc == 0, out
    kscribe_schemas.validate_audit(audit)
