#!/usr/bin/env python3
"""Independent check of Easel's C2PA Content Credentials with c2pa-python.

Reads each FILE with the C2PA reference SDK's Python binding (pinned in
.ci/requirements.txt) and prints one JSON verdict per line:

    {"file": ..., "verdict": "valid" | "invalid" | "no_manifest" | "error",
     "validation_state": "Valid" | "Trusted" | "Invalid" | null,
     "claim_generator": ..., "actions": [...], "digital_source_type": ...,
     "soft_bindings": [{"alg": ..., "value": ...}],
     "failures": [status codes], "error": message or null}

"valid" means the SDK's validation state is Valid or Trusted. With
--trust-anchor CA.pem the CA is added as a user trust anchor, so Easel's
generated chain reads as Trusted.

Setup (developers): python3 -m venv .venv && .venv/bin/pip install -r .ci/requirements.txt
Usage: verify.py [--trust-anchor CA.pem] FILE...
Exit status: 0 when every file was examined (whatever the verdicts), 2 on usage errors.
"""

import argparse
import json
import sys

import c2pa

MIME = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
}


def mime_of(path):
    lower = path.lower()
    for ext, mime in MIME.items():
        if lower.endswith(ext):
            return mime
    return None


def context_for(anchor_pem):
    if anchor_pem is None:
        return c2pa.Context()
    settings = c2pa.Settings.from_dict({"trust": {"user_anchors": anchor_pem}})
    return c2pa.Context(settings=settings)


def summarize(store):
    active = store.get("manifests", {}).get(store.get("active_manifest") or "", {})
    actions, source_type = [], None
    for assertion in active.get("assertions", []):
        if assertion.get("label", "").startswith("c2pa.actions"):
            for action in assertion.get("data", {}).get("actions", []):
                actions.append(action.get("action"))
                source_type = source_type or action.get("digitalSourceType")
    generator = None
    infos = active.get("claim_generator_info") or []
    if infos:
        generator = " ".join(str(infos[0].get(k, "")) for k in ("name", "version")).strip()
    return generator, actions, source_type


def soft_bindings(store):
    """Every soft binding (watermark or fingerprint) of the active manifest."""
    active = store.get("manifests", {}).get(store.get("active_manifest") or "", {})
    found = []
    for assertion in active.get("assertions", []):
        if assertion.get("label", "").startswith("c2pa.soft-binding"):
            data = assertion.get("data", {})
            for block in data.get("blocks", []):
                found.append({"alg": data.get("alg"), "value": block.get("value")})
    return found


def failures_of(store):
    results = store.get("validation_results") or {}
    active = results.get("activeManifest") or {}
    codes = [s.get("code") for s in active.get("failure", [])]
    codes += [s.get("code") for s in store.get("validation_status") or [] if s.get("code") not in codes]
    return [c for c in codes if c]


def verify(path, context):
    out = {
        "file": path,
        "verdict": "error",
        "validation_state": None,
        "claim_generator": None,
        "actions": [],
        "digital_source_type": None,
        "soft_bindings": [],
        "failures": [],
        "error": None,
    }
    mime = mime_of(path)
    try:
        with open(path, "rb") as stream:
            reader = c2pa.Reader.try_create(mime, stream, None, context)
            if reader is None:
                out["verdict"] = "no_manifest"
                return out
            with reader:
                store = json.loads(reader.json())
                state = reader.get_validation_state()
    except Exception as exc:  # the SDK raises C2paError subclasses on damaged manifests
        out["error"] = f"{type(exc).__name__}: {exc}"
        return out
    out["validation_state"] = state
    out["claim_generator"], out["actions"], out["digital_source_type"] = summarize(store)
    out["soft_bindings"] = soft_bindings(store)
    out["failures"] = failures_of(store)
    out["verdict"] = "valid" if state in ("Valid", "Trusted") else "invalid"
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trust-anchor", help="PEM file of a CA to trust (Easel's generated ca.pem)")
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    anchor = None
    if args.trust_anchor:
        with open(args.trust_anchor, encoding="utf-8") as f:
            anchor = f.read()
    context = context_for(anchor)
    for path in args.files:
        print(json.dumps(verify(path, context)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
