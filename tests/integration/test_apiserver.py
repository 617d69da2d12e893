"""The test API server, direct: the real kubectl 1.32 against tests/apiserver/server.py, and the
protobuf decoder against the real Kubernetes fixtures in /work/shared/k8s-testdata (or
$KSCRIBE_K8S_TESTDATA)."""

import base64
import glob
import json
import os
import socket
import ssl
import sys

import pytest

import harness
import kubectl_suite

sys.path.insert(0, os.path.join(harness.SOURCE_DIR, "tests", "apiserver"))
import k8spb  # noqa: E402

TESTDATA = os.environ.get("KSCRIBE_K8S_TESTDATA", "/work/shared/k8s-testdata")


@pytest.fixture(scope="module")
def ctx(workdir):
    d = os.path.join(workdir, "suite")
    os.makedirs(d, exist_ok=True)
    return d


# The steps build on each other (create, apply twice, delete), in this order.
@pytest.mark.parametrize("name,step", kubectl_suite.STEPS, ids=[s[0] for s in kubectl_suite.STEPS])
def test_kubectl_direct(name, step, kubectl_direct, ctx, apiserver):
    try:
        step(kubectl_direct, ctx)
    except BaseException:
        harness.dump_logs(apiserver)
        raise


def raw_request(srv, method, path, headers=None, body=b"", cert=True):
    """One HTTP/1.1 request over TLS; returns (status, headers dict, body bytes)."""
    ctx = ssl.create_default_context(cafile=srv.ca_file)
    if cert:
        ctx.load_cert_chain(os.path.join(srv.cert_dir, "client.crt"),
                            os.path.join(srv.cert_dir, "client.key"))
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            hdrs = {"Host": "localhost", "Connection": "close", "Content-Length": str(len(body))}
            hdrs.update(headers or {})
            s.sendall(("%s %s HTTP/1.1\r\n" % (method, path)).encode() +
                      "".join("%s: %s\r\n" % kv for kv in hdrs.items()).encode() + b"\r\n" + body)
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    h = {}
    for l in lines[1:]:
        k, _, v = l.partition(":")
        h[k.strip().lower()] = v.strip()
    if h.get("transfer-encoding") == "chunked":
        out = b""
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            n = int(size_line, 16)
            if n == 0:
                break
            out, rest = out + rest[:n], rest[n + 2:]
        rest = out
    return status, h, rest


def test_unauthenticated_is_401_status(apiserver):
    code, h, body = raw_request(apiserver, "GET", "/api/v1/namespaces", cert=False)
    assert code == 401
    assert json.loads(body) == {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                "status": "Failure", "message": "Unauthorized",
                                "reason": "Unauthorized", "code": 401}


def test_bearer_token(apiserver):
    with open(os.path.join(apiserver.cert_dir, "token")) as f:
        tok = f.read().strip()
    code, _, body = raw_request(apiserver, "GET", "/version", {"Authorization": "Bearer " + tok},
                                cert=False)
    assert code == 200 and json.loads(body)["minor"] == "32"
    code, _, _ = raw_request(apiserver, "GET", "/version", {"Authorization": "Bearer nope"},
                             cert=False)
    assert code == 401


def test_aggregated_discovery_and_etag(apiserver):
    accept = ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
              "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,"
              "application/json")
    code, h, body = raw_request(apiserver, "GET", "/apis", {"Accept": accept})
    assert code == 200
    assert h["content-type"] == \
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    doc = json.loads(body)
    assert doc["kind"] == "APIGroupDiscoveryList"
    apps = doc["items"][0]
    assert apps["metadata"]["name"] == "apps"
    dep = next(r for r in apps["versions"][0]["resources"] if r["resource"] == "deployments")
    assert dep["responseKind"] == {"group": "apps", "version": "v1", "kind": "Deployment"}
    code, _, body = raw_request(apiserver, "GET", "/apis", {"Accept": accept,
                                                            "If-None-Match": h["etag"]})
    assert code == 304 and body == b""
    code, h, body = raw_request(apiserver, "GET", "/api", {
        "Accept": "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"})
    assert json.loads(body)["apiVersion"] == "apidiscovery.k8s.io/v2beta1"
    code, h, body = raw_request(apiserver, "GET", "/api")
    assert json.loads(body)["kind"] == "APIVersions"


def test_status_bodies(apiserver):
    code, _, body = raw_request(apiserver, "GET", "/api/v1/namespaces/default/configmaps/nope")
    assert code == 404
    assert json.loads(body) == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'configmaps "nope" not found', "reason": "NotFound",
        "details": {"name": "nope", "kind": "configmaps"}, "code": 404}
    code, _, body = raw_request(apiserver, "GET", "/apis/apps/v1/namespaces/default/deployments/x")
    assert json.loads(body)["details"] == {"name": "x", "group": "apps", "kind": "deployments"}
    assert json.loads(body)["message"] == 'deployments.apps "x" not found'


