#!/usr/bin/python3
"""kscribe TEST/DEMO Kubernetes API server. NOT a real Kubernetes API server.

It exists so kscribe's integration tests and `kscribe demo` have an upstream that kubectl 1.32
talks to as it would to a real cluster. It keeps objects in memory, runs no containers and no
controllers beyond a few status fields it fills in itself. Never point anything real at it.

Faithful to the real kube-apiserver (v1.32) in the shapes kubectl sees:
  /version; /api, /apis (legacy and aggregated discovery v2 and v2beta1, with ETag/304);
  /api/v1 and /apis/apps/v1 resource lists; /openapi/v3 and per-group-version documents whose
  PATCH operations declare `fieldValidation` (so kubectl validates server-side);
  objects with uid, resourceVersion (one global counter), creationTimestamp, generation
  (Deployments only, as in 1.32), managedFields; GET / LIST (labelSelector, fieldSelector,
  limit/continue) / CREATE / UPDATE / PATCH (json-patch, merge-patch, strategic-merge-patch,
  apply-patch+yaml) / DELETE / DELETECOLLECTION; Table and PartialObjectMetadata(List)
  responses on request; watch streams (chunked, one JSON event per line, resourceVersion,
  timeoutSeconds, allowWatchBookmarks); Status error bodies (401, 404, 409, 422, ...);
  protobuf request bodies (k8spb.py); gzip for responses over 128 KiB when the client accepts
  it; bodies over 2 KiB sent chunked as Go's net/http does; exec/attach over WebSocket
  (v5.channel.k8s.io and v4.channel.k8s.io); pod logs with follow.

Where it simplifies (on purpose):
  - Exec runs nothing: it emulates echo, cat, env, date (a fixed date), hostname, true, false,
    sleep and `sh -c` with `;`-separated statements of those plus `exit N`, so tests are
    deterministic. Exec/attach speak WebSocket (v5/v4.channel.k8s.io) and SPDY/3.1 (remotecommand
    v4 only; no flow control, as spdystream has none). Port-forward is not implemented.
  - Pod logs are synthetic: "<pod> line N"; `follow` streams a few more lines, then ends as if
    the container exited.
  - No admission, no RBAC (any authenticated client may do anything), no finalizer processing:
    deletes are immediate (a namespace delete removes its contents at once).
  - Strategic merge patch knows the merge keys of the fields kubectl's patches touch
    (containers, env, ports, volumes, volumeMounts, conditions, ...). Server-side apply merges
    the applied configuration into the live object and records a managedFields entry; it does
    not compute field ownership, so it never reports conflicts nor removes fields a manager
    stopped applying.
  - fieldValidation=Strict is accepted but unknown fields are not rejected.
  - The OpenAPI v3 documents carry paths and operations but no component schemas, so kubectl's
    client-side apply computes its strategic merge patch from its compiled-in types (the same
    result for built-in kinds). /openapi/v2 is a valid but empty document (no definitions), so
    kubectl's client-side validation of a `kind: List` file checks nothing.
  - Responses are protobuf when the client prefers it (kubectl create does) for ConfigMap,
    Secret, Namespace, ServiceAccount and Status, whose schemas k8spb.py covers completely;
    everything else is JSON (or Table/PartialObjectMetadata). A client that accepts only
    protobuf for another kind gets 406 NotAcceptable.
  - Watch history is kept for the life of the process (never 410 Gone unless rv is in the future).

Usage: server.py --port 0 --port-file FILE --cert-dir DIR [--kubeconfig-out FILE]
"""

import argparse
import base64
import copy
import datetime
import gzip
import hashlib
import http.server
import json
import os
import re
import select
import shlex
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import k8spb  # noqa: E402
import spdy  # noqa: E402

try:
    import yaml  # python3-yaml (Debian); only for apply-patch+yaml bodies
except ImportError:  # pragma: no cover
    yaml = None

VERSION = {
    "major": "1",
    "minor": "32",
    "emulationMajor": "1",
    "emulationMinor": "32",
    "minCompatibilityMajor": "1",
    "minCompatibilityMinor": "31",
    "gitVersion": "v1.32.4",
    "gitCommit": "59526cd4867447956156ae3a602fcbac5b5ab8e1",
    "gitTreeState": "clean",
    "buildDate": "2025-04-22T16:03:10Z",
    "goVersion": "go1.23.8",
    "compiler": "gc",
    "platform": "linux/amd64",
}
# kube-apiserver compresses responses larger than this when the client accepts gzip.
GZIP_THRESHOLD = 128 * 1024
# Go's net/http buffers this much before it switches a response to chunked encoding.
CHUNKING_THRESHOLD = 2048
OPENAPI_V2_PB = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
OPENAPI_V2_PB_OLD = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
DEFAULT_WATCH_TIMEOUT = 1800  # the real server picks 30-60 min (min-request-timeout)
BOOKMARK_INTERVAL = 5.0  # the real server sends bookmarks about once a minute
LOG = sys.stderr


def log(msg):
    LOG.write("apiserver: %s\n" % msg)
    LOG.flush()


def now_ts():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_ts(s):
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc)


