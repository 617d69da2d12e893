"""The recorder end to end through the real kubectl: a scripted agent reads, writes and touches
secrets, pauses beyond a short idle timeout, and does more. Two sessions result (one closed by
the idle timeout, one by shutdown); every line and manifest validates against schemas/; tiers are
right; the audit chain verifies; tampering with any line makes verify fail; the fake secret
value appears in no file kscribe wrote."""

import os
import time

import pytest

import harness
import kscribe_schemas
import recorder_checks

PROXY = os.path.join(harness.SOURCE_DIR, "proxy", "server.cc")
pytestmark = pytest.mark.skipif(not os.path.exists(PROXY) or not harness.kscribe_bin(),
                                reason="needs the proxy (proxy/server.cc) on main and the binary")

SECRET = "FAKE-recorder-pw-7d1e9b"


def test_two_sessions_through_kubectl(workdir):
    upstream = harness.ApiServer(os.path.join(workdir, "apiserver")).start()
    home = os.path.join(workdir, "kscribe", "home")
    storage = os.path.join(home, "sessions")
    audit = os.path.join(home, "audit", "audit.jsonl")
    ks = harness.Kscribe(os.path.join(workdir, "kscribe"), upstream, agent="scripted", extra_config={
        "sessions": {"api": {"idle_timeout": "2s", "max_body_size": "1MB", "storage": storage},
                     "sync_interval": "100ms"},
        "audit": {"path": audit}})
    try:
        ks.start()
        k = harness.Kubectl(ks.kubeconfig, os.path.join(workdir, "kc"))
        k.run("get", "pods", check=True)
        k.run("create", "configmap", "rec-cm", "--from-literal=k=v", check=True)
        k.run("create", "secret", "generic", "rec-s", "--from-literal=password=" + SECRET,
              check=True)
        k.run("get", "secret", "rec-s", "-o", "yaml", check=True)
        k.run("delete", "configmap", "rec-cm", check=True)
        time.sleep(4)  # idle_timeout 2s, closed within the writer's 1 s tick
        k.run("get", "pods", check=True)
        k.run("get", "secrets", check=True)
    finally:
        rc = ks.stop()
        upstream.stop()
    assert rc in (0, -15, None), ks.log()

    found = kscribe_schemas.validate_sessions(storage)
    manifests = sorted((m for m, _ in found.values()), key=lambda m: m["started"])
    assert [m["close_reason"] for m in manifests] == ["idle timeout", "shutdown"], manifests
    first, second = (found[m["session_id"]][1] for m in manifests)

    def tiers(lines, method, resource):
        return {l["tier"] for l in lines if l["method"] == method and l["resource"] == resource}
    assert tiers(first, "GET", "pods") == {0}
    assert tiers(first, "POST", "configmaps") == {2}
    assert tiers(first, "GET", "secrets") == {3}
    assert tiers(first, "DELETE", "configmaps") == {3}
    assert tiers(second, "GET", "secrets") == {3}
    assert 3 in manifests[0]["tiers_seen"] and manifests[0]["highest_tier"] >= 3
    for lines in (first, second):
        assert [l["seq"] for l in sorted(lines, key=lambda l: l["seq"])] == list(
            range(1, len(lines) + 1))

    audit_lines = kscribe_schemas.validate_audit(audit)
    hashes = {a["hash"] for a in audit_lines}
    assert all(l["audit_hash"] in hashes for l in first + second)
    rc, out = recorder_checks.audit_verify(ks.home.bin, audit)
    assert rc == 0, out
    recorder_checks.check_tampering(ks.home.bin, audit, workdir)
    recorder_checks.assert_nowhere(SECRET, storage, os.path.dirname(audit))
