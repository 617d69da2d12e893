"""The kubectl suite: each step runs the real kubectl against one endpoint (the test API server
direct, or kscribe in front of one), asserts that kubectl did what it should, and returns its
outputs normalised (harness.normalise) so two endpoints can be compared.

Steps depend on earlier ones (apply twice, then delete), so run them in order on a fresh server.
"""

import json
import os
import time

import yaml

from harness import normalise

DEPLOYMENT_V1 = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: demo
  labels: {app: demo}
spec:
  replicas: 2
  selector:
    matchLabels: {app: demo}
  template:
    metadata:
      labels: {app: demo}
    spec:
      containers:
      - name: app
        image: nginx:1.27
        env:
        - {name: MODE, value: one}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: applied
data:
  k: v1
"""
DEPLOYMENT_V2 = DEPLOYMENT_V1.replace("nginx:1.27", "nginx:1.28").replace(
    "replicas: 2", "replicas: 3").replace("k: v1", "k: v2\n  extra: x")


def out(r, table=False):
    """The parts of a kubectl run that must match across endpoints."""
    return {"rc": r.rc, "stdout": normalise(r.stdout, table), "stderr": normalise(r.stderr,
                                                                                   table)}


def get_table(k, ctx):
    r = k.run("get", "pods")
    assert r.rc == 0, r
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"], r
    assert any(l.split()[:3] == ["web-0", "1/1", "Running"] for l in lines[1:]), r
    wide = k.run("get", "pods", "-o", "wide")
    assert wide.rc == 0 and "IP" in wide.stdout.splitlines()[0], wide
    ns = k.run("get", "namespaces")
    assert ns.rc == 0 and "kube-system" in ns.stdout, ns
    allr = k.run("get", "all")
    assert allr.rc == 0 and "service/kubernetes" in allr.stdout, allr
    return {"pods": out(r, True), "wide": out(wide, True), "ns": out(ns, True),
            "all": out(allr, True)}


def get_json_yaml(k, ctx):
    j = k.run("get", "pod", "web-0", "-o", "json")
    assert j.rc == 0, j
    pod = json.loads(j.stdout)
    assert pod["kind"] == "Pod" and pod["metadata"]["name"] == "web-0", pod
    assert pod["status"]["phase"] == "Running"
    lj = k.run("get", "pods", "-o", "json")
    lst = json.loads(lj.stdout)
    assert lst["kind"] == "List" and len(lst["items"]) >= 2, lst
    y = k.run("get", "pod", "worker", "-o", "yaml")
    assert y.rc == 0 and yaml.safe_load(y.stdout)["metadata"]["name"] == "worker", y
    ly = k.run("get", "cm", "-A", "-o", "yaml")
    assert ly.rc == 0 and "kube-root-ca.crt" in ly.stdout, ly
    return {"json": out(j), "list_json": out(lj), "yaml": out(y), "list_yaml": out(ly)}


def create_configmap(k, ctx):
    r = k.run("create", "configmap", "cm1", "--from-literal=color=blue",
              "--from-literal=size=large")
    assert r.rc == 0 and r.stdout.strip() == "configmap/cm1 created", r
    g = k.run("get", "cm", "cm1", "-o", "json")
    assert json.loads(g.stdout)["data"] == {"color": "blue", "size": "large"}, g
    dup = k.run("create", "configmap", "cm1")
    assert dup.rc == 1 and 'configmaps "cm1" already exists' in dup.stderr, dup
    bad = k.run("create", "configmap", "Bad_Name")
    assert bad.rc == 1 and 'ConfigMap "Bad_Name" is invalid' in bad.stderr, bad
    missing = k.run("get", "cm", "does-not-exist")
    assert missing.rc == 1 and 'configmaps "does-not-exist" not found' in missing.stderr, missing
    return {"create": out(r), "get": out(g), "dup": out(dup), "bad": out(bad),
            "missing": out(missing)}


def create_secret(k, ctx):
    # An obviously fake value: the test only checks it round-trips.
    r = k.run("create", "secret", "generic", "s1", "--from-literal=password=not-a-real-secret")
    assert r.rc == 0 and r.stdout.strip() == "secret/s1 created", r
    g = k.run("get", "secret", "s1", "-o", "json")
    sec = json.loads(g.stdout)
    assert sec["type"] == "Opaque"
    assert sec["data"]["password"] == "bm90LWEtcmVhbC1zZWNyZXQ=", sec
    t = k.run("get", "secrets")
    assert t.rc == 0 and t.stdout.split()[:4] == ["NAME", "TYPE", "DATA", "AGE"], t
    return {"create": out(r), "get": out(g), "table": out(t, True)}


def apply_twice(k, ctx):
    path = os.path.join(ctx, "manifest.yaml")
    with open(path, "w") as f:
        f.write(DEPLOYMENT_V1)
    a1 = k.run("apply", "-f", path)
    assert a1.rc == 0, a1
    assert a1.stdout.splitlines() == ["deployment.apps/demo created", "configmap/applied created"]
    with open(path, "w") as f:
        f.write(DEPLOYMENT_V2)
    a2 = k.run("apply", "-f", path)
    assert a2.rc == 0, a2
    assert a2.stdout.splitlines() == ["deployment.apps/demo configured",
                                      "configmap/applied configured"], a2
    a3 = k.run("apply", "-f", path)
    assert a3.stdout.splitlines() == ["deployment.apps/demo unchanged",
                                      "configmap/applied unchanged"], a3
    d = k.run("get", "deployment", "demo", "-o", "json")
    dep = json.loads(d.stdout)
    assert dep["spec"]["replicas"] == 3
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.28"
    assert dep["metadata"]["generation"] == 2, dep["metadata"]
    assert "kubectl.kubernetes.io/last-applied-configuration" in dep["metadata"]["annotations"]
    c = k.run("get", "cm", "applied", "-o", "yaml")
    assert yaml.safe_load(c.stdout)["data"] == {"k": "v2", "extra": "x"}, c
    t = k.run("get", "deploy", "-o", "wide")
    assert t.stdout.split()[8:11] == ["demo", "3/3", "3"], t
    return {"a1": out(a1), "a2": out(a2), "a3": out(a3), "deploy": out(d), "cm": out(c),
            "table": out(t, True)}


def delete(k, ctx):
    r = k.run("delete", "configmap", "cm1")
    assert r.rc == 0 and r.stdout.strip() == 'configmap "cm1" deleted', r
    g = k.run("get", "cm", "cm1")
    assert g.rc == 1 and "NotFound" in g.stderr, g
    again = k.run("delete", "configmap", "cm1")
    assert again.rc == 1 and 'configmaps "cm1" not found' in again.stderr, again
    path = os.path.join(ctx, "manifest.yaml")
    df = k.run("delete", "-f", path)
    assert df.rc == 0, df
    assert df.stdout.splitlines() == ['deployment.apps "demo" deleted',
                                      'configmap "applied" deleted'], df
    return {"delete": out(r), "get": out(g), "again": out(again), "file": out(df)}


def large_list(k, ctx):
    """A list over 128 KiB: the server gzips it (kubectl accepts gzip) and sends it chunked."""
    items = [{"apiVersion": "v1", "kind": "ConfigMap",
              "metadata": {"name": "bulk-%02d" % i, "labels": {"bulk": "yes"}},
              "data": {"payload": ("%02d" % i) * 3000}} for i in range(40)]
    path = os.path.join(ctx, "bulk.json")
    with open(path, "w") as f:
        json.dump({"apiVersion": "v1", "kind": "List", "items": items}, f)
    c = k.run("create", "-f", path)
    assert c.rc == 0 and len(c.stdout.splitlines()) == 40, c
    g = k.run("get", "configmaps", "-l", "bulk=yes", "-o", "json")
    assert g.rc == 0, g
    got = json.loads(g.stdout)["items"]
    assert [i["data"]["payload"] for i in got] == [i["data"]["payload"] for i in items]
    t = k.run("get", "configmaps", "-l", "bulk=yes")
    assert len(t.stdout.splitlines()) == 41, t
    d = k.run("delete", "configmaps", "-l", "bulk=yes")
    assert d.rc == 0 and len(d.stdout.splitlines()) == 40, d
    return {"create": out(c), "get": out(g), "table": out(t, True), "delete": out(d)}


def watch(k, ctx):
    """`get -w`: events appear while the stream is open."""
    s = k.stream("get", "configmaps", "-w")
    try:
        first = s.wait_lines(2)  # header + kube-root-ca.crt
        assert first[0].split()[:3] == ["NAME", "DATA", "AGE"], first
        n0 = len(s.lines)
        t0 = time.monotonic()
        c = k.run("create", "configmap", "watched", "--from-literal=a=b")
        assert c.rc == 0, c
        lines = s.wait_lines(n0 + 1)
        assert lines[n0].split()[:2] == ["watched", "1"], lines
        assert s.proc.poll() is None, "the watch ended instead of staying open"
        arrived = s.lines[n0][0] - t0
        p = k.run("patch", "configmap", "watched", "-p", '{"data":{"c":"d"}}')
        assert p.rc == 0, p
        lines = s.wait_lines(n0 + 2)
        assert lines[n0 + 1].split()[:2] == ["watched", "2"], lines
        d = k.run("delete", "configmap", "watched")
        assert d.rc == 0, d
        s.wait_lines(n0 + 3)
    finally:
        s.stop()
    assert arrived < 10, arrived
    return {"watch": {"stdout": normalise(s.text(), True)}, "patch": out(p)}


def exec_(k, ctx):
    e = k.run("exec", "web-0", "--", "echo", "hi")
    assert e.rc == 0 and e.stdout == "hi\n", e
    i = k.run("exec", "-i", "web-0", "--", "cat", input="line one\nline two\n")
    assert i.rc == 0 and i.stdout == "line one\nline two\n", i
    big = ("x" * 1000 + "\n") * 200
    ib = k.run("exec", "-i", "worker", "--", "cat", input=big)
    assert ib.rc == 0 and ib.stdout == big, (ib.rc, len(ib.stdout), ib.stderr)
    x = k.run("exec", "web-0", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert x.rc == 3 and x.stdout == "out\n", x
    assert "err\n" in x.stderr and "command terminated with exit code 3" in x.stderr, x
    env = k.run("exec", "worker", "-c", "worker", "--", "env")
    assert env.rc == 0 and "HOSTNAME=worker" in env.stdout, env
    return {"echo": out(e), "stdin": out(i), "big": {"rc": ib.rc, "len": len(ib.stdout)},
            "exit": out(x), "env": out(env)}


def exec_spdy(k, ctx):
    """The same over SPDY/3.1, kubectl's fallback when WebSocket is refused."""
    spdy = {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false"}
    e = k.run("exec", "web-0", "--", "echo", "hi", env=spdy)
    assert e.rc == 0 and e.stdout == "hi\n", e
    i = k.run("exec", "-i", "web-0", "--", "cat", input="over spdy\n", env=spdy)
    assert i.rc == 0 and i.stdout == "over spdy\n", i
    big = ("z" * 999 + "\n") * 300
    ib = k.run("exec", "-i", "worker", "--", "cat", input=big, env=spdy)
    assert ib.rc == 0 and ib.stdout == big, (ib.rc, len(ib.stdout), ib.stderr)
    x = k.run("exec", "web-0", "--", "sh", "-c", "echo err >&2; exit 5", env=spdy)
    assert x.rc == 5 and "err\n" in x.stderr, x
    return {"echo": out(e), "stdin": out(i), "big": {"rc": ib.rc, "len": len(ib.stdout)},
            "exit": out(x)}


def logs(k, ctx):
    plain = k.run("logs", "web-0")
    assert plain.rc == 0 and plain.stdout.splitlines() == [
        "web-0 web line %d" % i for i in (1, 2, 3)], plain
    s = k.stream("logs", "-f", "web-0")
    try:
        rc = s.wait_exit(30)
    finally:
        s.stop()
    assert rc == 0, s.stderr
    lines = [l for _, l in s.lines]
    assert lines == ["web-0 web line %d" % i for i in range(1, 7)], lines
    # followed lines arrive one by one as the server sends them, not all at the end
    times = [t for t, _ in s.lines]
    assert times[-1] - times[3] > 0.4, times
    return {"plain": out(plain), "follow": {"stdout": s.text()}}


STEPS = [("get_table", get_table), ("get_json_yaml", get_json_yaml),
         ("create_configmap", create_configmap), ("create_secret", create_secret),
         ("apply_twice", apply_twice), ("delete", delete), ("large_list", large_list), ("watch", watch), ("exec", exec_),
         ("exec_spdy", exec_spdy), ("logs", logs)]
