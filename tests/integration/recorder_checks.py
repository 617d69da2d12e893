"""Checks shared by the recorder's integration tests: every file kscribe wrote validates, the
audit chain verifies with `kscribe audit verify`, and tampering with any line makes it fail."""

import json
import os
import pathlib
import shutil
import subprocess

import kscribe_schemas


def audit_verify(binary, path, *extra):
    p = subprocess.run([binary, "audit", "verify", *extra, str(path)], capture_output=True,
                       text=True, timeout=60)
    return p.returncode, p.stdout + p.stderr


def check_tampering(binary, audit_path, workdir):
    """Edit, delete, insert and reorder each fail verify naming a line; returns nothing."""
    lines = pathlib.Path(audit_path).read_text().splitlines(keepends=True)
    assert len(lines) >= 3
    cases = {
        "edit": lambda l: [l[0], l[1].replace('"status":200', '"status":201', 1)
                           if '"status":200' in l[1] else l[1].replace('"tier":', '"tier":4,"x":', 1),
                           *l[2:]],
        "delete": lambda l: [l[0], *l[2:]],
        "insert": lambda l: [l[0], l[1], l[0], *l[2:]],
        "reorder": lambda l: [l[0], l[2], l[1], *l[3:]],
    }
    for name, change in cases.items():
        tampered = os.path.join(workdir, "audit-%s.jsonl" % name)
        with open(tampered, "w") as f:
            f.writelines(change(list(lines)))
        rc, out = audit_verify(binary, tampered)
        assert rc == 1, "%s: verify passed a tampered log: %s" % (name, out)
        assert ": line " in out, out


def files_written(*roots):
    for root in roots:
        for p in pathlib.Path(root).rglob("*"):
            if p.is_file():
                yield p


def assert_nowhere(value, *roots):
    """A fake secret appears in no file kscribe wrote, in plain or base64 form."""
    import base64
    forms = [value.encode(), base64.b64encode(value.encode()),
             base64.b64encode(base64.b64encode(value.encode()))]
    for p in files_written(*roots):
        data = p.read_bytes()
        for form in forms:
            assert form not in data, "%s holds %r" % (p, form)


def sessions(storage):
    return kscribe_schemas.validate_sessions(storage)