def human_duration(seconds):
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return "%ds" % s
    minutes = s // 60
    if minutes < 10:
        return "%dm" % minutes if s % 60 == 0 else "%dm%ds" % (minutes, s % 60)
    if minutes < 180:
        return "%dm" % minutes
    hours = s // 3600
    if hours < 8:
        return "%dh" % hours if minutes % 60 == 0 else "%dh%dm" % (hours, minutes % 60)
    if hours < 48:
        return "%dh" % hours
    if hours < 24 * 8:
        return "%dd" % (hours // 24) if hours % 24 == 0 else "%dd%dh" % (hours // 24, hours % 24)
    if hours < 24 * 365 * 2:
        return "%dd" % (hours // 24)
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return "%dy" % (hours // 24 // 365) if dy == 0 else "%dy%dd" % (hours // 24 // 365, dy)
    return "%dy" % (hours // 24 // 365)


def age(obj):
    ts = obj.get("metadata", {}).get("creationTimestamp")
    if not ts:
        return "<unknown>"
    return human_duration((datetime.datetime.now(datetime.timezone.utc) - parse_ts(ts))
                          .total_seconds())


# ---------------------------------------------------------------------------------------------
# Resources

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


class Resource:
    def __init__(self, group, version, kind, plural, singular, namespaced, short=(),
                 categories=(), subresources=(), verbs=VERBS, list_kind=None):
        self.group, self.version, self.kind = group, version, kind
        self.plural, self.singular, self.namespaced = plural, singular, namespaced
        self.short, self.categories = list(short), list(categories)
        self.subresources = list(subresources)  # (name, kind, verbs, group, version)
        self.verbs = list(verbs)
        self.list_kind = list_kind or kind + "List"

    @property
    def api_version(self):
        return self.version if not self.group else "%s/%s" % (self.group, self.version)

    @property
    def gr(self):
        return self.plural if not self.group else "%s.%s" % (self.plural, self.group)


RESOURCES = [
    Resource("", "v1", "Namespace", "namespaces", "namespace", False, ["ns"],
             subresources=[("finalize", "Namespace", ["update"]),
                           ("status", "Namespace", ["get", "patch", "update"])],
             verbs=["create", "delete", "get", "list", "patch", "update", "watch"]),
    Resource("", "v1", "Pod", "pods", "pod", True, ["po"], ["all"],
             subresources=[("attach", "PodAttachOptions", ["create", "get"]),
                           ("exec", "PodExecOptions", ["create", "get"]),
                           ("log", "Pod", ["get"]),
                           ("portforward", "PodPortForwardOptions", ["create", "get"]),
                           ("status", "Pod", ["get", "patch", "update"])]),
    Resource("", "v1", "ConfigMap", "configmaps", "configmap", True, ["cm"]),
    Resource("", "v1", "Secret", "secrets", "secret", True),
    Resource("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", True, ["sa"],
             subresources=[("token", "TokenRequest", ["create"], "authentication.k8s.io",
                            "v1")]),
    Resource("", "v1", "Service", "services", "service", True, ["svc"], ["all"],
             subresources=[("status", "Service", ["get", "patch", "update"])]),
    Resource("", "v1", "Event", "events", "event", True, ["ev"]),
    Resource("apps", "v1", "Deployment", "deployments", "deployment", True, ["deploy"], ["all"],
             subresources=[("scale", "Scale", ["get", "patch", "update"], "autoscaling", "v1"),
                           ("status", "Deployment", ["get", "patch", "update"])]),
]
BY_GV = {}
for _r in RESOURCES:
    BY_GV.setdefault((_r.group, _r.version), {})[_r.plural] = _r
GROUPS = [("", "v1"), ("apps", "v1")]


# ---------------------------------------------------------------------------------------------
# Errors as metav1.Status

class ApiError(Exception):
    def __init__(self, code, reason, message, details=None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self):
        st = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
              "message": self.message, "reason": self.reason}
        if self.details is not None:
            st["details"] = self.details
        st["code"] = self.code
        return st


def not_found(res, name):
    return ApiError(404, "NotFound", '%s "%s" not found' % (res.gr, name),
                    {"name": name, "group": res.group, "kind": res.plural} if res.group else
                    {"name": name, "kind": res.plural})


def _details(res, name, extra=None):
    d = {"name": name}
    if res.group:
        d["group"] = res.group
    d["kind"] = res.plural
    if extra:
        d.update(extra)
    return d


def already_exists(res, name):
    return ApiError(409, "AlreadyExists", '%s "%s" already exists' % (res.gr, name),
                    _details(res, name))


def conflict(res, name):
    return ApiError(409, "Conflict",
                    'Operation cannot be fulfilled on %s "%s": the object has been modified; '
                    "please apply your changes to the latest version and try again"
                    % (res.gr, name), _details(res, name))


def invalid(res, name, causes):
    """causes: [(field, message-without-field)]; shaped as field.ErrorList.ToAggregate()."""
    msgs = ["%s: %s" % (f, m) for f, m in causes]
    msg = "%s \"%s\" is invalid: " % (res.kind, name)
    msg += msgs[0] if len(msgs) == 1 else "[" + ", ".join(msgs) + "]"
    d = {"name": name}
    if res.group:
        d["group"] = res.group
    d["kind"] = res.kind
    d["causes"] = [{"reason": "FieldValueRequired" if m.startswith("Required") else
                    "FieldValueInvalid", "message": m, "field": f} for f, m in causes]
    return ApiError(422, "Invalid", msg, d)


def bad_request(msg):
    return ApiError(400, "BadRequest", msg)


DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                 "characters, '-' or '.', and must start and end with an alphanumeric character "
                 "(e.g. 'example.com', regex used for validation is "
                 "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or "
             "'-', and must start and end with an alphanumeric character (e.g. 'my-name',  or "
             "'123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
CONFIGMAP_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


def validate(res, obj):
    meta = obj.get("metadata") or {}
    name = meta.get("name", "")
    causes = []
    if res.kind in ("Namespace", "Service"):
        if len(name) > 63 or not DNS1123_LABEL.match(name):
            causes.append(("metadata.name", 'Invalid value: "%s": %s' % (name, LABEL_MSG)))
    elif len(name) > 253 or not DNS1123_SUBDOMAIN.match(name):
        causes.append(("metadata.name", 'Invalid value: "%s": %s' % (name, SUBDOMAIN_MSG)))
    if res.kind in ("ConfigMap", "Secret"):
        for field in ("data", "binaryData") if res.kind == "ConfigMap" else ("data",):
            for k in (obj.get(field) or {}):
                if not CONFIGMAP_KEY.match(k):
                    causes.append(("%s[%s]" % (field, k), 'Invalid value: "%s": a valid config '
                                   "key must consist of alphanumeric characters, '-', '_' or "
                                   "'.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex "
                                   "used for validation is '[-._a-zA-Z0-9]+')" % k))
    if res.kind == "Pod":
        containers = (obj.get("spec") or {}).get("containers") or []
        if not containers:
            causes.append(("spec.containers", "Required value"))
        for i, c in enumerate(containers):
            if not c.get("image"):
                causes.append(("spec.containers[%d].image" % i, "Required value"))
    if res.kind == "Deployment":
        spec = obj.get("spec") or {}
        if not (spec.get("selector") or {}).get("matchLabels") and not (
                spec.get("selector") or {}).get("matchExpressions"):
            causes.append(("spec.selector", "Required value"))
        if not ((spec.get("template") or {}).get("spec") or {}).get("containers"):
            causes.append(("spec.template.spec.containers", "Required value"))
    if causes:
        raise invalid(res, name, causes)


# ---------------------------------------------------------------------------------------------
# Defaults and status a real cluster's defaulting and controllers would fill in

def default_pod_spec(spec):
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for c in spec.get("containers", []) + spec.get("initContainers", []):
        img = c.get("image", "")
        tag = img.rsplit("/", 1)[-1]
        c.setdefault("resources", {})
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("terminationMessagePolicy", "File")
        c.setdefault("imagePullPolicy",
                     "Always" if (":" not in tag or tag.endswith(":latest")) and "@" not in tag
                     else "IfNotPresent")
        for p in c.get("ports", []):
            p.setdefault("protocol", "TCP")


def apply_defaults(res, obj, name):
    meta = obj["metadata"]
    if res.kind == "Namespace":
        meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = name
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj["status"] = {"phase": "Active"}
    elif res.kind == "Secret":
        obj.setdefault("type", "Opaque")
        sd = obj.pop("stringData", None)
        if sd:
            data = obj.setdefault("data", {})
            for k, v in sd.items():
                data[k] = base64.b64encode(v.encode()).decode()
    elif res.kind == "Pod":
        spec = obj.setdefault("spec", {})
        default_pod_spec(spec)
        spec.setdefault("serviceAccountName", "default")
        spec.setdefault("serviceAccount", spec["serviceAccountName"])
        spec.setdefault("nodeName", "kscribe-demo-node")
        spec.setdefault("enableServiceLinks", True)
        spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
        spec.setdefault("priority", 0)
        spec.setdefault("tolerations", [
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
             "tolerationSeconds": 300},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
             "effect": "NoExecute", "tolerationSeconds": 300}])
        start = meta.get("creationTimestamp") or now_ts()
        ip = "10.244.0.%d" % (int(hashlib.sha256(name.encode()).hexdigest(), 16) % 250 + 2)
        obj["status"] = {
            "phase": "Running",
            "conditions": [{"type": t, "status": "True", "lastProbeTime": None,
                            "lastTransitionTime": start}
                           for t in ("PodReadyToStartContainers", "Initialized", "Ready",
                                     "ContainersReady", "PodScheduled")],
            "hostIP": "10.0.0.10", "hostIPs": [{"ip": "10.0.0.10"}],
            "podIP": ip, "podIPs": [{"ip": ip}], "startTime": start,
            "containerStatuses": [{
                "name": c["name"], "state": {"running": {"startedAt": start}},
                "lastState": {}, "ready": True, "restartCount": 0, "image": c.get("image", ""),
                "imageID": "", "containerID": "containerd://" + hashlib.sha256(
                    (name + c["name"]).encode()).hexdigest(), "started": True}
                for c in spec.get("containers", [])],
            "qosClass": "BestEffort"}
    elif res.kind == "Deployment":
        spec = obj.setdefault("spec", {})
        spec.setdefault("replicas", 1)
        spec.setdefault("strategy", {"type": "RollingUpdate",
                                     "rollingUpdate": {"maxUnavailable": "25%",
                                                       "maxSurge": "25%"}})
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        tmpl = spec.setdefault("template", {})
        tmpl.setdefault("metadata", {}).setdefault("creationTimestamp", None)
        default_pod_spec(tmpl.setdefault("spec", {}))
        meta.setdefault("annotations", {}).setdefault("deployment.kubernetes.io/revision", "1")
    elif res.kind == "Service":
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        ip = "10.96.%d.%d" % tuple(int(hashlib.sha256(name.encode()).hexdigest()[i:i + 2], 16)
                                   for i in (0, 2))
        spec.setdefault("clusterIP", ip)
        spec.setdefault("clusterIPs", [spec["clusterIP"]])
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
        for p in spec.get("ports", []):
            p.setdefault("protocol", "TCP")
            p.setdefault("targetPort", p.get("port"))
        obj.setdefault("status", {"loadBalancer": {}})


def deployment_status(obj):
    """What the deployment controller would report once all replicas are up."""
    n = obj["spec"].get("replicas", 1)
    now = now_ts()
    st = {"observedGeneration": obj["metadata"].get("generation", 1)}
    if n:
        st.update({"replicas": n, "updatedReplicas": n, "readyReplicas": n,
                   "availableReplicas": n})
    st["conditions"] = [
        {"type": "Available", "status": "True", "lastUpdateTime": now,
         "lastTransitionTime": now, "reason": "MinimumReplicasAvailable",
         "message": "Deployment has minimum availability."},
        {"type": "Progressing", "status": "True", "lastUpdateTime": now,
         "lastTransitionTime": now, "reason": "NewReplicaSetAvailable",
         "message": 'ReplicaSet "%s-%s" has successfully progressed.'
                    % (obj["metadata"]["name"], hashlib.sha256(
                        json.dumps(obj["spec"].get("template"), sort_keys=True).encode())
                    .hexdigest()[:10])}]
    obj["status"] = st


# ---------------------------------------------------------------------------------------------
# Selectors

def parse_label_selector(s):
    """Returns a predicate over a labels dict; raises ApiError on a malformed selector."""
    reqs = []
    s = (s or "").strip()
    if not s:
        return lambda labels: True
    parts, depth, cur = [], 0, ""
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    for p in parts:
        p = p.strip()
        m = re.match(r"^([\w./-]+)\s+(in|notin)\s+\((.*)\)$", p)
        if m:
            vals = {v.strip() for v in m.group(3).split(",")}
            reqs.append((m.group(1), m.group(2), vals))
            continue
        m = re.match(r"^([\w./-]+)\s*(==|=|!=)\s*([\w./-]*)$", p)
        if m:
            reqs.append((m.group(1), "!=" if m.group(2) == "!=" else "=", {m.group(3)}))
            continue
        m = re.match(r"^(!?)([\w./-]+)$", p)
        if m:
            reqs.append((m.group(2), "!" if m.group(1) else "exists", None))
            continue
        raise bad_request("unable to parse requirement: found '%s', expected: identifier" % p)

    def pred(labels):
        labels = labels or {}
        for key, op, vals in reqs:
            if op in ("=", "in") and labels.get(key) not in vals:
                return False
            if op in ("!=", "notin") and key in labels and labels[key] in vals:
                return False
            if op == "exists" and key not in labels:
                return False
            if op == "!" and key in labels:
                return False
        return True
    return pred


def parse_field_selector(s):
    reqs = []
    for p in (s or "").split(","):
        p = p.strip()
        if not p:
            continue
        m = re.match(r"^([\w.]+)\s*(==|=|!=)\s*(.*)$", p)
        if not m:
            raise bad_request('invalid selector: \'%s\'; can\'t understand \'%s\'' % (s, p))
        reqs.append((m.group(1), m.group(2) == "!=", m.group(3)))

    def get(obj, path):
        cur = obj
        for part in path.split("."):
            if not isinstance(cur, dict):
                return ""
            cur = cur.get(part)
        return "" if cur is None else str(cur)

    return lambda obj: all((get(obj, f) != v) if neg else (get(obj, f) == v)
                           for f, neg, v in reqs)


# ---------------------------------------------------------------------------------------------
# Patches

def json_merge_patch(target, patch):
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = json_merge_patch(result.get(k), v)
    return result


def _ptr(path):
    if path == "":
        return []
    if not path.startswith("/"):
        raise bad_request("invalid JSON pointer %r" % path)
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def json_patch(doc, ops):
    """RFC 6902."""
    doc = copy.deepcopy(doc)
    if not isinstance(ops, list):
        raise bad_request("json patch must be a list of operations")

    def parent(d, parts):
        for p in parts[:-1]:
            d = d[int(p)] if isinstance(d, list) else d[p]
        return d

    def get(d, parts):
        for p in parts:
            d = d[int(p)] if isinstance(d, list) else d[p]
        return d

    def add(d, parts, value):
        if not parts:
            return value
        par, last = parent(d, parts), parts[-1]
        if isinstance(par, list):
            par.insert(len(par) if last == "-" else int(last), value)
        else:
            par[last] = value
        return d

    def remove(d, parts):
        par, last = parent(d, parts), parts[-1]
        if isinstance(par, list):
            return par.pop(int(last))
        return par.pop(last)

    for op in ops:
        try:
            kind = op["op"]
            parts = _ptr(op.get("path", ""))
            if kind == "add":
                doc = add(doc, parts, copy.deepcopy(op["value"]))
            elif kind == "remove":
                remove(doc, parts)
            elif kind == "replace":
                get(doc, parts)  # must exist
                if not parts:
                    doc = copy.deepcopy(op["value"])
                else:
                    par = parent(doc, parts)
                    par[int(parts[-1]) if isinstance(par, list) else parts[-1]] = \
                        copy.deepcopy(op["value"])
            elif kind == "test":
                if get(doc, parts) != op["value"]:
                    raise bad_request("testing value %s failed" % op.get("path"))
            elif kind in ("move", "copy"):
                src = _ptr(op["from"])
                val = copy.deepcopy(get(doc, src))
                if kind == "move":
                    remove(doc, src)
                doc = add(doc, parts, val)
            else:
                raise bad_request("Unexpected kind: %s" % kind)
        except (KeyError, IndexError, ValueError, TypeError) as e:
            raise ApiError(422, "Invalid", "the server rejected our request due to an error in "
                           "our request: %s" % e) from None
    return doc


# patchMergeKey of the list fields kubectl's strategic merge patches touch (k8s.io/api types).
MERGE_KEYS = {"containers": "name", "initContainers": "name", "ephemeralContainers": "name",
              "env": "name", "volumes": "name", "volumeMounts": "mountPath",
              "imagePullSecrets": "name", "conditions": "type", "ownerReferences": "uid",
              "hostAliases": "ip", "secrets": "name", "topologySpreadConstraints": "topologyKey",
              "ports": None,  # containerPort in containers, port in services: see _merge_key
              "volumeDevices": "devicePath", "resourceClaims": "name"}
# Primitive lists with patchStrategy merge.
MERGE_PRIMITIVE = {"finalizers"}


def _merge_key(field, items):
    key = MERGE_KEYS.get(field)
    if field == "ports":
        for it in items:
            if isinstance(it, dict):
                return "containerPort" if "containerPort" in it else "port"
        return "port"
    return key


def strategic_merge(orig, patch):
    """Strategic merge patch for the fields in MERGE_KEYS, with the directives kubectl sends:
    $patch (replace, delete, merge), $retainKeys, $setElementOrder/, $deleteFromPrimitiveList/."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    result = copy.deepcopy(orig) if isinstance(orig, dict) else {}
    orders = {}
    for k, v in patch.items():
        if k in ("$patch", "$retainKeys"):
            continue
        if k.startswith("$setElementOrder/"):
            orders[k.split("/", 1)[1]] = v
            continue
        if k.startswith("$deleteFromPrimitiveList/"):
            f = k.split("/", 1)[1]
            if isinstance(result.get(f), list):
                result[f] = [x for x in result[f] if x not in v]
            continue
        if v is None:
            result.pop(k, None)
        elif isinstance(v, dict):
            merged = strategic_merge(result.get(k), v)
            if merged is None:
                result.pop(k, None)
            else:
                result[k] = merged
        elif isinstance(v, list) and (k in MERGE_KEYS) and any(isinstance(i, dict) for i in v):
            cur = copy.deepcopy(result.get(k) or [])
            key = _merge_key(k, v + cur)
            replace = False
            for item in v:
                if isinstance(item, dict) and item.get("$patch") == "replace" and len(item) == 1:
                    replace = True
            if replace:
                result[k] = [i for i in v if not (isinstance(i, dict) and "$patch" in i)]
                continue
            for item in v:
                idx = next((i for i, c in enumerate(cur)
                            if isinstance(c, dict) and c.get(key) == item.get(key)), None)
                if item.get("$patch") == "delete":
                    if idx is not None:
                        cur.pop(idx)
                    continue
                if idx is None:
                    cur.append(strategic_merge({}, item))
                else:
                    cur[idx] = strategic_merge(cur[idx], item)
            result[k] = cur
        elif isinstance(v, list) and k in MERGE_PRIMITIVE:
            cur = list(result.get(k) or [])
            result[k] = cur + [x for x in v if x not in cur]
        else:
            result[k] = copy.deepcopy(v)
    for f, order in orders.items():
        items = result.get(f)
        if not isinstance(items, list):
            continue
        if order and isinstance(order[0], dict):
            key = _merge_key(f, order)
            rank = {o.get(key): i for i, o in enumerate(order)}
            items.sort(key=lambda it: rank.get(it.get(key) if isinstance(it, dict) else None,
                                               len(rank)))
        else:
            rank = {o: i for i, o in enumerate(order)}
            items.sort(key=lambda it: rank.get(it, len(rank)))
    retain = patch.get("$retainKeys")
    if isinstance(retain, list):
        for k in list(result):
            if k not in retain and k not in patch:
                del result[k]
    return result


def fields_v1(obj, skip_meta=True):
    """A FieldsV1 set for the fields present in obj (maps by key, keyed lists by merge key)."""
    def walk(v, field=None):
        if isinstance(v, dict):
            out = {}
            for k, sub in v.items():
                out["f:" + k] = walk(sub, k)
            return out
        if isinstance(v, list) and v and all(isinstance(i, dict) for i in v):
            key = _merge_key(field, v)
            if key:
                out = {}
                for i in v:
                    if key in i:
                        out["k:" + json.dumps({key: i[key]}, separators=(",", ":"))] = \
                            dict({".": {}}, **walk(i, None))
                return out
        return {}
    body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "status")}
    meta = {k: v for k, v in (body.get("metadata") or {}).items()
            if k in ("labels", "annotations", "finalizers", "ownerReferences")}
    body.pop("metadata", None)
    if meta:
        body["metadata"] = meta
    return walk(body)


# ---------------------------------------------------------------------------------------------
# Storage

class Store:
    """All objects in memory, one global resourceVersion counter as etcd's revision."""

    def __init__(self):
        self.lock = threading.Condition()
        self.rv = 1
        self.objects = {}  # (plural, group, ns, name) -> obj
        self.history = []  # (rv, type, plural, group, ns, obj)

    def _key(self, res, ns, name):
        return (res.plural, res.group, ns if res.namespaced else "", name)

    def get(self, res, ns, name):
        with self.lock:
            obj = self.objects.get(self._key(res, ns, name))
            if obj is None:
                raise not_found(res, name)
            return copy.deepcopy(obj)

    def list(self, res, ns):
        with self.lock:
            items = [copy.deepcopy(o) for (p, g, n, _), o in self.objects.items()
                     if p == res.plural and g == res.group and (not ns or n == ns)]
            rv = self.rv
        items.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
        return items, str(rv)

    def _record(self, typ, res, obj):
        self.history.append((int(obj["metadata"]["resourceVersion"]), typ, res.plural,
                             res.group, obj["metadata"].get("namespace", ""),
                             copy.deepcopy(obj)))
        self.lock.notify_all()

    def create(self, res, ns, obj):
        with self.lock:
            name = obj["metadata"]["name"]
            if res.namespaced and ns and ("namespaces", "", "", ns) not in self.objects:
                raise ApiError(404, "NotFound", 'namespaces "%s" not found' % ns,
                               {"name": ns, "kind": "namespaces"})
            key = self._key(res, ns, name)
            if key in self.objects:
                raise already_exists(res, name)
            self.rv += 1
            obj["metadata"]["resourceVersion"] = str(self.rv)
            self.objects[key] = copy.deepcopy(obj)
            self._record("ADDED", res, obj)
            return obj

    def update(self, res, ns, name, mutate):
        """mutate(current copy) -> new object; rejects a stale resourceVersion in it."""
        with self.lock:
            key = self._key(res, ns, name)
            cur = self.objects.get(key)
            if cur is None:
                raise not_found(res, name)
            new = mutate(copy.deepcopy(cur))
            if new is None:
                return copy.deepcopy(cur)
            rv = new["metadata"].get("resourceVersion")
            if rv and rv != cur["metadata"]["resourceVersion"]:
                raise conflict(res, name)
            if _strip_rv(new) == _strip_rv(cur):
                return copy.deepcopy(cur)  # no-op updates do not bump resourceVersion
            self.rv += 1
            new["metadata"]["resourceVersion"] = str(self.rv)
            self.objects[key] = copy.deepcopy(new)
            self._record("MODIFIED", res, new)
            return new

    def delete(self, res, ns, name):
        with self.lock:
            key = self._key(res, ns, name)
            cur = self.objects.pop(key, None)
            if cur is None:
                raise not_found(res, name)
            self.rv += 1
            cur["metadata"]["resourceVersion"] = str(self.rv)
            self._record("DELETED", res, cur)
            if res.kind == "Namespace":
                for k in [k for k in self.objects if k[2] == name]:
                    o = self.objects.pop(k)
                    self.rv += 1
                    o["metadata"]["resourceVersion"] = str(self.rv)
                    r = BY_GV[(k[1], "v1")][k[0]]
                    self._record("DELETED", r, o)
            return cur


def _strip_rv(obj):
    o = copy.deepcopy(obj)
    o["metadata"].pop("resourceVersion", None)
    o["metadata"].pop("managedFields", None)
    return o


# ---------------------------------------------------------------------------------------------
# Tables

def col(name, typ, desc, fmt="", priority=0):
    return {"name": name, "type": typ, "format": fmt, "description": desc, "priority": priority}


NAME_COL = col("Name", "string", "Name must be unique within a namespace. Is required when "
               "creating resources, although some resources may allow a client to request the "
               "generation of an appropriate name automatically. Name is primarily intended for "
               "creation idempotence and configuration definition. Cannot be updated. More "
               "info: https://kubernetes.io/docs/concepts/overview/working-with-objects/"
               "names#names", "name")
AGE_COL = col("Age", "string", "CreationTimestamp is a timestamp representing the server time "
              "when this object was created. It is not guaranteed to be set in happens-before "
              "order across separate operations. Clients may not set this value. It is "
              "represented in RFC3339 form and is in UTC.\n\nPopulated by the system.\nRead-only."
              "\nNull for lists.\nMore info: https://git.k8s.io/community/contributors/devel/"
              "sig-architecture/api-conventions.md#metadata")


def _pod_cells(o):
    st = o.get("status", {})
    cs = st.get("containerStatuses", [])
    n = len(o.get("spec", {}).get("containers", []))
    ready = sum(1 for c in cs if c.get("ready"))
    restarts = sum(c.get("restartCount", 0) for c in cs)
    reason = st.get("reason") or st.get("phase", "")
    if o["metadata"].get("deletionTimestamp"):
        reason = "Terminating"
    return [o["metadata"]["name"], "%d/%d" % (ready, n), reason, str(restarts), age(o),
            st.get("podIP") or "<none>", o.get("spec", {}).get("nodeName") or "<none>",
            "<none>", "<none>"]


def _selector_str(sel):
    if not sel:
        return "<none>"
    parts = ["%s=%s" % kv for kv in sorted((sel.get("matchLabels") or {}).items())]
    for e in sel.get("matchExpressions") or []:
        parts.append("%s %s (%s)" % (e["key"], e["operator"].lower(), ",".join(e.get(
            "values", []))))
    return ",".join(parts) or "<none>"


def _deploy_cells(o):
    spec, st = o.get("spec", {}), o.get("status", {})
    cs = spec.get("template", {}).get("spec", {}).get("containers", [])
    return [o["metadata"]["name"], "%d/%d" % (st.get("readyReplicas", 0), spec.get("replicas", 0)),
            st.get("updatedReplicas", 0), st.get("availableReplicas", 0), age(o),
            ",".join(c["name"] for c in cs), ",".join(c.get("image", "") for c in cs),
            _selector_str(spec.get("selector"))]


def _svc_cells(o):
    spec = o.get("spec", {})
    ports = ",".join("%s/%s" % (p.get("port"), p.get("protocol", "TCP"))
                     for p in spec.get("ports", [])) or "<none>"
    sel = spec.get("selector")
    return [o["metadata"]["name"], spec.get("type", "ClusterIP"), spec.get("clusterIP", "None"),
            "<none>", ports, age(o),
            ",".join("%s=%s" % kv for kv in sorted(sel.items())) if sel else "<none>"]


TABLES = {
    "Pod": ([NAME_COL,
             col("Ready", "string", "The aggregate readiness state of this pod for accepting "
                 "traffic."),
             col("Status", "string", "The aggregate status of the containers in this pod."),
             col("Restarts", "string", "The number of times the containers in this pod have "
                 "been restarted and when the last container in this pod has restarted."),
             AGE_COL,
             col("IP", "string", "The IP address assigned to the pod", priority=1),
             col("Node", "string", "The name of the node where the pod is running",
                 priority=1),
             col("Nominated Node", "string", "The name of the node the pod has been nominated "
                 "to run on", priority=1),
             col("Readiness Gates", "string", "The readiness gates of the pod", priority=1)],
            _pod_cells),
    "ConfigMap": ([NAME_COL, col("Data", "string", "Data contains the configuration data."),
                   AGE_COL],
                  lambda o: [o["metadata"]["name"],
                             len(o.get("data") or {}) + len(o.get("binaryData") or {}), age(o)]),
    "Secret": ([NAME_COL, col("Type", "string", "The type of the secret"),
                col("Data", "string", "The number of data keys in the secret"), AGE_COL],
               lambda o: [o["metadata"]["name"], o.get("type", ""), len(o.get("data") or {}),
                          age(o)]),
    "Namespace": ([NAME_COL, col("Status", "string", "The status of the namespace"), AGE_COL],
                  lambda o: [o["metadata"]["name"], o.get("status", {}).get("phase", ""),
                             age(o)]),
    "ServiceAccount": ([NAME_COL, col("Secrets", "string", "Secrets is a list of the secrets in "
                                      "the same namespace that pods running using this "
                                      "ServiceAccount are allowed to use."), AGE_COL],
                       lambda o: [o["metadata"]["name"], len(o.get("secrets") or []), age(o)]),
    "Deployment": ([NAME_COL,
                    col("Ready", "string", "Number of the pod with ready state"),
                    col("Up-to-date", "string", "Total number of non-terminated pods targeted "
                        "by this deployment that have the desired template spec."),
                    col("Available", "string", "Total number of available pods (ready for at "
                        "least minReadySeconds) targeted by this deployment."),
                    AGE_COL,
                    col("Containers", "string", "Names of each container in the template.",
                        priority=1),
                    col("Images", "string", "Images referenced by each container in the "
                        "template.", priority=1),
                    col("Selector", "string", "Label selector for pods. Existing ReplicaSets "
                        "whose pods are selected by this will be the ones affected by this "
                        "deployment.", priority=1)],
                   _deploy_cells),
    "Service": ([NAME_COL, col("Type", "string", "The type of service"),
                 col("Cluster-IP", "string", "The cluster IP of the service"),
                 col("External-IP", "string", "The external IP of the service"),
                 col("Port(s)", "string", "The ports of the service"), AGE_COL,
                 col("Selector", "string", "The selector of the service", priority=1)],
                _svc_cells),
}
# Resources without printers get the default table (apiserver's DefaultTableConvertor).
DEFAULT_TABLE = ([NAME_COL, col("Created At", "date", AGE_COL["description"])],
                 lambda o: [o["metadata"]["name"], o["metadata"].get("creationTimestamp")])


def partial(obj):
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": obj["metadata"]}


def to_table(res, objs, list_meta, include_object, with_columns=True):
    cols, cells = TABLES.get(res.kind, DEFAULT_TABLE)
    rows = []
    for o in objs:
        row = {"cells": cells(o)}
        if include_object == "Object":
            row["object"] = o
        elif include_object != "None":
            row["object"] = partial(o)
        rows.append(row)
    t = {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta}
    if with_columns:
        t["columnDefinitions"] = cols
    t["rows"] = rows
    return t


# ---------------------------------------------------------------------------------------------
# Discovery and OpenAPI

def legacy_resource_list(group, version):
    out = []
    for r in BY_GV[(group, version)].values():
        entry = {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
                 "kind": r.kind, "verbs": r.verbs}
        if r.short:
            entry["shortNames"] = r.short
        if r.categories:
            entry["categories"] = r.categories
        entry["storageVersionHash"] = base64.b64encode(hashlib.sha256(
            r.gr.encode()).digest()[:8]).decode()
        out.append(entry)
        for sub in r.subresources:
            e = {"name": "%s/%s" % (r.plural, sub[0]), "singularName": "",
                 "namespaced": r.namespaced, "kind": sub[1], "verbs": sub[2]}
            if len(sub) > 3:
                e["group"], e["version"] = sub[3], sub[4]
            out.append(e)
    out.sort(key=lambda e: e["name"])
    return {"kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": version if not group else "%s/%s" % (group, version),
            "resources": out}


def aggregated(core, apiversion):
    items = []
    for group, version in GROUPS:
        if (group == "") != core:
            continue
        resources = []
        for r in sorted(BY_GV[(group, version)].values(), key=lambda r: r.plural):
            e = {"resource": r.plural,
                 "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                 "scope": "Namespaced" if r.namespaced else "Cluster",
                 "singularResource": r.singular, "verbs": r.verbs}
            if r.short:
                e["shortNames"] = r.short
            if r.categories:
                e["categories"] = r.categories
            if r.subresources:
                e["subresources"] = [
                    {"subresource": s[0],
                     "responseKind": {"group": s[3] if len(s) > 3 else r.group,
                                      "version": s[4] if len(s) > 3 else r.version,
                                      "kind": s[1]},
                     "verbs": s[2]} for s in r.subresources]
            resources.append(e)
        meta = {"creationTimestamp": None}
        if group:
            meta = {"name": group, "creationTimestamp": None}
        items.append({"metadata": meta,
                      "versions": [{"version": version, "resources": resources,
                                    "freshness": "Current"}]})
    return {"kind": "APIGroupDiscoveryList", "apiVersion": apiversion, "metadata": {},
            "items": items}


def openapi_gv(group, version):
    paths = {}
    prefix = "/api/v1" if not group else "/apis/%s/%s" % (group, version)

    def param(name, where, required=False):
        p = {"name": name, "in": where, "description": name,
             "schema": {"type": "string", "uniqueItems": True}}
        if required:
            p["required"] = True
        return p

    for r in BY_GV[(group, version)].values():
        gvk = {"group": r.group, "version": r.version, "kind": r.kind}
        base = prefix + ("/namespaces/{namespace}/" if r.namespaced else "/") + r.plural
        op_id = "%s%s%s" % ("Core" if not group else group.capitalize(), version.capitalize(),
                            ("Namespaced" if r.namespaced else "") + r.kind)
        common = [param("pretty", "query")]
        if r.namespaced:
            common.insert(0, param("namespace", "path", True))
        write_params = [param("dryRun", "query"), param("fieldManager", "query"),
                        param("fieldValidation", "query")]

        def op(action, verb, params=()):
            return {"tags": ["%s_%s" % ("core" if not group else group, version)],
                    "description": "%s %s" % (action, r.kind),
                    "operationId": "%s%s" % (verb, op_id),
                    "parameters": list(params),
                    "responses": {"200": {"description": "OK"},
                                  "401": {"description": "Unauthorized"}},
                    "x-kubernetes-action": action,
                    "x-kubernetes-group-version-kind": gvk}

        paths[base] = {
            "get": op("list", "list"), "post": op("post", "create", write_params),
            "delete": op("deletecollection", "deleteCollection"), "parameters": common}
        paths[base + "/{name}"] = {
            "get": op("get", "read"), "put": op("put", "replace", write_params),
            "patch": op("patch", "patch", write_params + [param("force", "query")]),
            "delete": op("delete", "delete", [param("dryRun", "query")]),
            "parameters": [param("name", "path", True)] + common}
    return {"openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": VERSION["gitVersion"]},
            "paths": paths, "components": {"schemas": {}}}


