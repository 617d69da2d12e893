"""deploy/: the DaemonSet, RBAC, ConfigMap and Dockerfile, checked statically (no cluster and no
Docker engine run here). The manifests must parse and agree with each other and with kscribe:
probes on the config's metrics port and paths, the host mounts attribution needs, exactly the
justified capabilities (never privileged), a grace period longer than the drain, RBAC without
wildcards, and an image whose runtime stage carries the libraries the binary links.
"""
import json
import os
import pathlib
import re
import subprocess

import jsonschema
import pytest
import yaml

SRC = pathlib.Path(os.environ.get("KSCRIBE_SOURCE_DIR", pathlib.Path(__file__).resolve().parents[2]))
DEPLOY = SRC / "deploy"
KSCRIBE = os.environ.get("KSCRIBE_BIN", str(SRC / "build" / "kscribe"))
SCHEMA = json.loads((SRC / "schemas" / "config.schema.json").read_text())

# The capabilities kscribe needs, and the reason each is there (daemonset.yaml says it in a
# comment beside each): bpf() maps and load; bpf_get_current_task_btf; sockops load and cgroup
# attach; /proc/<pid>/exe of other users' processes.
CAPABILITIES = {"BPF", "PERFMON", "NET_ADMIN", "SYS_PTRACE"}


def docs():
    out = []
    for f in sorted(DEPLOY.glob("*.yaml")):
        for d in yaml.safe_load_all(f.read_text()):
            if d:
                out.append((f.name, d))
    return out


def one(kind, name=None):
    found = [d for _, d in docs() if d["kind"] == kind and (name is None or
                                                            d["metadata"]["name"] == name)]
    assert len(found) == 1, "%s %s: %d found" % (kind, name, len(found))
    return found[0]


def seconds(duration):
    total = 0
    for n, unit in re.findall(r"(\d+)(ms|s|m|h)", duration):
        total += int(n) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


@pytest.fixture(scope="module")
def ds():
    return one("DaemonSet", "kscribe")


@pytest.fixture(scope="module")
def pod(ds):
    return ds["spec"]["template"]["spec"]


@pytest.fixture(scope="module")
def container(pod):
    assert len(pod["containers"]) == 1
    return pod["containers"][0]


@pytest.fixture(scope="module")
def config():
    cm = one("ConfigMap", "kscribe-config")
    return yaml.safe_load(cm["data"]["config.yaml"])


def mounts(pod, container):
    """{mountPath: (volume, mount)}"""
    vols = {v["name"]: v for v in pod["volumes"]}
    return {m["mountPath"]: (vols[m["name"]], m) for m in container["volumeMounts"]}


def test_every_manifest_parses_and_is_namespaced_consistently():
    kinds = [d["kind"] for _, d in docs()]
    for k in ("Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap",
              "DaemonSet"):
        assert k in kinds, k
    ns = one("Namespace")["metadata"]["name"]
    for _, d in docs():
        if d["kind"] in ("ServiceAccount", "ConfigMap", "DaemonSet", "Role", "Secret"):
            assert d["metadata"]["namespace"] == ns, d["metadata"]["name"]
    # No Secret with values is committed: credentials are referenced, never stored here.
    assert "Secret" not in kinds


