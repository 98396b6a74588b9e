#!/usr/bin/env bash
# Installs what the integration tests start for real: the registry (CNCF distribution), dockerd + the
# docker CLI, containerd + ctr, skopeo, OpenLDAP's slapd + ldap-utils, PostgreSQL (server and psql),
# nginx (the replicas' load balancer), htpasswd (apache2-utils: the files `import htpasswd` reads),
# strace, sqlite3 (to restore a backup under a running server), prlimit and setpriv (util-linux) and
# curl (the TLS client) (Debian packages).
#
# Idempotent and quick when everything is present: it only looks for the binaries, and calls apt-get
# (update once, then install) when one is missing. Installing never starts a system daemon: slapd is
# preseeded to skip its configuration and a temporary /usr/sbin/policy-rc.d refuses every service start
# (the tests start private daemons of their own).
#
# Only the packages whose binaries are missing get installed: asking apt for docker.io on a machine
# that has Docker's own docker-ce/docker-ce-cli packages would make apt remove them (they conflict).
#
# Usage: scripts/install-test-deps.sh        (as root, or with sudo available)
set -euo pipefail

# binary -> Debian package that provides it
declare -A PACKAGE_OF=(
  [docker-registry]=docker-registry
  [dockerd]=docker.io
  [docker]=docker.io
  [skopeo]=skopeo
  [containerd]=containerd
  [ctr]=containerd
  [slapd]=slapd
  [ldapadd]=ldap-utils
  [strace]=strace
  [sqlite3]=sqlite3
  [prlimit]=util-linux
  [curl]=curl
  [psql]=postgresql-client
  [setpriv]=util-linux
  [nginx]=nginx
  [htpasswd]=apache2-utils
)
BINARIES=(docker-registry dockerd docker skopeo containerd ctr slapd ldapadd strace sqlite3 prlimit curl psql setpriv nginx htpasswd)

# slapd and dockerd live in /usr/sbin, which is not on every user's PATH.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

missing_packages=()
for binary in "${BINARIES[@]}"; do
  if path=$(command -v "$binary"); then
    echo "found   $binary: $path"
  else
    package=${PACKAGE_OF[$binary]}
    echo "missing $binary (Debian package $package)"
    if [[ " ${missing_packages[*]} " != *" $package "* ]]; then
      missing_packages+=("$package")
    fi
  fi
done

# PostgreSQL's server binaries are not on PATH (/usr/lib/postgresql/<version>/bin).
if compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null; then
  echo "found   postgres: $(compgen -G "/usr/lib/postgresql/*/bin/postgres" | tail -1)"
else
  echo "missing postgres (Debian package postgresql)"
  missing_packages+=(postgresql)
fi

# The Kubernetes schemas the example manifests are validated against come from PyPI.
if command -v kubernetes-validate >/dev/null; then
  echo "found   kubernetes-validate: $(command -v kubernetes-validate)"
else
  echo "missing kubernetes-validate (PyPI package kubernetes-validate): installing it"
  python3 -m pip install --quiet kubernetes-validate
fi

if ((${#missing_packages[@]} == 0)); then
  echo "all test dependencies are present"
  exit 0
fi

if ((EUID == 0)); then
  SUDO=()
elif command -v sudo >/dev/null; then
  SUDO=(sudo)
else
  echo "error: installing ${missing_packages[*]} needs root (run as root or install sudo)" >&2
  exit 1
fi

# Refuse service starts while installing; remove the guard afterwards only if this script created it.
POLICY=/usr/sbin/policy-rc.d
created_policy=false
remove_policy() {
  if $created_policy; then
    echo "removing the temporary $POLICY"
    "${SUDO[@]}" rm -f "$POLICY"
  fi
}
trap remove_policy EXIT
if [[ ! -e $POLICY ]]; then
  echo "installing a temporary $POLICY (exit 101: no service is started while installing)"
  printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$POLICY" >/dev/null
  "${SUDO[@]}" chmod 755 "$POLICY"
  created_policy=true
else
  echo "keeping the existing $POLICY"
fi

if [[ " ${missing_packages[*]} " == *" slapd "* ]]; then
  echo "preseeding slapd: slapd/no_configuration=true (no system directory is created)"
  echo "slapd slapd/no_configuration boolean true" | "${SUDO[@]}" debconf-set-selections
fi

echo "apt-get update"
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
echo "apt-get install ${missing_packages[*]}"
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
  "${missing_packages[@]}"

# The docker CLI on PATH may be newer than docker.io's daemon (for example a /usr/local/bin/docker):
# both versions work against it, so it is left alone.
still_missing=()
for binary in "${BINARIES[@]}"; do
  command -v "$binary" >/dev/null || still_missing+=("$binary")
done
if ((${#still_missing[@]} > 0)); then
  echo "error: still missing after install: ${still_missing[*]}" >&2
  exit 1
fi
echo "all test dependencies are present"