def gv_path(group, version):
    return "api/v1" if not group else "apis/%s/%s" % (group, version)


def openapi_hash(group, version):
    return hashlib.sha512(json.dumps(openapi_gv(group, version), sort_keys=True).encode()) \
        .hexdigest()[:128].upper()


# ---------------------------------------------------------------------------------------------
# Exec emulation (nothing is run)

FIXED_DATE = "Thu Jan  1 00:00:00 UTC 2026"


class ExecSession:
    """Emulates a few commands over abstract stdin/stdout/stderr; returns an exit code."""

    def __init__(self, pod, container, read_stdin, out, err):
        self.pod, self.container = pod, container
        self.read_stdin, self.out, self.err = read_stdin, out, err

    def env_lines(self):
        return ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "HOSTNAME=%s" % self.pod["metadata"]["name"],
                "KUBERNETES_SERVICE_HOST=10.96.0.1", "KUBERNETES_SERVICE_PORT=443",
                "KUBERNETES_PORT=tcp://10.96.0.1:443", "HOME=/root"] + \
            ["%s=%s" % (e["name"], e.get("value", "")) for e in self.container.get("env", [])
             if "value" in e]

    def run(self, argv):
        if not argv:
            self.err(b"no command given\n")
            return 126
        cmd, args = argv[0].rsplit("/", 1)[-1], argv[1:]
        if cmd == "echo":
            nl = True
            if args and args[0] == "-n":
                nl, args = False, args[1:]
            self.out((" ".join(args) + ("\n" if nl else "")).encode())
            return 0
        if cmd == "cat":
            if args and args != ["-"]:
                code = 0
                for a in args:
                    if a == "/etc/hostname":
                        self.out((self.pod["metadata"]["name"] + "\n").encode())
                    else:
                        self.err(("cat: %s: No such file or directory\n" % a).encode())
                        code = 1
                return code
            while True:
                chunk = self.read_stdin()
                if not chunk:
                    return 0
                self.out(chunk)
        if cmd in ("env", "printenv"):
            self.out(("\n".join(self.env_lines()) + "\n").encode())
            return 0
        if cmd == "date":
            self.out((FIXED_DATE + "\n").encode())
            return 0
        if cmd == "hostname":
            self.out((self.pod["metadata"]["name"] + "\n").encode())
            return 0
        if cmd == "whoami":
            self.out(b"root\n")
            return 0
        if cmd == "true":
            return 0
        if cmd == "false":
            return 1
        if cmd == "sleep":
            try:
                time.sleep(min(float(args[0]), 30.0))
            except (IndexError, ValueError):
                self.err(b"sleep: invalid time interval\n")
                return 1
            return 0
        if cmd in ("sh", "bash") and len(args) >= 2 and args[0] == "-c":
            return self.shell(args[1])
        if cmd in ("sh", "bash") and not args:
            # an interactive shell reading commands from stdin, line by line
            buf = b""
            code = 0
            while True:
                chunk = self.read_stdin()
                if not chunk:
                    return code
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    code = self.shell(line.decode(errors="replace"))
                    if code is not None and code < 0:
                        return -code - 1
        return None  # not found: the caller reports it as the runtime would

    def shell(self, script):
        code = 0
        for stmt in script.split(";"):
            stmt = stmt.strip()
            if not stmt:
                continue
            try:
                words = shlex.split(stmt)
            except ValueError:
                self.err(b"sh: 1: Syntax error: Unterminated quoted string\n")
                return 2
            if words[0] == "exit":
                try:
                    return int(words[1]) & 0xFF if len(words) > 1 else code
                except ValueError:
                    self.err(("sh: 1: exit: Illegal number: %s\n" % words[1]).encode())
                    return 2
            to_err = False
            if words and words[-1] in (">&2", "1>&2"):
                to_err, words = True, words[:-1]
            out = self.out
            if to_err:
                self.out, saved = self.err, self.out
            try:
                code = self.run(words)
            finally:
                if to_err:
                    self.out = saved
            if code is None:
                self.err(("sh: 1: %s: not found\n" % words[0]).encode())
                code = 127
            _ = out
        return code


