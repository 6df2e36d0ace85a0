"""Validates the output of `helm template` (deploy/helm/check.sh).

    python validate.py RENDERED.yaml KUBE_VERSION...

- Every object of a built-in kind is checked against Kubernetes' OpenAPI
  schema of each version given, strictly (an unknown field is an error),
  with kubernetes-validate.
- KEDA's ScaledObject has no schema there. It is checked against
  SCALED_OBJECT below: the part of KEDA 2's CRD (keda.sh_scaledobjects.yaml,
  scaledobjects.keda.sh v1alpha1) this chart writes, unknown fields refused;
  and its target must be a rendered Deployment with no `replicas` of its own
  and no other autoscaler.
- Any other kind without a schema is an error, not a skip.
- The ConfigMap's easel.toml must parse as TOML, and every pod's
  terminationGracePeriodSeconds must exceed its server.shutdown_grace_seconds
  (a worker drains its batch within that grace after SIGTERM).

Exits 1 naming every problem found.
"""

import sys
import tomllib

import jsonschema
import yaml
from kubernetes_validate import utils as kv

INT = {"type": "integer"}
STR = {"type": "string"}

SCALED_OBJECT = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["scaleTargetRef", "triggers"],
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name"],
                    "properties": {"apiVersion": STR, "kind": STR, "name": STR,
                                   "envSourceContainerName": STR},
                },
                "pollingInterval": INT,
                "cooldownPeriod": INT,
                "initialCooldownPeriod": INT,
                "idleReplicaCount": INT,
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "fallback": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["failureThreshold", "replicas"],
                    "properties": {"failureThreshold": INT, "replicas": INT, "behavior": STR},
                },
                "advanced": {"type": "object"},
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["type", "metadata"],
                        "properties": {
                            "type": STR,
                            "name": STR,
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                            "useCachedMetrics": {"type": "boolean"},
                            "metadata": {"type": "object", "additionalProperties": STR},
                            "authenticationRef": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {"name": STR, "kind": STR},
                            },
                        },
                    },
                },
            },
        },
    },
}

# What KEDA's Prometheus scaler needs in a trigger's metadata.
PROMETHEUS_METADATA = ("serverAddress", "query", "threshold")


def name(obj):
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def check_scaled_object(obj, objects):
    problems = [f"{name(obj)}: {e.json_path}: {e.message}"
                for e in jsonschema.Draft202012Validator(SCALED_OBJECT).iter_errors(obj)]
    if problems:
        return problems
    spec = obj["spec"]
    if spec.get("minReplicaCount", 0) > spec.get("maxReplicaCount", 100):
        problems.append(f"{name(obj)}: minReplicaCount above maxReplicaCount")
    for trigger in spec["triggers"]:
        if trigger["type"] != "prometheus":
            continue
        meta = trigger["metadata"]
        missing = [k for k in PROMETHEUS_METADATA if not meta.get(k)]
        if missing:
            problems.append(f"{name(obj)}: prometheus trigger without {', '.join(missing)}")
        for key in ("threshold", "activationThreshold"):
            try:
                float(meta.get(key, "0"))
            except ValueError:
                problems.append(f"{name(obj)}: {key} {meta[key]!r} is not a number")
    ref = spec["scaleTargetRef"]
    if ref.get("kind", "Deployment") != "Deployment":
        return problems
    target = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == ref["name"]]
    if not target:
        problems.append(f"{name(obj)}: scales Deployment/{ref['name']}, which the chart does not render")
    elif "replicas" in target[0]["spec"]:
        problems.append(f"{name(obj)}: Deployment/{ref['name']} sets replicas, which would fight KEDA")
    for hpa in objects:
        if hpa["kind"] == "HorizontalPodAutoscaler" and hpa["spec"]["scaleTargetRef"]["name"] == ref["name"]:
            problems.append(f"{name(obj)}: {name(hpa)} also scales Deployment/{ref['name']}")
    return problems


def check_config_and_grace(objects):
    problems = []
    configs = {}
    for obj in objects:
        if obj["kind"] == "ConfigMap" and "easel.toml" in obj.get("data", {}):
            try:
                configs[obj["metadata"]["name"]] = tomllib.loads(obj["data"]["easel.toml"])
            except tomllib.TOMLDecodeError as e:
                problems.append(f"{name(obj)}: easel.toml is not TOML: {e}")
    for obj in objects:
        if obj["kind"] != "Deployment":
            continue
        pod = obj["spec"]["template"]["spec"]
        for volume in pod.get("volumes", []):
            config = configs.get(volume.get("configMap", {}).get("name"))
            if config is None:
                continue
            grace = config.get("server", {}).get("shutdown_grace_seconds", 30)
            if pod.get("terminationGracePeriodSeconds", 30) <= grace:
                problems.append(f"{name(obj)}: terminationGracePeriodSeconds "
                                f"{pod.get('terminationGracePeriodSeconds', 30)} does not exceed "
                                f"server.shutdown_grace_seconds {grace}")
    return problems


def main():
    path, versions = sys.argv[1], sys.argv[2:]
    with open(path) as f:
        objects = [o for o in yaml.safe_load_all(f) if o]
    problems = []
    for obj in objects:
        if obj.get("apiVersion") == "keda.sh/v1alpha1" and obj.get("kind") == "ScaledObject":
            found = check_scaled_object(obj, objects)
            problems += found
            print(f"{'FAIL' if found else 'ok  '} {name(obj)} (KEDA subset schema)")
            continue
        found = []
        for version in versions:
            try:
                kv.validate(obj, version, strict=True)
            except kv.ValidationError as e:
                where = ".".join(str(p) for p in e.path)
                found.append(f"{name(obj)}: Kubernetes {version}: {where}: {e.message}")
            except (kv.SchemaNotFoundError, kv.InvalidSchemaError) as e:
                found.append(f"{name(obj)}: no schema to check it against ({e.message})")
        problems += found
        print(f"{'FAIL' if found else 'ok  '} {name(obj)} (Kubernetes {', '.join(versions)}, strict)")
    problems += check_config_and_grace(objects)
    for p in problems:
        print(f"ERROR {p}")
    print(f"{path}: {len(objects)} objects, {len(problems)} problems")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