def test_protobuf_create_body(apiserver):
    """kubectl create sends protobuf and prefers it back: the real ConfigMap fixture, renamed
    into a namespace that exists, is created from protobuf and answered in protobuf."""
    with open(os.path.join(TESTDATA, "core.v1.ConfigMap.pb"), "rb") as f:
        obj = k8spb.decode(f.read())
    pbh = {"Content-Type": "application/vnd.kubernetes.protobuf",
           "Accept": "application/vnd.kubernetes.protobuf,application/json"}
    obj["metadata"]["namespace"] = "default"
    code, h, body = raw_request(apiserver, "POST", "/api/v1/namespaces/default/configmaps", pbh,
                                k8spb.encode(obj))
    assert code == 422, body  # "nameValue" is not a valid name, as the real server says
    st = k8spb.decode(body)
    assert st["kind"] == "Status" and st["reason"] == "Invalid" and st["code"] == 422
    assert h["content-type"] == "application/vnd.kubernetes.protobuf"
    obj["metadata"].update(name="from-protobuf", namespace="default")
    code, h, body = raw_request(apiserver, "POST", "/api/v1/namespaces/default/configmaps", pbh,
                                k8spb.encode(obj))
    assert code == 201 and h["content-type"] == "application/vnd.kubernetes.protobuf"
    created = k8spb.decode(body)
    assert created["data"] == {"dataKey": "dataValue"}
    assert created["binaryData"] == {"binaryDataKey": "Aw=="}
    assert created["metadata"]["labels"] == {"labelsKey": "labelsValue"}
    assert created["metadata"]["uid"] != "uidValue"  # the server assigns uid and version
    code, h, body = raw_request(apiserver, "GET",
                                "/api/v1/namespaces/default/configmaps/from-protobuf")
    assert code == 200 and h["content-type"] == "application/json"
    assert json.loads(body)["binaryData"] == {"binaryDataKey": "Aw=="}
    code, _, body = raw_request(apiserver, "POST", "/api/v1/namespaces/default/configmaps",
                                {"Content-Type": "application/vnd.kubernetes.protobuf"},
                                b"k8s\0xx")
    assert code == 400 and json.loads(body)["reason"] == "BadRequest"
    code, _, _ = raw_request(apiserver, "DELETE",
                             "/api/v1/namespaces/default/configmaps/from-protobuf")
    assert code == 200


def test_gzip_large_list(apiserver, kubectl_direct):
    for i in range(40):
        kubectl_direct.run("create", "configmap", "big-%d" % i,
                           "--from-literal=v=" + "y" * 5000, check=True)
    code, h, body = raw_request(apiserver, "GET", "/api/v1/configmaps",
                                {"Accept-Encoding": "gzip"})
    assert code == 200 and h.get("content-encoding") == "gzip"
    assert h.get("transfer-encoding") == "chunked"
    import gzip
    assert len(json.loads(gzip.decompress(body))["items"]) >= 40
    code, h, body = raw_request(apiserver, "GET", "/api/v1/configmaps")
    assert "content-encoding" not in h and len(body) > 128 * 1024
    r = kubectl_direct.run("delete", "configmap", "-l", "nothing=here")
    assert r.rc == 0, r


