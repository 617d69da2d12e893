"""A real single-node OpenStack Swift with the s3api middleware, for shipping tests.

Everything lives in a temp dir: rings (one replica, part power 6), server configs, storage on a
plain directory (mount_check false), logs. Services bind free loopback ports. tempauth user
`test:tester` / `testing` is the S3 access key / secret. Uses the system's /etc/swift/swift.conf
only for its hash path prefix/suffix and storage policy (Swift reads that path unconditionally).

With tls=(cert_file, key_file, ca_file) the proxy serves HTTPS (Swift wraps its listening socket
when cert_file is in [DEFAULT]); make_test_pki() makes such a CA and server certificate.
running_swift() is the start-up (with bucket) and cleanup the test modules share.

Run by hand: /usr/bin/python3 swift_util.py DIR   (starts, prints the endpoint, waits for ^C)
"""

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request

ACCESS_KEY = "test:tester"
SECRET_KEY = "testing"
REGION = "us-east-1"
SERVERS = ("account", "container", "object")


def have_swift():
    missing = [b for b in ("/usr/bin/swift-proxy-server", "/usr/bin/swift-object-server",
                           "/usr/bin/swift-container-server", "/usr/bin/swift-account-server",
                           "/usr/bin/swift-ring-builder", "/usr/bin/aws")
               if not os.path.exists(b)]
    if not os.path.exists("/etc/swift/swift.conf"):
        missing.append("/etc/swift/swift.conf")
    return missing


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_test_pki(directory, name="test"):
    """A throwaway CA and a server certificate for 127.0.0.1 (IP SAN) signed by it, made with
    openssl. Returns (cert_file, key_file, ca_file)."""
    os.makedirs(directory, exist_ok=True)
    ca_key, ca_crt = f"{name}-ca.key", f"{name}-ca.crt"
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", ca_key, "-out", ca_crt, "-days", "2", "-subj",
            f"/CN=kscribe {name} CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}-server.key", "-out", f"{name}-server.csr", "-subj",
            "/CN=127.0.0.1", cwd=directory)
    with open(os.path.join(directory, f"{name}-ext.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
                "basicConstraints=CA:FALSE\n")
    openssl("x509", "-req", "-in", f"{name}-server.csr", "-CA", ca_crt, "-CAkey", ca_key,
            "-CAcreateserial", "-out", f"{name}-server.crt", "-days", "2", "-extfile",
            f"{name}-ext.cnf", cwd=directory)
    return tuple(os.path.join(directory, n)
                 for n in (f"{name}-server.crt", f"{name}-server.key", ca_crt))


class Swift:
    def __init__(self, base, tls=None):
        self.base = os.path.abspath(base)
        self.conf = os.path.join(self.base, "etc")
        self.devices = os.path.join(self.base, "srv")
        self.logs = os.path.join(self.base, "log")
        self.ports = {name: free_port() for name in SERVERS + ("proxy",)}
        self.procs = {}
        self.tls = tls  # (cert_file, key_file, ca_file) or None
        scheme = "https" if tls else "http"
        self.endpoint = f"{scheme}://127.0.0.1:{self.ports['proxy']}"

    # -- setup ---------------------------------------------------------------------------------
    def setup(self):
        for d in (self.conf, os.path.join(self.devices, "d1"), self.logs,
                  os.path.join(self.base, "run")):
            os.makedirs(d, exist_ok=True)
        user = "root" if os.geteuid() == 0 else os.environ.get("USER", "nobody")
        common = (f"[DEFAULT]\nbind_ip = 127.0.0.1\nuser = {user}\nswift_dir = {self.conf}\n"
                  f"devices = {self.devices}\nmount_check = false\nworkers = 0\n"
                  "log_level = INFO\n")
        for name in SERVERS:
            port = self.ports[name]
            body = common + f"bind_port = {port}\n\n[pipeline:main]\npipeline = {name}-server\n\n"
            body += f"[app:{name}-server]\nuse = egg:swift#{name}\n"
            if name == "object":
                body += "\n[object-replicator]\n[object-updater]\n[object-auditor]\n"
            else:
                body += f"\n[{name}-replicator]\n[{name}-auditor]\n"
                if name == "container":
                    body += "[container-updater]\n[container-sync]\n"
            self._write(f"{name}-server.conf", body)
            builder = os.path.join(self.conf, f"{name}.builder")
            subprocess.run(["swift-ring-builder", builder, "create", "6", "1", "0"], check=True,
                           capture_output=True)
            subprocess.run(["swift-ring-builder", builder, "add",
                            f"r1z1-127.0.0.1:{port}/d1", "1"], check=True, capture_output=True)
            r = subprocess.run(["swift-ring-builder", builder, "rebalance"], capture_output=True)
            if r.returncode not in (0, 1):  # 1 is a warning (e.g. balance) with rings written
                raise RuntimeError(r.stdout.decode() + r.stderr.decode())
        # s3api before tempauth (it hands tempauth the S3 signature to check); slo after both for
        # multipart completion. tempauth insists on a memcache client object being present; it
        # points at a port nobody listens on (each lookup misses, which tempauth tolerates), so
        # no memcached is needed.
        tls = f"cert_file = {self.tls[0]}\nkey_file = {self.tls[1]}\n" if self.tls else ""
        self._write("proxy-server.conf", common + tls +
                    f"bind_port = {self.ports['proxy']}\n\n"
                    "[pipeline:main]\n"
                    "pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats "
                    "s3api tempauth copy slo dlo proxy-logging proxy-server\n\n"
                    "[app:proxy-server]\nuse = egg:swift#proxy\naccount_autocreate = true\n\n"
                    "[filter:catch_errors]\nuse = egg:swift#catch_errors\n"
                    "[filter:gatekeeper]\nuse = egg:swift#gatekeeper\n"
                    "[filter:healthcheck]\nuse = egg:swift#healthcheck\n"
                    "[filter:proxy-logging]\nuse = egg:swift#proxy_logging\n"
                    "[filter:listing_formats]\nuse = egg:swift#listing_formats\n"
                    "[filter:copy]\nuse = egg:swift#copy\n"
                    "[filter:cache]\nuse = egg:swift#memcache\n"
                    f"memcache_servers = 127.0.0.1:{free_port()}\n"
                    "[filter:slo]\nuse = egg:swift#slo\n"
                    "[filter:dlo]\nuse = egg:swift#dlo\n"
                    f"[filter:s3api]\nuse = egg:swift#s3api\nlocation = {REGION}\n"
                    "[filter:tempauth]\nuse = egg:swift#tempauth\n"
                    f"user_test_tester = {SECRET_KEY} .admin\n")

    def _write(self, name, body):
        with open(os.path.join(self.conf, name), "w") as f:
            f.write(body)

    # -- processes -----------------------------------------------------------------------------
    def start(self, names=SERVERS + ("proxy",)):
        for name in names:
            if name in self.procs and self.procs[name].poll() is None:
                continue
            log = open(os.path.join(self.logs, f"{name}.log"), "ab")
            self.procs[name] = subprocess.Popen(
                [f"/usr/bin/swift-{name}-server", os.path.join(self.conf, f"{name}-server.conf"), "-v"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.wait_ready(names)

    def wait_ready(self, names, timeout=30):
        deadline = time.time() + timeout
        for name in names:
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", self.ports[name]), timeout=1):
                        break
                except OSError:
                    if self.procs[name].poll() is not None:
                        raise RuntimeError(f"swift {name} exited: " + self.log(name)[-2000:])
                    if time.time() > deadline:
                        raise RuntimeError(f"swift {name} did not listen: " + self.log(name)[-2000:])
                    time.sleep(0.1)
        if "proxy" in names:
            while True:
                try:
                    ctx = ssl.create_default_context(cafile=self.tls[2]) if self.tls else None
                    with urllib.request.urlopen(self.endpoint + "/healthcheck", timeout=2,
                                                context=ctx) as r:
                        if r.status == 200:
                            return
                except OSError:
                    pass
                if time.time() > deadline:
                    raise RuntimeError("swift proxy not healthy: " + self.log("proxy")[-2000:])
                time.sleep(0.1)

    def stop(self, names=("proxy",) + SERVERS):
        for name in names:
            p = self.procs.get(name)
            if p and p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()

    def log(self, name):
        try:
            with open(os.path.join(self.logs, f"{name}.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    # -- AWS CLI -------------------------------------------------------------------------------
    def aws_env(self, tmp):
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
                   AWS_DEFAULT_REGION=REGION, AWS_CONFIG_FILE=os.path.join(tmp, "aws-config"),
                   AWS_SHARED_CREDENTIALS_FILE=os.path.join(tmp, "aws-credentials"),
                   AWS_EC2_METADATA_DISABLED="true", HOME=tmp)
        with open(env["AWS_CONFIG_FILE"], "w") as f:
            # Swift's s3api wants path-style addressing.
            f.write("[default]\ns3 =\n    addressing_style = path\n")
        return env

    def aws(self, tmp, *args, check=True):
        tls = ["--ca-bundle", self.tls[2]] if self.tls else []
        p = subprocess.run(["/usr/bin/aws", "--endpoint-url", self.endpoint, *tls, *args],
                           capture_output=True, env=self.aws_env(tmp))
        if check and p.returncode != 0:
            raise AssertionError(f"aws {args}: {p.stderr.decode()}")
        return p


@contextlib.contextmanager
def running_swift(base, bucket, tls=None):
    """A started Swift with `bucket` made, stopped (every server, by pid) on exit."""
    s = Swift(base, tls=tls)
    try:
        s.setup()
        s.start()
        s.aws(base, "s3", "mb", f"s3://{bucket}")
        yield s
    finally:
        s.stop()


if __name__ == "__main__":
    base = sys.argv[1] if len(sys.argv) > 1 else "/tmp/kscribe-swift"
    shutil.rmtree(base, ignore_errors=True)
    s = Swift(base)
    s.setup()
    s.start()
    print(s.endpoint, flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        s.stop()