# ---------------------------------------------------------------------------------------------
# WebSocket (RFC 6455), server side

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CHANNEL_PROTOCOLS = ["v5.channel.k8s.io", "v4.channel.k8s.io"]


class WebSocket:
    def __init__(self, rfile, wfile):
        self.rfile, self.wfile = rfile, wfile
        self.wlock = threading.Lock()
        self.closed = False

    def read_message(self):
        """Returns (opcode, payload) of the next data message; answers pings; (8, b'') on close."""
        msg, msg_op = b"", None
        while True:
            b0, b1 = spdy.read_exact(self.rfile, 2)
            fin, op = b0 & 0x80, b0 & 0x0F
            ln = b1 & 0x7F
            if ln == 126:
                ln = int.from_bytes(spdy.read_exact(self.rfile, 2), "big")
            elif ln == 127:
                ln = int.from_bytes(spdy.read_exact(self.rfile, 8), "big")
            mask = spdy.read_exact(self.rfile, 4) if b1 & 0x80 else None
            payload = spdy.read_exact(self.rfile, ln)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if op == 0x9:
                self.send(0xA, payload)
                continue
            if op == 0xA:
                continue
            if op == 0x8:
                return 8, payload
            if op != 0:
                msg_op = op
            msg += payload
            if fin:
                return msg_op, msg

    def send(self, op, payload):
        hdr = bytes([0x80 | op])
        n = len(payload)
        if n < 126:
            hdr += bytes([n])
        elif n < 65536:
            hdr += bytes([126]) + n.to_bytes(2, "big")
        else:
            hdr += bytes([127]) + n.to_bytes(8, "big")
        with self.wlock:
            if self.closed and op != 0x8:
                return
            self.wfile.write(hdr + payload)
            self.wfile.flush()

    def close(self, code=1000):
        try:
            self.send(0x8, code.to_bytes(2, "big"))
        except OSError:
            pass
        self.closed = True


# ---------------------------------------------------------------------------------------------
# HTTP

