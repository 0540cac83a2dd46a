#!/usr/bin/env bash
# Install, start a local Ray cluster (if none runs), serve the digits demo graph on
# http://127.0.0.1:8000/digits, and score it on the held-out digits.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/setup.sh
python -m graphs.cluster start
eval "$(python -m graphs.cluster env)"   # RAY_AUTH_MODE=token etc. for the serve CLI
serve deploy configs/digits.yaml
python -m graphs.examples.digits_client --wait 180
cat <<MSG

The digits graph is serving on http://127.0.0.1:8000/digits (docs: /digits/docs).
  curl -s -X POST localhost:8000/digits/predict -H 'content-type: application/json' \\
       -d '{"inputs": {"input": [[0,0,5,13,9,1,0,0,0,0,13,15,10,15,5,0,0,3,15,2,0,11,8,0,0,4,12,0,0,8,8,0,0,5,8,0,0,9,8,0,0,4,11,0,1,12,7,0,0,2,14,5,10,12,0,0,0,0,6,13,10,0,0,0]]}}'
  export RAY_AUTH_MODE=token; serve status     # one deployment per node
  python -m graphs.cluster stop                 # stop the cluster
MSG
