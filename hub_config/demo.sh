#!/usr/bin/env bash
# `make demo`: the development OpenID provider, then the hub on http://127.0.0.1:8000.
# Ctrl-C stops both (the provider by its PID). State: .demo/ (make clean removes it).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
STATE=${HUB_EXT_DEMO_DIR:-$PWD/.demo}
mkdir -p "$STATE"

# the key that encrypts auth state (refresh tokens, claims) in the hub's database
if [ ! -s "$STATE/crypt_key" ]; then
  (umask 077 && "$BIN/python" -c "import secrets; print(secrets.token_hex(32))" > "$STATE/crypt_key")
fi
JUPYTERHUB_CRYPT_KEY=$(cat "$STATE/crypt_key")
export JUPYTERHUB_CRYPT_KEY HUB_EXT_DEMO_DIR="$STATE"

"$BIN/hub-ext" check-catalog hub_config/courses.yaml
echo

# the analytics showcase's data: OULAD (CC BY 4.0, see ../shared/data/README.md), imported
# once into the demo's event store (the import is idempotent; this only skips the wait)
OULAD=${HUB_EXT_OULAD:-../shared/data/oulad}
if [ -f "$STATE/events.sqlite.oulad" ]; then
  :
elif [ -f "$OULAD/studentInfo.csv" ]; then
  echo "Importing OULAD into the demo's event store (once; about a minute)..."
  "$BIN/hub-ext" import oulad "$OULAD" --db "sqlite:///$STATE/events.sqlite" && touch "$STATE/events.sqlite.oulad"
else
  echo "No OULAD data at $OULAD (set HUB_EXT_OULAD): the analytics APIs will answer, over an empty store."
fi
echo
"$BIN/python" -m dev_idp.launch start --state-dir "$STATE/idp" \
  --redirect-uri http://127.0.0.1:8000/hub/oauth_callback
trap '"$BIN/python" -m dev_idp.launch stop --state-dir "$STATE/idp"' EXIT

echo
echo "Demo hub: http://127.0.0.1:8000  (log in with an account above; Ctrl-C stops the demo)"
echo "  alice (learner): open Data analysis with Python, then in its terminal:"
echo "      python -m hub_ext_assignments fetch week1   (answer it, then)   ... submit week1"
echo "  tina (teacher):  http://127.0.0.1:8000/services/grading/courses/ds101/gradebook"
echo
"$BIN/jupyterhub" -f hub_config/demo_config.py