def parse_accept(header):
    """[(mime, params dict)] in the client's order."""
    out = []
    for part in (header or "").split(","):
        bits = [b.strip() for b in part.split(";")]
        if not bits[0]:
            continue
        params = {}
        for b in bits[1:]:
            if "=" in b:
                k, v = b.split("=", 1)
                params[k.strip()] = v.strip()
        out.append((bits[0].lower(), params))
    return out


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kscribe-test-apiserver"
    sys_version = ""

    # -- plumbing ------------------------------------------------------------------------------

    def log_message(self, fmt, *args):
        pass  # one line per request is written by log_request_line

    def log_request_line(self, code, extra=""):
        log('%s %s %s %d ct=%r accept=%r ua=%r%s' % (
            self.client_address[1], self.command, self.path, code,
            self.headers.get("Content-Type", ""), self.headers.get("Accept", ""),
            self.headers.get("User-Agent", ""), extra))

    def read_body(self):
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            data = b""
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline(3)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def common_headers(self):
        self.send_header("Audit-Id", str(uuid.uuid4()))
        self.send_header("Cache-Control", "no-cache, private")

    def send_bytes(self, code, body, ctype="application/json", extra_headers=None):
        gz = False
        if len(body) > GZIP_THRESHOLD and "gzip" in self.headers.get("Accept-Encoding", ""):
            body = gzip.compress(body, 6)
            gz = True
        self.send_response_only(code)
        self.common_headers()
        self.send_header("Content-Type", ctype)
        if gz:
            self.send_header("Content-Encoding", "gzip")
        for k, v in (extra_headers or {}).items():
            self.send_header(k, v)
        self.send_header("Date", self.date_time_string())
        if self.command == "HEAD" or code in (204, 304):
            if code not in (204, 304):
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
        elif len(body) > CHUNKING_THRESHOLD or gz:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(body), 32768):
                piece = body[i:i + 32768]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        self.wfile.flush()
        self.log_request_line(code, " gzip" if gz else "")

    def send_json(self, code, obj, ctype="application/json", extra_headers=None):
        self.send_bytes(code, json.dumps(obj, separators=(",", ":")).encode() + b"\n", ctype,
                        extra_headers)

    def send_error_status(self, err):
        if self.prefers_protobuf():
            return self.send_bytes(err.code, k8spb.encode(err.status()),
                                   "application/vnd.kubernetes.protobuf")
        self.send_json(err.code, err.status())

    def start_chunked(self, code, ctype):
        self.send_response_only(code)
        self.common_headers()
        self.send_header("Content-Type", ctype)
        self.send_header("Date", self.date_time_string())
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        self.log_request_line(code, " (stream)")

    def write_chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def end_chunked(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def peer_gone(self):
        """True if the client closed its side (checked while a stream is idle)."""
        sock = self.connection
        if sock.pending():
            return False
        r, _, _ = select.select([sock], [], [], 0)
        if not r:
            return False
        try:
            sock.setblocking(False)
            data = sock.recv(1)
        except (ssl.SSLWantReadError, BlockingIOError):
            return False
        except OSError:
            return True
        finally:
            try:
                sock.setblocking(True)
            except OSError:
                pass
        return data == b""

    # -- authentication ------------------------------------------------------------------------

    def authenticate(self):
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            tok = auth[7:].strip()
            return tok in self.server.tokens
        cert = self.connection.getpeercert()
        return bool(cert)  # verified against our CA by the TLS layer

    # -- dispatch ------------------------------------------------------------------------------

    def do_GET(self):
        self.dispatch()

    def do_HEAD(self):
        self.dispatch()

    def do_POST(self):
        self.dispatch()

    def do_PUT(self):
        self.dispatch()

    def do_PATCH(self):
        self.dispatch()

    def do_DELETE(self):
        self.dispatch()

    def dispatch(self):
        url = urllib.parse.urlsplit(self.path)
        self.query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        path = url.path
        body = b""
        try:
            if self.command in ("POST", "PUT", "PATCH", "DELETE"):
                body = self.read_body()
            if path in ("/healthz", "/livez", "/readyz"):
                return self.send_bytes(200, b"ok", "text/plain; charset=utf-8")
            if not self.authenticate():
                return self.send_json(401, {"kind": "Status", "apiVersion": "v1",
                                            "metadata": {}, "status": "Failure",
                                            "message": "Unauthorized", "reason": "Unauthorized",
                                            "code": 401})
            self.route(path, body)
        except ApiError as e:
            self.send_error_status(e)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, EOFError):
            self.close_connection = True
        except Exception as e:  # a bug in this test server: say so as a real server would
            log("internal error on %s %s: %r" % (self.command, self.path, e))
            import traceback
            traceback.print_exc(file=LOG)
            try:
                self.send_error_status(ApiError(500, "InternalError",
                                                "Internal error occurred: %s" % e))
            except OSError:
                self.close_connection = True

    def q(self, name, default=""):
        v = self.query.get(name)
        return v[0] if v else default

    def route(self, path, body):
        if path == "/version" or path == "/version/":
            return self.send_json(200, VERSION)
        if path == "/api" or path == "/apis":
            return self.discovery(path == "/api")
        if path == "/openapi/v3":
            return self.send_json(200, {"paths": {
                gv_path(g, v): {"serverRelativeURL": "/openapi/v3/%s?hash=%s" % (
                    gv_path(g, v), openapi_hash(g, v))} for g, v in GROUPS}})
        if path == "/openapi/v2":
            # kubectl fetches this (protobuf only) to validate a `kind: List` client-side. The
            # document has no definitions, so that validation checks nothing.
            doc = {"swagger": "2.0", "info": {"title": "Kubernetes",
                                              "version": VERSION["gitVersion"]}, "paths": {}}
            accept = [m for m, _ in parse_accept(self.headers.get("Accept"))]
            if OPENAPI_V2_PB in accept or OPENAPI_V2_PB_OLD in accept:
                # answered with the '@'-less name kube-openapi uses (Go's mime parser rejects '@')
                return self.send_bytes(200, k8spb.encode_message("OpenAPIv2Document", doc),
                                       OPENAPI_V2_PB)
            return self.send_json(200, doc)
        if path.startswith("/openapi/v3/"):
            rest = path[len("/openapi/v3/"):]
            for g, v in GROUPS:
                if rest == gv_path(g, v):
                    return self.send_json(200, openapi_gv(g, v), extra_headers={
                        "Etag": '"%s"' % openapi_hash(g, v)})
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        parts = [p for p in path.split("/") if p]
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis" and (parts[1], parts[2]) in BY_GV:
            group, version, rest = parts[1], parts[2], parts[3:]
        elif len(parts) == 2 and parts[0] == "apis" and parts[1] in dict(GROUPS):
            g = parts[1]
            gv = {"groupVersion": "%s/%s" % (g, dict(GROUPS)[g]), "version": dict(GROUPS)[g]}
            return self.send_json(200, {"kind": "APIGroup", "apiVersion": "v1", "name": g,
                                        "versions": [gv], "preferredVersion": gv})
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if not rest:
            if self.command != "GET":
                raise ApiError(405, "MethodNotAllowed", "the server does not allow this method "
                               "on the requested resource")
            return self.send_json(200, legacy_resource_list(group, version))
        resources = BY_GV[(group, version)]
        ns, name, sub = "", "", ""
        if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] in resources and \
                resources[rest[2]].namespaced:
            ns, res = rest[1], resources[rest[2]]
            tail = rest[3:]
        elif rest[0] in resources:
            res = resources[rest[0]]
            tail = rest[1:]
            if res.namespaced and tail:
                raise ApiError(404, "NotFound", "the server could not find the requested "
                               "resource")
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if tail:
            name = tail[0]
        if len(tail) > 1:
            sub = "/".join(tail[1:])
        if sub:
            return self.subresource(res, ns, name, sub, body)
        if not name:
            if self.command in ("GET", "HEAD"):
                if self.q("watch") in ("true", "1"):
                    return self.watch(res, ns)
                return self.list(res, ns)
            if self.command == "POST":
                return self.create(res, ns, body)
            if self.command == "DELETE":
                return self.delete_collection(res, ns, body)
        else:
            if self.command in ("GET", "HEAD"):
                return self.get_one(res, ns, name)
            if self.command == "PUT":
                return self.update(res, ns, name, body)
            if self.command == "PATCH":
                return self.patch(res, ns, name, body)
            if self.command == "DELETE":
                return self.delete(res, ns, name, body)
        raise ApiError(405, "MethodNotAllowed",
                       "the server does not allow this method on the requested resource")

    # -- discovery -----------------------------------------------------------------------------

    def discovery(self, core):
        for mime, params in parse_accept(self.headers.get("Accept")):
            if mime == "application/json" and params.get("g") == "apidiscovery.k8s.io" and \
                    params.get("as") == "APIGroupDiscoveryList" and \
                    params.get("v") in ("v2", "v2beta1"):
                v = params["v"]
                doc = aggregated(core, "apidiscovery.k8s.io/" + v)
                etag = '"%s"' % hashlib.sha256(json.dumps(doc, sort_keys=True).encode()) \
                    .hexdigest().upper()
                ctype = "application/json;g=apidiscovery.k8s.io;v=%s;as=APIGroupDiscoveryList" % v
                if self.headers.get("If-None-Match") == etag:
                    return self.send_bytes(304, b"", ctype, {"Etag": etag,
                                                             "Vary": "Accept"})
                return self.send_json(200, doc, ctype, {"Etag": etag, "Vary": "Accept"})
        if core:
            return self.send_json(200, {"kind": "APIVersions", "versions": ["v1"],
                                        "serverAddressByClientCIDRs": [{
                                            "clientCIDR": "0.0.0.0/0",
                                            "serverAddress": "10.0.0.10:6443"}]})
        groups = []
        for g, v in GROUPS:
            if g:
                gv = {"groupVersion": "%s/%s" % (g, v), "version": v}
                groups.append({"name": g, "versions": [gv], "preferredVersion": gv})
        return self.send_json(200, {"kind": "APIGroupList", "apiVersion": "v1",
                                    "groups": groups})

    # -- content negotiation -------------------------------------------------------------------

    def prefers_protobuf(self):
        accept = parse_accept(self.headers.get("Accept"))
        return bool(accept) and accept[0][0] == "application/vnd.kubernetes.protobuf"

    def output_form(self, kind=None):
        """'table' / 'partial' / 'json' / 'protobuf' from Accept, in the client's order of
        preference; protobuf only for the kinds k8spb can encode completely."""
        accept = parse_accept(self.headers.get("Accept"))
        if not accept:
            return "json"
        for mime, params in accept:
            if mime == "application/vnd.kubernetes.protobuf" and kind in k8spb.ENCODABLE and \
                    "as" not in params:
                return "protobuf"
            if mime in ("application/json", "*/*", "application/*"):
                if params.get("as") == "Table" and params.get("g") == "meta.k8s.io" and \
                        params.get("v") in ("v1", "v1beta1"):
                    return "table"
                if params.get("as") in ("PartialObjectMetadata", "PartialObjectMetadataList") \
                        and params.get("g") == "meta.k8s.io":
                    return "partial"
                if "as" not in params:
                    return "json"
            if mime in ("application/yaml",):
                return "json"  # the real server can answer YAML; JSON is a valid subset
        raise ApiError(406, "NotAcceptable",
                       "only the following media types are accepted: application/json, "
                       "application/yaml, application/vnd.kubernetes.protobuf")

    def decode_body(self, body, res=None):
        ctype = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip()
        try:
            if ctype == "application/vnd.kubernetes.protobuf":
                return k8spb.decode(body)
            if ctype in ("application/yaml", "application/apply-patch+yaml") and yaml:
                return yaml.safe_load(body.decode())
            return json.loads(body.decode() or "null")
        except (k8spb.DecodeError, ValueError, UnicodeDecodeError) as e:
            raise bad_request("the body of the request was in an unknown format - accepted "
                              "media types include: application/json, application/yaml, "
                              "application/vnd.kubernetes.protobuf (%s)" % e) from None

    def check_kind(self, res, obj):
        if not isinstance(obj, dict):
            raise bad_request("the object provided is not a valid %s" % res.kind)
        kind = obj.get("kind")
        apiv = obj.get("apiVersion")
        if (kind and kind != res.kind) or (apiv and apiv != res.api_version):
            raise bad_request("the API version in the data (%s) does not match the expected API "
                              "version (%s)" % (apiv, res.api_version) if apiv != res.api_version
                              else "%s in version \"%s\" cannot be handled as a %s: "
                              "no kind \"%s\" is registered" % (kind, res.version, res.kind, kind))
        obj["kind"], obj["apiVersion"] = res.kind, res.api_version
        obj.setdefault("metadata", {})
        return obj

    # -- verbs ---------------------------------------------------------------------------------

    def respond_obj(self, code, res, obj):
        form = self.output_form(obj.get("kind"))
        if form == "protobuf":
            return self.send_bytes(code, k8spb.encode(obj), "application/vnd.kubernetes.protobuf")
        if form == "table":
            meta = {"resourceVersion": obj["metadata"].get("resourceVersion", "")}
            return self.send_json(code, to_table(res, [obj], meta, self.q("includeObject")),
                                  "application/json;as=Table;v=v1;g=meta.k8s.io")
        if form == "partial":
            return self.send_json(code, partial(obj),
                                  "application/json;as=PartialObjectMetadata;v=v1;"
                                  "g=meta.k8s.io")
        return self.send_json(code, obj)

    def filtered(self, res, ns):
        items, rv = self.server.store.list(res, ns)
        lsel = parse_label_selector(self.q("labelSelector"))
        fsel = parse_field_selector(self.q("fieldSelector"))
        return [o for o in items if lsel(o["metadata"].get("labels")) and fsel(o)], rv

    def list(self, res, ns):
        form = self.output_form()
        items, rv = self.filtered(res, ns)
        meta = {"resourceVersion": rv}
        limit = int(self.q("limit") or 0)
        start = 0
        cont = self.q("continue")
        if cont:
            try:
                tok = json.loads(base64.urlsafe_b64decode(cont + "==").decode())
                start, meta["resourceVersion"] = int(tok["start"]), tok["rv"]
            except (ValueError, KeyError):
                raise ApiError(400, "BadRequest", "continue key is not valid") from None
        page = items[start:start + limit] if limit else items[start:]
        if limit and start + limit < len(items):
            meta["continue"] = base64.urlsafe_b64encode(json.dumps(
                {"v": "meta.k8s.io/v1", "rv": meta["resourceVersion"],
                 "start": start + limit}).encode()).decode().rstrip("=")
            meta["remainingItemCount"] = len(items) - start - limit
        if form == "table":
            return self.send_json(200, to_table(res, page, meta, self.q("includeObject")),
                                  "application/json;as=Table;v=v1;g=meta.k8s.io")
        if form == "partial":
            return self.send_json(200, {"kind": "PartialObjectMetadataList",
                                        "apiVersion": "meta.k8s.io/v1", "metadata": meta,
                                        "items": [partial(o) for o in page]},
                                  "application/json;as=PartialObjectMetadataList;v=v1;"
                                  "g=meta.k8s.io")
        for o in page:  # items of a typed list carry no kind/apiVersion on the wire
            o.pop("kind", None)
            o.pop("apiVersion", None)
        return self.send_json(200, {"kind": res.list_kind, "apiVersion": res.api_version,
                                    "metadata": meta, "items": page})

    def get_one(self, res, ns, name):
        return self.respond_obj(200, res, self.server.store.get(res, ns, name))

    def manager(self, default_op):
        fm = self.q("fieldManager")
        if not fm:
            ua = self.headers.get("User-Agent", "unknown")
            fm = ua.split("/")[0]
        return fm, default_op

    def add_managed(self, obj, operation, applied=None, subresource=""):
        manager, op = self.manager(operation)
        entry = {"manager": manager, "operation": op, "apiVersion": obj["apiVersion"],
                 "time": now_ts(), "fieldsType": "FieldsV1",
                 "fieldsV1": fields_v1(applied if applied is not None else obj)}
        if subresource:
            entry["subresource"] = subresource
        mf = [m for m in obj["metadata"].get("managedFields", [])
              if not (m.get("manager") == manager and m.get("operation") == op)]
        mf.append(entry)
        obj["metadata"]["managedFields"] = mf

    def prepare_new(self, res, ns, obj, operation="Update", applied=None):
        meta = obj["metadata"]
        if res.namespaced:
            if meta.get("namespace") and meta["namespace"] != ns:
                raise bad_request("the namespace of the provided object does not match the "
                                  "namespace sent on the request")
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        if not meta.get("name"):
            raise invalid(res, "", [("metadata.name", "Required value: name or generateName is "
                                     "required")])
        for k in ("uid", "resourceVersion", "selfLink", "deletionTimestamp",
                  "deletionGracePeriodSeconds", "managedFields"):
            meta.pop(k, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_ts()
        if res.kind == "Deployment":
            meta["generation"] = 1
        else:
            meta.pop("generation", None)
        apply_defaults(res, obj, meta["name"])
        validate(res, obj)
        if res.kind == "Deployment":
            deployment_status(obj)
        self.add_managed(obj, operation, applied)
        # key order as the real server writes it: metadata fields, then the rest
        order = ["name", "generateName", "namespace", "uid", "resourceVersion", "generation",
                 "creationTimestamp", "labels", "annotations", "ownerReferences", "finalizers",
                 "managedFields"]
        obj["metadata"] = {k: meta[k] for k in order if k in meta} | \
            {k: v for k, v in meta.items() if k not in order}
        return obj

    def create(self, res, ns, body):
        obj = self.check_kind(res, self.decode_body(body, res))
        self.prepare_new(res, ns, obj)
        if self.q("dryRun") == "All":
            return self.respond_obj(201, res, obj)
        obj = self.server.store.create(res, ns, obj)
        if res.kind == "Namespace":
            self.server.seed_namespace(obj["metadata"]["name"])
        return self.respond_obj(201, res, obj)

    def finish_update(self, res, cur, new, operation="Update", applied=None, subresource=""):
        """Carries over what a client cannot change, re-validates, bumps generation."""
        new = self.check_kind(res, new)
        meta, cmeta = new["metadata"], cur["metadata"]
        if meta.get("name", cmeta["name"]) != cmeta["name"]:
            raise bad_request("the name of the object (%s) does not match the name on the URL "
                              "(%s)" % (meta.get("name"), cmeta["name"]))
        for k in ("name", "namespace", "uid", "creationTimestamp"):
            if k in cmeta:
                meta[k] = cmeta[k]
        if "generation" in cmeta:
            meta["generation"] = cmeta["generation"]
        meta["managedFields"] = cmeta.get("managedFields", [])
        if subresource != "status" and "status" in cur and res.kind != "ConfigMap":
            new["status"] = cur["status"]  # status changes only through /status
        if res.kind == "Secret" and new.get("stringData"):
            data = new.setdefault("data", {})
            for k, v in new.pop("stringData").items():
                data[k] = base64.b64encode(v.encode()).decode()
        if res.kind in ("Pod", "Deployment"):
            apply_defaults_update(res, new)
        validate(res, new)
        if res.kind == "Deployment":
            if new.get("spec") != cur.get("spec"):
                meta["generation"] = cmeta.get("generation", 1) + 1
                rev = int(cmeta.get("annotations", {}).get("deployment.kubernetes.io/revision",
                                                             "1"))
                if new["spec"].get("template") != cur["spec"].get("template"):
                    meta.setdefault("annotations", {})["deployment.kubernetes.io/revision"] = \
                        str(rev + 1)
            deployment_status(new)
            if new.get("spec") == cur.get("spec"):
                new["status"] = cur["status"]
        if _strip_rv(new) != _strip_rv(cur):
            self.add_managed(new, operation, applied, subresource)
        return new

    def update(self, res, ns, name, body):
        obj = self.decode_body(body, res)
        dry = self.q("dryRun") == "All"

        def mutate(cur):
            return self.finish_update(res, cur, obj)
        if dry:
            return self.respond_obj(200, res, mutate(self.server.store.get(res, ns, name)))
        return self.respond_obj(200, res, self.server.store.update(res, ns, name, mutate))

    def apply_patch(self, ptype, cur, patch_doc):
        if ptype == "application/json-patch+json":
            return json_patch(cur, patch_doc)
        if ptype == "application/merge-patch+json":
            return json_merge_patch(cur, patch_doc)
        if ptype in ("application/strategic-merge-patch+json", "application/apply-patch+yaml",
                     "application/apply-patch+cbor"):
            return strategic_merge(cur, patch_doc)
        raise ApiError(415, "UnsupportedMediaType",
                       "the body of the request was in an unknown format - accepted media types "
                       "include: application/json-patch+json, application/merge-patch+json, "
                       "application/apply-patch+yaml, application/strategic-merge-patch+json")

    def patch(self, res, ns, name, body, subresource=""):
        ptype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        if ptype not in ("application/json-patch+json", "application/merge-patch+json",
                         "application/strategic-merge-patch+json",
                         "application/apply-patch+yaml"):
            self.apply_patch(ptype, {}, None)  # raises 415
        doc = self.decode_body(body, res)
        dry = self.q("dryRun") == "All"
        is_apply = ptype == "application/apply-patch+yaml"
        if is_apply:
            if not self.q("fieldManager"):
                raise ApiError(422, "Invalid", "PatchOptions.meta.k8s.io \"\" is invalid: "
                               "fieldManager: Required value: is required for apply patch")
            doc = self.check_kind(res, doc)
            try:
                self.server.store.get(res, ns, name)
            except ApiError as e:
                if e.code != 404:
                    raise
                new = copy.deepcopy(doc)
                new["metadata"]["name"] = name
                self.prepare_new(res, ns, new, "Apply", applied=doc)
                if dry:
                    return self.respond_obj(201, res, new)
                try:
                    return self.respond_obj(201, res, self.server.store.create(res, ns, new))
                except ApiError as e2:
                    if e2.code != 409:
                        raise  # else: created concurrently; fall through to a patch

        def mutate(cur):
            if is_apply:
                applied = {k: v for k, v in doc.items() if k not in ("kind", "apiVersion")}
                applied["metadata"] = {k: v for k, v in doc["metadata"].items()
                                       if k in ("labels", "annotations", "finalizers")}
                new = strategic_merge(cur, applied)
                return self.finish_update(res, cur, new, "Apply", doc, subresource)
            new = self.apply_patch(ptype, cur, doc)
            new.get("metadata", {}).pop("resourceVersion", None) if ptype != \
                "application/json-patch+json" and not (isinstance(doc, dict) and (
                    doc.get("metadata") or {}).get("resourceVersion")) else None
            return self.finish_update(res, cur, new, "Update", None, subresource)
        if dry:
            return self.respond_obj(200, res, mutate(self.server.store.get(res, ns, name)))
        return self.respond_obj(200, res, self.server.store.update(res, ns, name, mutate))

    def delete(self, res, ns, name, body):
        opts = {}
        if body:
            try:
                opts = self.decode_body(body) or {}
            except ApiError:
                opts = {}
        pre = (opts.get("preconditions") or {})
        cur = self.server.store.get(res, ns, name)
        if pre.get("uid") and pre["uid"] != cur["metadata"]["uid"]:
            raise ApiError(409, "Conflict", "Precondition failed: UID in precondition: %s, UID "
                           "in object meta: %s" % (pre["uid"], cur["metadata"]["uid"]),
                           _details(res, name))
        if self.q("dryRun") == "All":
            gone = cur
        else:
            gone = self.server.store.delete(res, ns, name)
        if res.kind in ("Pod", "Namespace"):
            # graceful deletion: the real server answers with the object, now terminating
            gone["metadata"]["deletionTimestamp"] = now_ts()
            if res.kind == "Pod":
                gone["metadata"]["deletionGracePeriodSeconds"] = int(
                    opts.get("gracePeriodSeconds",
                             gone["spec"].get("terminationGracePeriodSeconds", 30)))
            else:
                gone["status"]["phase"] = "Terminating"
            return self.respond_obj(200, res, gone)
        return self.send_json(200, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                    "status": "Success",
                                    "details": _details(res, name, {"uid": gone["metadata"]
                                                                    ["uid"]})})

    def delete_collection(self, res, ns, body):
        items, _ = self.filtered(res, ns)
        gone = []
        for o in items:
            try:
                gone.append(self.server.store.delete(res, ns or o["metadata"].get("namespace"),
                                                     o["metadata"]["name"]))
            except ApiError:
                pass
        for o in gone:
            o.pop("kind", None)
            o.pop("apiVersion", None)
        return self.send_json(200, {"kind": res.list_kind, "apiVersion": res.api_version,
                                    "metadata": {"resourceVersion": str(self.server.store.rv)},
                                    "items": gone})

    # -- watch ---------------------------------------------------------------------------------

    def watch(self, res, ns):
        form = self.output_form()
        store = self.server.store
        lsel = parse_label_selector(self.q("labelSelector"))
        fsel = parse_field_selector(self.q("fieldSelector"))
        timeout = float(self.q("timeoutSeconds") or DEFAULT_WATCH_TIMEOUT)
        bookmarks = self.q("allowWatchBookmarks") in ("true", "1")
        rv_param = self.q("resourceVersion")
        deadline = time.monotonic() + timeout
        initial = []
        with store.lock:
            if rv_param and rv_param != "0":
                try:
                    since = int(rv_param)
                except ValueError:
                    raise bad_request("invalid resource version %r" % rv_param) from None
                if since > store.rv:
                    raise ApiError(410, "Expired", "too old resource version: %d (%d)"
                                   % (since, store.rv))
            else:
                since = store.rv
                items = [copy.deepcopy(o) for (p, g, n, _), o in store.objects.items()
                         if p == res.plural and g == res.group and (not ns or n == ns)]
                initial = [("ADDED", o) for o in sorted(items, key=lambda o: int(
                    o["metadata"]["resourceVersion"]))]
            cursor = next((i for i, h in enumerate(store.history) if h[0] > since),
                          len(store.history))
        ctype = "application/json"
        if form == "table":
            ctype = "application/json;as=Table;v=v1;g=meta.k8s.io"
        self.start_chunked(200, ctype)
        first = [True]
        last_rv = [since]

        def emit(typ, obj):
            if not (lsel(obj["metadata"].get("labels")) and fsel(obj)):
                return
            if form == "table":
                obj = to_table(res, [obj], {"resourceVersion": obj["metadata"][
                    "resourceVersion"]}, self.q("includeObject"), with_columns=first[0])
                first[0] = False
            elif form == "partial":
                obj = partial(obj)
            self.write_chunk(json.dumps({"type": typ, "object": obj},
                                        separators=(",", ":")).encode() + b"\n")

        for typ, o in initial:
            emit(typ, o)
        last_bookmark = time.monotonic()
        while True:
            with store.lock:
                pending = []
                while cursor < len(store.history):
                    h = store.history[cursor]
                    cursor += 1
                    if h[2] == res.plural and h[3] == res.group and (not ns or h[4] == ns):
                        pending.append(h)
                if not pending:
                    store.lock.wait(timeout=0.25)
            for h in pending:
                emit(h[1], copy.deepcopy(h[5]))
                last_rv[0] = h[0]
            now = time.monotonic()
            if now >= deadline:
                break
            if not pending:
                if self.server.stopping.is_set() or self.peer_gone():
                    self.close_connection = True
                    return
                if bookmarks and now - last_bookmark >= BOOKMARK_INTERVAL:
                    last_bookmark = now
                    self.write_chunk(json.dumps({"type": "BOOKMARK", "object": {
                        "kind": res.kind, "apiVersion": res.api_version,
                        "metadata": {"resourceVersion": str(max(last_rv[0], store.rv)),
                                     "creationTimestamp": None}}},
                        separators=(",", ":")).encode() + b"\n")
        self.end_chunked()

    # -- subresources --------------------------------------------------------------------------

    def subresource(self, res, ns, name, sub, body):
        if res.kind == "Pod" and sub in ("exec", "attach") and self.command in ("GET", "POST"):
            return self.exec(ns, name, sub)
        if res.kind == "Pod" and sub == "log" and self.command == "GET":
            return self.logs(ns, name)
        if res.kind == "ServiceAccount" and sub == "token" and self.command == "POST":
            return self.token(ns, name, body)
        if sub == "status" and any(s[0] == "status" for s in res.subresources):
            if self.command == "GET":
                return self.get_one(res, ns, name)
            if self.command == "PATCH":
                return self.patch(res, ns, name, body, subresource="status")
        if res.kind == "Deployment" and sub == "scale":
            return self.scale(res, ns, name, body)
        raise ApiError(404, "NotFound", "the server could not find the requested resource")

    def scale(self, res, ns, name, body):
        def as_scale(d):
            return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                    "metadata": {k: d["metadata"][k] for k in ("name", "namespace", "uid",
                                                               "resourceVersion",
                                                               "creationTimestamp")},
                    "spec": {"replicas": d["spec"].get("replicas", 1)},
                    "status": {"replicas": d.get("status", {}).get("replicas", 0),
                               "selector": _selector_str(d["spec"].get("selector"))}}
        if self.command == "GET":
            return self.send_json(200, as_scale(self.server.store.get(res, ns, name)))
        if self.command in ("PUT", "PATCH"):
            doc = self.decode_body(body)

            def mutate(cur):
                scale = as_scale(cur)
                if self.command == "PUT":
                    scale = doc
                else:
                    ptype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
                    scale = self.apply_patch(ptype, scale, doc)
                new = copy.deepcopy(cur)
                new["spec"]["replicas"] = int(scale.get("spec", {}).get("replicas", 1))
                new["metadata"].pop("resourceVersion", None)
                return self.finish_update(res, cur, new, subresource="scale")
            return self.send_json(200, as_scale(self.server.store.update(res, ns, name,
                                                                         mutate)))
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the "
                       "requested resource")

    def token(self, ns, name, body):
        res = BY_GV[("", "v1")]["serviceaccounts"]
        sa = self.server.store.get(res, ns, name)
        req = self.decode_body(body) or {}
        spec = dict(req.get("spec") or {})
        exp = int(spec.get("expirationSeconds") or 3600)
        spec["expirationSeconds"] = exp
        spec.setdefault("audiences", ["https://kubernetes.default.svc.cluster.local"])
        spec.setdefault("boundObjectRef", None)
        now = datetime.datetime.now(datetime.timezone.utc)

        def b64(d):
            return base64.urlsafe_b64encode(json.dumps(d, separators=(",", ":")).encode()) \
                .decode().rstrip("=")
        # An unsigned, obviously fake token in JWT shape: this test server issues nothing real.
        token = "%s.%s.%s" % (
            b64({"alg": "none", "kid": "kscribe-test-apiserver-fake"}),
            b64({"aud": spec["audiences"], "exp": int(now.timestamp()) + exp,
                 "iat": int(now.timestamp()), "iss": "https://kscribe-test-apiserver.invalid",
                 "sub": "system:serviceaccount:%s:%s" % (ns, name)}),
            "FAKE-SIGNATURE-kscribe-test")
        out = {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
               "metadata": {"name": name, "namespace": ns, "creationTimestamp": now_ts()},
               "spec": spec,
               "status": {"token": token, "expirationTimestamp": (
                   now + datetime.timedelta(seconds=exp)).strftime("%Y-%m-%dT%H:%M:%SZ")}}
        _ = sa
        return self.send_json(201, out)

    def pod_and_container(self, ns, name):
        res = BY_GV[("", "v1")]["pods"]
        pod = self.server.store.get(res, ns, name)
        containers = pod["spec"].get("containers", [])
        cname = self.q("container")
        if not cname:
            if len(containers) != 1 and self.command != "GET":
                pass
            cname = containers[0]["name"] if containers else ""
        c = next((c for c in containers if c["name"] == cname), None)
        if c is None:
            raise bad_request("container %s is not valid for pod %s" % (cname, name))
        return pod, c

    def logs(self, ns, name):
        pod, c = self.pod_and_container(ns, name)
        follow = self.q("follow") in ("true", "1")
        stamps = self.q("timestamps") in ("true", "1")
        tail = self.q("tailLines")
        ann = pod["metadata"].get("annotations") or {}
        n_lines = int(ann.get("kscribe.test/log-lines", "3"))
        n_follow = int(ann.get("kscribe.test/follow-lines", "3"))
        interval = float(ann.get("kscribe.test/follow-interval", "0.3"))
        start = parse_ts(pod["metadata"]["creationTimestamp"])

        def line(i):
            text = "%s %s line %d\n" % (name, c["name"], i)
            if stamps:
                text = (start + datetime.timedelta(seconds=i)).strftime(
                    "%Y-%m-%dT%H:%M:%S.000000000Z ") + text
            return text.encode()
        lines = [line(i) for i in range(1, n_lines + 1)]
        if tail:
            lines = lines[-int(tail):] if int(tail) else []
        if not follow:
            return self.send_bytes(200, b"".join(lines), "text/plain")
        self.start_chunked(200, "text/plain")
        if lines:
            self.write_chunk(b"".join(lines))
        for i in range(n_lines + 1, n_lines + n_follow + 1):
            time.sleep(interval)
            self.write_chunk(line(i))
        self.end_chunked()

    def exec(self, ns, name, sub):
        pod, c = self.pod_and_container(ns, name)
        if pod["status"].get("phase") != "Running":
            raise bad_request("unable to upgrade connection: pod %s is not running" % name)
        upgrade = self.headers.get("Upgrade", "").lower()
        argv = self.query.get("command", []) if sub == "exec" else ["cat"]
        opts = {k: self.q(k) in ("true", "1") for k in ("stdin", "stdout", "stderr", "tty")}
        if upgrade == "websocket":
            offered = [p.strip() for p in
                       self.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
            proto = next((p for p in offered if p in CHANNEL_PROTOCOLS), None)
            if proto:
                return self.exec_websocket(pod, c, argv, opts, proto)
        if upgrade == "spdy/3.1":
            offered = [p.strip() for v in self.headers.get_all("X-Stream-Protocol-Version", [])
                       for p in v.split(",")]
            if "v4.channel.k8s.io" in offered:
                return self.exec_spdy(pod, c, argv, opts)
        raise bad_request("Upgrade request required")

    def exec_status(self, sess, argv):
        code = sess.run(argv)
        if code is None:
            return {"metadata": {}, "status": "Failure",
                    "message": "OCI runtime exec failed: exec failed: unable to start container "
                               "process: exec: \"%s\": executable file not found in $PATH: "
                               "unknown" % argv[0],
                    "reason": "InternalError",
                    "details": {"causes": [{"message": "OCI runtime exec failed"}]},
                    "code": 500}
        if code == 0:
            return {"metadata": {}, "status": "Success"}
        return {"metadata": {}, "status": "Failure",
                "message": "command terminated with non-zero exit code: error executing command "
                           "[%s], exit code %d" % (" ".join(argv), code),
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}

    def exec_websocket(self, pod, c, argv, opts, proto):
        key = self.headers.get("Sec-WebSocket-Key", "")
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.send_response_only(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.send_header("Sec-WebSocket-Protocol", proto)
        self.end_headers()
        self.wfile.flush()
        self.log_request_line(101, " " + proto)
        self.close_connection = True
        ws = WebSocket(self.rfile, self.wfile)

        import queue
        stdin_q = queue.Queue()

        def reader():
            try:
                while True:
                    op, data = ws.read_message()
                    if op == 8:
                        stdin_q.put(None)
                        return
                    if not data:
                        continue
                    ch, payload = data[0], data[1:]
                    if ch == 0:
                        if payload:
                            stdin_q.put(payload)
                    elif ch == 255 and payload[:1] == b"\x00":
                        stdin_q.put(None)  # v5: the client closed stdin
            except (EOFError, OSError, ValueError):
                stdin_q.put(None)
        threading.Thread(target=reader, daemon=True).start()

        def read_stdin():
            return (stdin_q.get() or b"") if opts["stdin"] else b""

        def out(data):
            if data:
                ws.send(0x2, b"\x01" + data)

        def err(data):
            if data:
                ws.send(0x2, (b"\x01" if opts["tty"] else b"\x02") + data)

        try:
            status = self.exec_status(ExecSession(pod, c, read_stdin, out, err), argv)
            ws.send(0x2, b"\x03" + json.dumps(status, separators=(",", ":")).encode())
            ws.close()
        except OSError:
            pass

    def exec_spdy(self, pod, c, argv, opts):
        """The remotecommand v4 protocol over SPDY/3.1: the client opens one stream per
        streamType (error, stdin, stdout, stderr, resize); the status goes on the error stream."""
        self.send_response_only(101)
        self.send_header("Connection", "Upgrade")
        self.send_header("Upgrade", "SPDY/3.1")
        self.send_header("X-Stream-Protocol-Version", "v4.channel.k8s.io")
        self.send_header("Date", self.date_time_string())
        self.end_headers()
        self.wfile.flush()
        self.log_request_line(101, " SPDY/3.1 v4.channel.k8s.io")
        self.close_connection = True
        sess = spdy.Session(self.rfile, self.wfile)
        need = {"error"} | {k for k in ("stdin", "stdout") if opts[k]}
        if opts["stderr"] and not opts["tty"]:
            need.add("stderr")
        if opts["tty"]:
            need.add("resize")
        streams = {}
        cond = threading.Condition()

        import queue
        stdin_q = queue.Queue()

        def reader():
            try:
                while True:
                    kind, sid, payload, flags = sess.read_frame()
                    if kind == "syn":
                        sess.reply(sid)
                        with cond:
                            streams[payload.get("streamtype", "")] = sid
                            cond.notify_all()
                    elif kind == "data" and sid == streams.get("stdin"):
                        if payload:
                            stdin_q.put(payload)
                        if flags & spdy.FLAG_FIN:
                            stdin_q.put(None)
                    elif kind in ("rst", "goaway") and (kind == "goaway" or
                                                        sid == streams.get("stdin")):
                        stdin_q.put(None)
            except (EOFError, OSError, ValueError, zlib.error):
                stdin_q.put(None)
                with cond:
                    streams["__closed__"] = 0
                    cond.notify_all()
        threading.Thread(target=reader, daemon=True).start()
        with cond:
            ok = cond.wait_for(lambda: need <= set(streams) or "__closed__" in streams,
                               timeout=30)
        if not ok or not need <= set(streams):
            log("spdy exec: streams %s never arrived (have %s)" % (need, set(streams)))
            return

        def read_stdin():
            return (stdin_q.get() or b"") if opts["stdin"] else b""

        def out(data):
            if data and "stdout" in streams:
                sess.data(streams["stdout"], data)

        def err(data):
            if data:
                sess.data(streams["stdout" if opts["tty"] else "stderr"], data)

        try:
            status = self.exec_status(ExecSession(pod, c, read_stdin, out, err), argv)
            sess.data(streams["error"], json.dumps(status, separators=(",", ":")).encode())
            for t in ("stdout", "stderr", "error"):
                if t in streams:
                    sess.data(streams[t], b"", fin=True)
            sess.goaway(max(streams.values()))
        except OSError:
            pass


def apply_defaults_update(res, obj):
    if res.kind == "Pod":
        default_pod_spec(obj.setdefault("spec", {}))
    elif res.kind == "Deployment":
        default_pod_spec(obj.setdefault("spec", {}).setdefault("template", {})
                         .setdefault("spec", {}))


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, ssl_ctx, tokens):
        self.ssl_ctx, self.tokens = ssl_ctx, tokens
        self.store = Store()
        self.stopping = threading.Event()
        super().__init__(addr, Handler)
        self.seed()

    def finish_request(self, request, client_address):
        # The TLS handshake runs here, in the connection's thread, so a slow client cannot
        # stall accept().
        request.settimeout(30)
        # Go's net/http sets TCP_NODELAY; without it the header and body writes of a response
        # meet the client's delayed ACK and every keep-alive request waits ~40 ms (Nagle).
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            tls = self.ssl_ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            log("%s TLS handshake failed: %s" % (client_address[1], e))
            return
        tls.settimeout(None)
        try:
            Handler(tls, client_address, self)
        finally:
            try:
                tls.close()
            except OSError:
                pass

    def _new(self, res, ns, obj):
        obj = dict({"kind": res.kind, "apiVersion": res.api_version}, **obj)
        meta = obj["metadata"]
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_ts()
        if res.namespaced:
            meta["namespace"] = ns
        if res.kind == "Deployment":
            meta["generation"] = 1
        apply_defaults(res, obj, meta["name"])
        if res.kind == "Deployment":
            deployment_status(obj)
        self.store.create(res, ns, obj)

    def seed_namespace(self, ns):
        sa = BY_GV[("", "v1")]["serviceaccounts"]
        cm = BY_GV[("", "v1")]["configmaps"]
        try:
            self._new(sa, ns, {"metadata": {"name": "default"}})
            self._new(cm, ns, {"metadata": {"name": "kube-root-ca.crt", "annotations": {
                "kubernetes.io/description": "Contains a CA bundle that can be used to verify "
                "the kube-apiserver when using internal endpoints such as the internal service "
                "IP or kubernetes.default.svc. No other usage is guaranteed across "
                "distributions of Kubernetes clusters."}},
                "data": {"ca.crt": "-----BEGIN CERTIFICATE-----\nFAKE-TEST-CA\n"
                         "-----END CERTIFICATE-----\n"}})
        except ApiError:
            pass

    def seed(self):
        """A small cluster: the usual namespaces, two running pods and a service."""
        core = BY_GV[("", "v1")]
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self._new(core["namespaces"], "", {"metadata": {"name": ns}})
            self.seed_namespace(ns)
        self._new(core["services"], "default", {
            "metadata": {"name": "kubernetes", "labels": {"component": "apiserver",
                                                          "provider": "kubernetes"}},
            "spec": {"ports": [{"name": "https", "port": 443, "targetPort": 6443}]}})
        for name, image, labels in (("web-0", "nginx:1.27", {"app": "web"}),
                                    ("worker", "busybox:1.36", {"app": "worker"})):
            self._new(core["pods"], "default", {
                "metadata": {"name": name, "labels": labels},
                "spec": {"containers": [{"name": name.split("-")[0], "image": image,
                                         "env": [{"name": "APP", "value": labels["app"]}]}]}})


# ---------------------------------------------------------------------------------------------
# Certificates and kubeconfig

def _openssl(*args):
    subprocess.run(["openssl", *args], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)


def ensure_certs(d):
    """CA, server and client certificates (ECDSA P-256) in d, created once with openssl."""
    os.makedirs(d, exist_ok=True)
    p = {n: os.path.join(d, n) for n in ("ca.crt", "ca.key", "server.crt", "server.key",
                                         "client.crt", "client.key", "token")}
    if all(os.path.exists(v) for v in p.values()):
        return p
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", p["ca.key"], "-out", p["ca.crt"], "-days", "3650",
             "-subj", "/CN=kscribe-test-apiserver-ca (TEST ONLY)",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    for kind, subj, ext in (
            ("server", "/CN=kscribe-test-apiserver (TEST ONLY)",
             "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n"
             "extendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n"
             "basicConstraints=critical,CA:FALSE\n"),
            ("client", "/O=system:masters/CN=kscribe-test-admin",
             "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n"
             "basicConstraints=critical,CA:FALSE\n")):
        csr = os.path.join(d, kind + ".csr")
        extf = os.path.join(d, kind + ".ext")
        with open(extf, "w") as f:
            f.write(ext)
        _openssl("req", "-new", *ec, "-keyout", p[kind + ".key"], "-out", csr, "-subj", subj)
        _openssl("x509", "-req", "-in", csr, "-CA", p["ca.crt"], "-CAkey", p["ca.key"],
                 "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", "825",
                 "-extfile", extf, "-out", p[kind + ".crt"])
        os.unlink(csr)
        os.unlink(extf)
    with open(p["token"], "w") as f:
        f.write("kscribe-test-token-" + uuid.uuid4().hex + "\n")
    for k in ("ca.key", "server.key", "client.key", "token"):
        os.chmod(p[k], 0o600)
    return p


def kubeconfig(server_url, paths, auth="cert"):
    def b64file(path):
        with open(path, "rb") as f:
            return base64.b64encode(f.read()).decode()
    user = {}
    if auth == "token":
        with open(paths["token"]) as f:
            user["token"] = f.read().strip()
    else:
        user["client-certificate-data"] = b64file(paths["client.crt"])
        user["client-key-data"] = b64file(paths["client.key"])
    return {"apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "kscribe-test", "cluster": {
                "server": server_url, "certificate-authority-data": b64file(paths["ca.crt"])}}],
            "users": [{"name": "kscribe-test-admin", "user": user}],
            "contexts": [{"name": "kscribe-test", "context": {
                "cluster": "kscribe-test", "user": "kscribe-test-admin",
                "namespace": "default"}}],
            "current-context": "kscribe-test", "preferences": {}}


