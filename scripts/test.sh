#!/usr/bin/env bash
# Checks formatting and lints, then runs every test: unit, HTTP and end-to-end (real registry, dockerd, containerd, skopeo, slapd,
# PostgreSQL, nginx), after installing the Debian packages the end-to-end tests need when they are missing; then the token
# endpoint's tests once more with every server on PostgreSQL instead of SQLite.
# Usage: scripts/test.sh [extra cargo test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh
# dockerd, containerd and slapd live in sbin directories, not on every PATH.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
# Style is held by CI, not by memory: formatting and every clippy lint, before the tests.
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked "$@"
# The same tests on the other backend: every data dir of the harness gets a fresh PostgreSQL database
# (tests/it/support/binary.rs). The modules left out test SQLite's own file handling.
if (($# == 0)); then
  PORTCULLIS_IT_DATABASE=postgres cargo test --locked --test it -- \
    http_token:: credentials_http:: live_changes:: ldap throttle:: audit:: metrics:: import:: access_check::
fi
