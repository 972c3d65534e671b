#!/usr/bin/env bash
# Install what tests/test_slurm.py needs to run a throwaway local SLURM cluster: Debian's slurm-wlm daemons,
# munge, and shellcheck (it lints launch/slurm/train.sbatch). .ci/run runs this before the tests; on your own
# machine run it once, as root, on a host without systemd (a container or CI: installing there starts no
# services). Where the packages are missing, the SLURM tests skip and say so.
set -euo pipefail
packages=(slurmctld slurmd slurm-client munge shellcheck)
missing=()
for p in "${packages[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
if ((${#missing[@]} == 0)); then
    echo "install_slurm: ${packages[*]} already installed"
    exit 0
fi
fail() {
    echo "install_slurm: error: $*" >&2
    exit 1
}
((EUID == 0)) || fail "installing ${missing[*]} needs root (apt-get)"
command -v apt-get >/dev/null || fail "no apt-get to install ${missing[*]} (Debian or Ubuntu only)"
[[ ! -d /run/systemd/system ]] || fail "this host runs systemd, where the packages would start services: apt-get install ${missing[*]} yourself"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
echo "install_slurm: installed ${missing[*]}"