def write_private(path, text):
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def main(argv=None):
    ap = argparse.ArgumentParser(description="kscribe TEST/DEMO Kubernetes API server (in "
                                 "memory, nothing real runs; for tests and `kscribe demo`)")
    ap.add_argument("--address", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port")
    ap.add_argument("--port-file", help="write the port here once listening")
    ap.add_argument("--cert-dir", required=True,
                    help="reuses ca/server/client certs and token here, creates them if absent")
    ap.add_argument("--kubeconfig-out", help="write a kubeconfig for direct access here")
    ap.add_argument("--kubeconfig-auth", choices=["cert", "token"], default="cert")
    ap.add_argument("--quiet", action="store_true", help="do not log each request")
    args = ap.parse_args(argv)

    paths = ensure_certs(args.cert_dir)
    with open(paths["token"]) as f:
        tokens = {f.read().strip()}
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(paths["server.crt"], paths["server.key"])
    ctx.load_verify_locations(paths["ca.crt"])
    ctx.verify_mode = ssl.CERT_OPTIONAL  # client certificate or bearer token
    ctx.set_alpn_protocols(["http/1.1"])  # no HTTP/2 here; a real apiserver would offer h2

    srv = Server((args.address, args.port), ctx, tokens)
    port = srv.server_address[1]
    if args.quiet:
        global log
        log = lambda msg: None  # noqa: E731
    url = "https://%s:%d" % ("127.0.0.1" if args.address in ("127.0.0.1", "0.0.0.0")
                             else args.address, port)
    if args.kubeconfig_out:
        write_private(args.kubeconfig_out,
                      json.dumps(kubeconfig(url, paths, args.kubeconfig_auth), indent=2) + "\n")
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write("%d\n" % port)
        os.replace(args.port_file + ".tmp", args.port_file)
    sys.stderr.write("kscribe TEST/DEMO API server (not a real Kubernetes) listening on %s\n"
                     % url)
    sys.stderr.flush()

    import signal

    def stop(signum, frame):
        srv.stopping.set()
        threading.Thread(target=srv.shutdown, daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        srv.serve_forever(poll_interval=0.2)
    finally:
        srv.stopping.set()
        srv.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
