#!/usr/bin/env bash
# Regenerates supervisor/_proto from containerd's own .proto files, as Debian's
# golang-github-containerd-{containerd,cgroups}-dev packages install them.
#
#   protos/generate.sh OUT_DIR      (make protos calls it with supervisor/_proto)
#
# The generator versions are pinned in pyproject.toml's `protos` extra; a test
# regenerates into a temporary directory and diffs against the committed copy.
set -euo pipefail
out=${1:?usage: generate.sh OUT_DIR}
here=$(cd "$(dirname "$0")" && pwd)
G=${GOCODE:-/usr/share/gocode/src}
C=$G/github.com/containerd/containerd
python=${PYTHON:-python3}

# The protoc plugin is looked up on PATH; it lives next to the interpreter.
PATH="$(dirname "$(command -v "$python")"):$PATH"

files=(
  "$C/api/services/containers/v1/containers.proto"
  "$C/api/services/tasks/v1/tasks.proto"
  "$C/api/services/events/v1/events.proto"
  "$C/api/services/version/v1/version.proto"
  "$C/api/services/content/v1/content.proto"
  "$C/api/services/images/v1/images.proto"
  "$C/api/services/leases/v1/leases.proto"
  "$C/api/services/snapshots/v1/snapshots.proto"
  "$C/api/services/diff/v1/diff.proto"
  "$C/api/events/task.proto"
  "$C/api/events/container.proto"
  "$C/api/types/task/task.proto"
  "$C/api/types/mount.proto"
  "$C/api/types/metrics.proto"
  "$C/api/types/descriptor.proto"
  "$C/runtime/v2/runc/options/oci.proto"
  "$C/runtime/linux/runctypes/runc.proto"
  "$G/github.com/containerd/cgroups/stats/v1/metrics.proto"
  "$G/github.com/containerd/cgroups/v2/stats/metrics.proto"
  "$here/extra/grpc/health/v1/health.proto"
)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$python" -m grpc_tools.protoc \
  -I"$G" -I"$G/github.com/gogo/protobuf" -I"$G/github.com/gogo/protobuf/protobuf" -I"$here/extra" \
  --python_betterproto2_out="$tmp" \
  --python_betterproto2_opt=client_generation=async \
  "${files[@]}" >/dev/null 2>"$tmp.log" || { cat "$tmp.log" >&2; exit 1; }
# betterproto2-compiler 0.10.1 keeps its template's
# `from google.protobuf.descriptor import Descriptor` wherever a message is itself
# named Descriptor (containerd.types), which would pull in Google's protobuf
# runtime for nothing; the class defined below it shadows the import anyway.
grep -rl '^from google.protobuf.descriptor import' "$tmp" | xargs -r sed -i '/^from google.protobuf.descriptor import/d'
# The well-known types import dateutil for one JSON path (Timestamp.from_dict
# of a string), which the library never takes; importing it there instead of
# at module level keeps it out of every process that talks to containerd.
wkt="$tmp/google/protobuf/__init__.py"
sed -i '/^import dateutil.parser$/d' "$wkt"
sed -i 's/^\( *\)dt = dateutil.parser.isoparse(value)$/\1import dateutil.parser\n\n\1dt = dateutil.parser.isoparse(value)/' "$wkt"
grep -q '^ *import dateutil.parser$' "$wkt" || { echo "generate.sh: dateutil patch did not apply" >&2; exit 1; }
# The generator also writes a py.typed of its own; the package root has one.
rm -f "$tmp/py.typed"
rm -rf "$out"
mkdir -p "$(dirname "$out")"
cp -r "$tmp" "$out"