def test_table_watch_bookmarks_timeout(apiserver):
    code, h, body = raw_request(
        apiserver, "GET", "/api/v1/namespaces/default/pods?watch=true&timeoutSeconds=1"
        "&allowWatchBookmarks=true", {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
    assert code == 200
    events = [json.loads(l) for l in body.decode().splitlines()]
    assert [e["type"] for e in events] == ["ADDED", "ADDED"]
    assert events[0]["object"]["kind"] == "Table"
    assert events[0]["object"]["rows"][0]["object"]["kind"] == "PartialObjectMetadata"


# -- protobuf decoder against the Kubernetes project's own fixtures ---------------------------

def _subset(a, b, path=""):
    if isinstance(a, dict):
        assert isinstance(b, dict), path
        for k in a:
            assert k in b, "decoded %s/%s is not in the JSON fixture" % (path, k)
            _subset(a[k], b[k], path + "/" + k)
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _subset(x, y, "%s/%d" % (path, i))
    else:
        assert a == b, (path, a, b)


FULL = {"core.v1.ConfigMap": [], "core.v1.Secret": [], "core.v1.ServiceAccount": [],
        "core.v1.Namespace": [], "authentication.k8s.io.v1.TokenReview": [],
        # fields newer than the schemas here (not sent by kubectl 1.32)
        "authentication.k8s.io.v1.TokenRequest": ["spec.attestations"]}
PB_FILES = sorted(glob.glob(os.path.join(TESTDATA, "*.pb")))


@pytest.mark.skipif(not PB_FILES, reason="no k8s protobuf fixtures at " + TESTDATA)
@pytest.mark.parametrize("path", PB_FILES, ids=[os.path.basename(p)[:-3] for p in PB_FILES])
def test_protobuf_decoder(path):
    with open(path, "rb") as f:
        decoded = k8spb.decode(f.read())
    with open(path[:-3] + ".json") as f:
        want = json.load(f)
    name = os.path.basename(path)[:-3]
    _subset(decoded, want)
    assert decoded["metadata"] == want["metadata"]
    if name in FULL:
        for dotted in FULL[name]:
            cur = want
            parts = dotted.split(".")
            for p in parts[:-1]:
                cur = cur[p]
            cur.pop(parts[-1])
        assert decoded == want
    else:  # Pod and Deployment: the fields the server uses
        spec = decoded["spec"] if "containers" in decoded["spec"] else \
            decoded["spec"]["template"]["spec"]
        assert spec["containers"][0]["name"] == "nameValue"
        assert spec["containers"][0]["image"] == "imageValue"
        assert spec["containers"][0]["env"][0] == {"name": "nameValue", "value": "valueValue"}


@pytest.mark.parametrize("name", ["core.v1.ConfigMap", "core.v1.Secret", "core.v1.Namespace",
                                  "core.v1.ServiceAccount"])
def test_protobuf_encoder_round_trip(name):
    """Encoding what was decoded gives back the real server's bytes exactly."""
    with open(os.path.join(TESTDATA, name + ".pb"), "rb") as f:
        raw = f.read()
    assert k8spb.encode(k8spb.decode(raw)) == raw


def test_protobuf_secret_bytes():
    with open(os.path.join(TESTDATA, "core.v1.Secret.pb"), "rb") as f:
        s = k8spb.decode(f.read())
    assert s["kind"] == "Secret" and s["apiVersion"] == "v1"
    for v in s["data"].values():
        base64.b64decode(v, validate=True)


@pytest.mark.parametrize("bad", [b"", b"k8s", b"k8s\0\x0a", b"k8s\0\x0a\x05\x0a\x02v1",
                                 b"not protobuf", b"k8s\0\x0f"])
def test_protobuf_decoder_rejects_garbage(bad):
    with pytest.raises(k8spb.DecodeError):
        k8spb.decode(bad)


def _post_cm(srv, name, labels=None):
    body = json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": name, "labels": labels or {}},
                       "data": {"k": name}}).encode()
    code, _, resp = raw_request(srv, "POST", "/api/v1/namespaces/default/configmaps",
                                {"Content-Type": "application/json"}, body)
    assert code == 201, resp
    return json.loads(resp)


def test_watch_from_resource_version(apiserver):
    """A watch from a resourceVersion replays only later changes, not the existing objects."""
    first = _post_cm(apiserver, "rv-a", {"w": "rv"})
    rv = first["metadata"]["resourceVersion"]
    _post_cm(apiserver, "rv-b", {"w": "rv"})
    code, _, body = raw_request(apiserver, "DELETE",
                                "/api/v1/namespaces/default/configmaps/rv-a")
    assert code == 200 and json.loads(body)["status"] == "Success"
    code, h, body = raw_request(apiserver, "GET", "/api/v1/namespaces/default/configmaps?watch=1"
                                "&labelSelector=w%3Drv&timeoutSeconds=1&resourceVersion=" + rv)
    assert code == 200 and h["transfer-encoding"] == "chunked"
    events = [(e["type"], e["object"]["metadata"]["name"])
              for e in map(json.loads, body.decode().splitlines())]
    assert events == [("ADDED", "rv-b"), ("DELETED", "rv-a")]
    code, _, body = raw_request(apiserver, "GET", "/api/v1/namespaces/default/configmaps?watch=1"
                                "&labelSelector=w%3Drv&timeoutSeconds=1")
    assert [json.loads(l)["type"] for l in body.decode().splitlines()] == ["ADDED"]


def test_delete_collection_and_selectors(apiserver):
    for i in range(3):
        _post_cm(apiserver, "dc-%d" % i, {"group": "dc", "n": str(i)})
    code, _, body = raw_request(apiserver, "GET", "/api/v1/namespaces/default/configmaps"
                                "?labelSelector=group%3Ddc,n%20in%20(0,2)")
    assert [i["metadata"]["name"] for i in json.loads(body)["items"]] == ["dc-0", "dc-2"]
    code, _, body = raw_request(apiserver, "GET", "/api/v1/namespaces/default/configmaps"
                                "?labelSelector=group%3Ddc&limit=2")
    page = json.loads(body)
    assert len(page["items"]) == 2 and page["metadata"]["remainingItemCount"] == 1
    code, _, body = raw_request(apiserver, "GET", "/api/v1/namespaces/default/configmaps"
                                "?labelSelector=group%3Ddc&limit=2&continue="
                                + page["metadata"]["continue"])
    assert [i["metadata"]["name"] for i in json.loads(body)["items"]] == ["dc-2"]
    code, _, body = raw_request(apiserver, "DELETE", "/api/v1/namespaces/default/configmaps"
                                "?labelSelector=group%3Ddc")
    assert code == 200
    gone = json.loads(body)
    assert gone["kind"] == "ConfigMapList" and len(gone["items"]) == 3
    code, _, body = raw_request(apiserver, "GET", "/api/v1/namespaces/default/configmaps"
                                "?fieldSelector=metadata.name%3Ddc-1")
    assert json.loads(body)["items"] == []