def test_config_validates_and_loads(config, tmp_path):
    jsonschema.validate(config, SCHEMA)
    if os.path.exists(KSCRIBE):
        f = tmp_path / "config.yaml"
        f.write_text(yaml.safe_dump(config))
        res = subprocess.run([KSCRIBE, "config", "check", str(f)], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
    assert config["attribution"] == "required"  # the DaemonSet default (issue 4)
    assert config["metrics"]["enabled"] is True


def test_host_namespaces(pod):
    assert pod["hostNetwork"] is True  # agents reach 127.0.0.1:<port> / the node IP
    assert pod["hostPID"] is True  # /proc/<tgid> for the pids BPF reports
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert pod["serviceAccountName"] == one("ServiceAccount")["metadata"]["name"]


def test_runs_serve_with_the_configmap(pod, container):
    args = container["args"]
    assert args[0] == "serve" and args[args.index("--config") + 1] == "/etc/kscribe/config.yaml"
    vol, m = mounts(pod, container)["/etc/kscribe/config.yaml"]
    assert vol["configMap"]["name"] == "kscribe-config" and m["subPath"] == "config.yaml"


def test_probes_match_the_metrics_listener(container, config):
    port = config["metrics"]["port"]
    live, ready = container["livenessProbe"]["httpGet"], container["readinessProbe"]["httpGet"]
    assert live["path"] == "/healthz" and ready["path"] == "/readyz"
    assert live["port"] == port and ready["port"] == port
    # The kubelet probes the pod IP (the node's, with hostNetwork) unless the probe names a host.
    if config["metrics"]["address"] not in ("0.0.0.0", "::"):
        assert live.get("host") == config["metrics"]["address"] == ready.get("host")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["metrics"] == port
    assert ports["proxy"] == config["listen"]["port"]
    ann = one("DaemonSet")["spec"]["template"]["metadata"]["annotations"]
    assert ann["prometheus.io/port"] == str(port) and ann["prometheus.io/path"] == "/metrics"


def test_host_mounts_attribution_and_storage_need(pod, container, config):
    m = mounts(pod, container)

    def host(path):
        vol, mount = m[path]
        return vol["hostPath"]["path"], mount.get("readOnly", False)

    assert host("/sys/fs/cgroup") == ("/sys/fs/cgroup", True)
    assert host("/sys/kernel/btf") == ("/sys/kernel/btf", True)
    assert "/host/proc" not in m  # hostPID makes the pod's own /proc list the host's processes
    storage_path, ro = host("/var/lib/kscribe")
    assert not ro and storage_path == "/var/lib/kscribe"
    # Every path kscribe writes is on the node's storage, so recordings survive a restart.
    for p in (config["sessions"]["api"]["storage"], config["audit"]["path"],
              config["shipping"]["spool"]):
        assert p.startswith("/var/lib/kscribe/"), p
    # TLS material comes from a Secret mounted where the config looks.
    vol, mount = m["/etc/kscribe/tls"]
    assert "secret" in vol and mount["readOnly"]
    for key in ("ca_cert", "cert", "key"):
        assert config["tls"][key].startswith("/etc/kscribe/tls/")
    # The root filesystem is read-only: whatever else is written goes to these mounts.
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_capabilities_are_exactly_the_justified_set(container):
    sc = container["securityContext"]
    assert not sc.get("privileged", False)
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert set(sc["capabilities"]["add"]) == CAPABILITIES
    assert len(sc["capabilities"]["add"]) == len(CAPABILITIES)
    text = (DEPLOY / "daemonset.yaml").read_text()
    for cap in CAPABILITIES:
        # a comment "# CAP: why" right above each added capability
        assert re.search(r"#\s*%s: \S" % cap, text), "no justification for " + cap
    assert not re.search(r"^\s*privileged:\s*true", text, re.M)
    # What the BPF loader's preflight demands is in the set.
    loader = (SRC / "agent" / "bpf_loader.cc").read_text()
    for cap in ("CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN"):
        assert cap in loader and cap[4:] in CAPABILITIES


def test_grace_period_outlasts_the_drain(pod, config):
    grace = seconds(config["limits"]["shutdown_grace"])
    final_upload = seconds(config["shipping"]["final_upload_timeout"])
    assert pod["terminationGracePeriodSeconds"] > grace
    # and leaves time to close sessions, flush, and make the last upload after the drain
    assert pod["terminationGracePeriodSeconds"] >= grace + final_upload + 5


def test_resources_env_and_credentials(container):
    res = container["resources"]
    for k in ("cpu", "memory"):
        assert k in res["requests"] and k in res["limits"]
    env = {e["name"]: e for e in container["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        ref = env[key]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "kscribe-s3" and ref["key"] == key
        assert "value" not in env[key]


def test_rbac_grants_only_what_kscribe_needs(config):
    roles = {d["metadata"]["name"]: d for _, d in docs() if d["kind"] in ("ClusterRole", "Role")}
    sa = one("ServiceAccount")
    granted = []
    for _, b in docs():
        if b["kind"] not in ("ClusterRoleBinding", "RoleBinding"):
            continue
        if not any(s["kind"] == "ServiceAccount" and s["name"] == sa["metadata"]["name"] and
                   s["namespace"] == sa["metadata"]["namespace"] for s in b["subjects"]):
            continue
        assert b["roleRef"]["name"] in roles, b["roleRef"]
        granted += roles[b["roleRef"]["name"]]["rules"]
    assert granted
    impersonates = False
    for rule in granted:
        for field in ("verbs", "resources", "apiGroups", "resourceNames"):
            assert "*" not in rule.get(field, []), rule
        if rule["resources"] == ["pods"]:
            assert rule["apiGroups"] == [""] and sorted(rule["verbs"]) == ["get", "list", "watch"]
        elif rule["verbs"] == ["impersonate"]:
            impersonates = True
            assert rule["resources"] == ["users"]  # no groups, no serviceaccounts
            assert rule["resourceNames"], "impersonation must name the agent users"
            assert all(n.startswith("kscribe:agent:") for n in rule["resourceNames"])
            agents = {a["name"] for a in config["identity"]["agents"]}
            assert {n.removeprefix("kscribe:agent:") for n in rule["resourceNames"]} == agents
        else:
            pytest.fail("unexpected grant: %r" % rule)
    assert impersonates == bool(config["upstream"]["impersonate"])


def dockerfile_stages():
    stages, cur = [], None
    for line in re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text()).splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("FROM "):
            cur = {"from": line.split()[1], "as": line.split()[-1], "lines": []}
            stages.append(cur)
        else:
            cur["lines"].append(line)
    return stages


def test_dockerfile_is_multi_stage_on_bookworm_slim():
    stages = dockerfile_stages()
    assert [s["from"] for s in stages] == ["debian:bookworm-slim"] * 2
    build, runtime = stages
    text = "\n".join(build["lines"])
    assert "deploy/install-deps.sh" in text and "cmake --build" in text
    rt = "\n".join(runtime["lines"])
    assert re.search(r"COPY --from=%s \S*/kscribe /usr/local/bin/kscribe" % build["as"], rt)
    for tool in ("g++", "cmake", "clang", "libssl-dev", "install-deps"):
        assert tool not in rt, tool  # the runtime stage has no build tools
    assert 'ENTRYPOINT ["/usr/local/bin/kscribe"]' in rt
    assert "USER 0" in rt  # root for BPF, said so


def test_runtime_stage_has_every_library_the_binary_links():
    if not os.path.exists(KSCRIBE):
        pytest.skip("kscribe is not built")
    rt = "\n".join(dockerfile_stages()[1]["lines"])
    # In debian:bookworm-slim already (apt itself needs them).
    base = {"libc6", "libgcc-s1", "libstdc++6", "zlib1g"}
    libs = re.findall(r"=> (\S+) ", subprocess.run(["ldd", KSCRIBE], capture_output=True,
                                                     text=True).stdout)
    assert libs
    for lib in libs:
        real = os.path.realpath(lib)
        owner = None
        for candidate in (lib, real, real.replace("/usr/lib/", "/lib/"),
                          real.replace("/lib/", "/usr/lib/", 1)):
            r = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
            if r.returncode == 0:
                owner = r.stdout.split(":")[0]
                break
        assert owner, "no package owns " + lib
        assert owner in base or re.search(r"\b%s\b" % re.escape(owner), rt), \
            "%s (%s) is missing from the runtime stage" % (owner, lib)


def test_readme_explains_how_agents_reach_kscribe():
    text = (DEPLOY / "README.md").read_text()
    for needle in ("127.0.0.1", "status.hostIP", "hostNetwork", "kubeconfig", "tls-server-name"):
        assert needle in text, needle
