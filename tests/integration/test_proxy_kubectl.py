"""kubectl through kscribe gives the same results as kubectl direct.

Two fresh test API servers with the same seed: one is used directly, the other through
`kscribe serve` (attribution off). Each step of kubectl_suite runs against both, in order, and
its outputs must be equal after harness.normalise, which replaces only what legitimately
differs between two servers and two moments: table ages and RFC 3339 timestamps (wall clock),
uids (random per object) and the server URL (the proxy has its own port). Resource versions,
names, data, exit codes and error messages are compared as they are.
"""

import os
import sys
import time

import pytest

import harness
import kubectl_suite


def _missing():
    import re
    import subprocess
    b = harness.kscribe_bin()
    if not b:
        return "the kscribe binary is not built"
    helptext = subprocess.run([b, "--help"], capture_output=True, text=True).stdout
    subcommands = set(re.findall(r"^  (\w+)\s", helptext.split("Subcommands:")[-1], re.M))
    missing = ["`kscribe %s`" % c for c in ("init", "agent", "serve") if c not in subcommands]
    # `kscribe serve` exists from the start; the proxy behind it arrives with proxy/server.cc.
    if not os.path.exists(os.path.join(harness.SOURCE_DIR, "proxy", "server.cc")):
        missing.append("the proxy (proxy/server.cc)")
    return ", ".join(missing) or None


MISSING = _missing()
pytestmark = pytest.mark.skipif(MISSING is not None, reason="needs kscribe init, agent add and "
                                "serve (the proxy) on main: %s" % MISSING)


@pytest.fixture(scope="module")
def envs(workdir):
    direct = harness.ApiServer(os.path.join(workdir, "apiserver-direct"))
    upstream = harness.ApiServer(os.path.join(workdir, "apiserver-proxied"))
    proxy = harness.Kscribe(os.path.join(workdir, "kscribe"), upstream)
    try:
        direct.start()
        upstream.start()
        proxy.start()
        yield {
            "direct": harness.Kubectl(direct.kubeconfig, os.path.join(workdir, "kc-direct")),
            "proxied": harness.Kubectl(proxy.kubeconfig, os.path.join(workdir, "kc-proxied")),
            "servers": (direct, upstream, proxy),
        }
    finally:
        rc = proxy.stop()
        upstream.stop()
        direct.stop()
        if rc not in (0, None):
            sys.stderr.write("kscribe serve exited with %s on SIGTERM\n" % rc)
            harness.dump_logs(proxy)
        assert rc in (0, None), "kscribe serve did not exit cleanly on SIGTERM: %s" % rc


@pytest.mark.parametrize("name,step", kubectl_suite.STEPS, ids=[s[0] for s in kubectl_suite.STEPS])
def test_same_through_kscribe(name, step, envs, workdir):
    results = {}
    for which in ("direct", "proxied"):
        ctx = os.path.join(workdir, "suite-" + which)
        os.makedirs(ctx, exist_ok=True)
        try:
            results[which] = step(envs[which], ctx)
        except BaseException:
            harness.dump_logs(*envs["servers"])
            raise
    d, p = results["direct"], results["proxied"]
    for key in d:
        assert p[key] == d[key], "%s/%s differs through kscribe" % (name, key)


def test_token_context_and_bad_credentials(envs, workdir):
    """The agent's kubeconfig also has a bearer-token context; both authenticate to kscribe.
    A wrong token is refused by kscribe itself, as the API server would refuse it."""
    proxied = envs["proxied"]
    agent = envs["servers"][2].agent
    direct = envs["direct"].run("get", "pods")
    tok = proxied.run("--context", agent + "-token", "get", "pods")
    assert tok.rc == 0, tok
    assert harness.normalise(tok.stdout, True) == harness.normalise(direct.stdout, True)
    bad = proxied.run("--context", agent + "-token", "--token", "not-the-token", "get", "pods")
    assert bad.rc == 1
    # kubectl's wording for a 401; the Status message itself is kscribe's own
    assert "You must be logged in to the server" in bad.stderr, bad


def test_abandoned_watch_is_released(workdir):
    """A watch whose client has gone must not hold kscribe (or the API server) open."""
    upstream = harness.ApiServer(os.path.join(workdir, "apiserver-abandon"))
    proxy = harness.Kscribe(os.path.join(workdir, "kscribe-abandon"), upstream)
    try:
        upstream.start()
        proxy.start()
        k = harness.Kubectl(proxy.kubeconfig, os.path.join(workdir, "kc-abandon"))
        s = k.stream("get", "configmaps", "-w")
        try:
            s.wait_lines(2)
        finally:
            s.stop()
        time.sleep(1)
        t0 = time.monotonic()
        rc = proxy.stop()
        took = time.monotonic() - t0
    finally:
        proxy.stop()
        upstream.stop()
    assert rc == 0
    assert took < 5, "kscribe took %.1fs to stop with only an abandoned watch open" % took
