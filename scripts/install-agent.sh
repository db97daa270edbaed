#!/usr/bin/env bash
# Installs the agent on this host as a systemd service.
#
#   sudo scripts/install-agent.sh BUNDLE_DIR [AGENT_BINARY]
#
# BUNDLE_DIR is what `aisemble-cp certs issue-agent NAME --out DIR` wrote on the control plane:
# ca.pem, agent.pem, agent.key and agent.toml. AGENT_BINARY defaults to
# target/agent/aisemble-agent (the `agent` profile: `cargo build --profile agent -p aisemble-agent`).
set -euo pipefail

bundle=${1:?usage: install-agent.sh BUNDLE_DIR [AGENT_BINARY]}
binary=${2:-${CARGO_TARGET_DIR:-target}/agent/aisemble-agent}
here=$(cd "$(dirname "$0")" && pwd)

for f in ca.pem agent.pem agent.key agent.toml; do
  [ -f "$bundle/$f" ] || { echo "error: $bundle/$f is missing (run certs issue-agent)" >&2; exit 1; }
done
[ -x "$binary" ] || { echo "error: $binary not found; build it with: cargo build --profile agent -p aisemble-agent" >&2; exit 1; }

id -u aisemble >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin aisemble
install -m 0755 "$binary" /usr/local/bin/aisemble-agent
install -d -m 0750 -o root -g aisemble /etc/aisemble
install -m 0644 "$bundle/ca.pem" "$bundle/agent.pem" /etc/aisemble/
install -m 0640 -g aisemble "$bundle/agent.key" /etc/aisemble/agent.key
# Paths in the bundle's agent.toml are relative to its directory, which is now /etc/aisemble.
install -m 0640 -g aisemble "$bundle/agent.toml" /etc/aisemble/agent.toml
install -d -m 0750 -o aisemble -g aisemble /var/lib/aisemble
/usr/local/bin/aisemble-agent check-config /etc/aisemble/agent.toml
install -m 0644 "$here/aisemble-agent.service" /etc/systemd/system/aisemble-agent.service
systemctl daemon-reload
systemctl enable --now aisemble-agent
echo "Installed. Check it with: aisemble-agent status --config /etc/aisemble/agent.toml"
