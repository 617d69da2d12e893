"""Validates the files kscribe writes against schemas/ (JSON Schema draft 2020-12).

Usable from pytest (import and call validate_sessions / validate_audit) and from the GoogleTest
unit tests (run as a script: kscribe_schemas.py [--sessions DIR] [--audit FILE] [--spool DIR]
[--audit-head FILE]); exits 1 naming the first invalid file and line.
"""
import argparse
import json
import os
import pathlib
import sys

import jsonschema

SCHEMAS = pathlib.Path(
    os.environ.get("KSCRIBE_SOURCE_DIR", pathlib.Path(__file__).resolve().parents[2])) / "schemas"


def _validator(name):
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _check(validator, obj, where):
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        raise AssertionError(f"{where}: {'/'.join(map(str, e.path))}: {e.message}")


def validate_jsonl(path, schema_name):
    """Validates every line of a JSONL file; returns the parsed lines."""
    validator = _validator(schema_name)
    out = []
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            if not raw.endswith(b"\n"):
                raise AssertionError(f"{path}:{n}: torn line (no newline)")
            obj = json.loads(raw)
            _check(validator, obj, f"{path}:{n}")
            out.append(obj)
    return out


def validate_sessions(directory):
    """Validates every session JSONL and manifest under directory; returns {id: (manifest, lines)}."""
    manifests = _validator("session-manifest")
    result = {}
    for m in sorted(pathlib.Path(directory).rglob("*.manifest.json")):
        obj = json.loads(m.read_text())
        _check(manifests, obj, str(m))
        lines = validate_jsonl(m.parent / obj["jsonl"], "session-record")
        result[obj["session_id"]] = (obj, lines)
    for j in sorted(pathlib.Path(directory).rglob("*.jsonl")):
        sid = j.name[: -len(".jsonl")]
        if sid not in result:
            validate_jsonl(j, "session-record")  # still open: lines must validate all the same
    return result


def validate_audit(path):
    return validate_jsonl(path, "audit-record")


def validate_spool(directory):
    """Validates every pending entry.json of a spool (shipping.spool); returns them, oldest first."""
    validator = _validator("spool-entry")
    out = []
    for e in sorted((pathlib.Path(directory) / "pending").glob("*/entry.json")):
        obj = json.loads(e.read_bytes())
        _check(validator, obj, str(e))
        names = [f["name"] for f in obj["files"]]
        # What the schema cannot say: the files are the session's own, and they are there.
        if names[0] != obj["session_id"] + ".jsonl" or (
                len(names) > 1 and names[1] != obj["session_id"] + ".manifest.json"):
            raise AssertionError(f"{e}: files {names} are not session {obj['session_id']}'s")
        for n in names:
            if not (e.parent / n).is_file():
                raise AssertionError(f"{e}: {n} missing from the entry")
        out.append(obj)
    return out


def validate_audit_head(data):
    """Validates an uploaded audit head object (bytes, str or a path); returns it parsed."""
    if isinstance(data, (str, os.PathLike)) and os.path.exists(data):
        data = pathlib.Path(data).read_bytes()
    obj = json.loads(data)
    _check(_validator("audit-head"), obj, "audit head")
    return obj


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sessions")
    p.add_argument("--audit")
    p.add_argument("--spool")
    p.add_argument("--audit-head")
    a = p.parse_args()
    try:
        n = 0
        if a.sessions:
            n += len(validate_sessions(a.sessions))
        if a.audit:
            n += len(validate_audit(a.audit))
        if a.spool:
            n += len(validate_spool(a.spool))
        if a.audit_head:
            validate_audit_head(a.audit_head)
            n += 1
    except (AssertionError, ValueError) as e:
        print(f"invalid: {e}", file=sys.stderr)
        return 1
    print(f"valid ({n} sessions, audit lines, spool entries, heads)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
