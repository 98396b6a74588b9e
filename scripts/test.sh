#!/usr/bin/env bash
# Checks formatting and lints, then runs every test: unit, HTTP and end-to-end (real registry, dockerd, containerd, skopeo, slapd),
# after installing the Debian packages the end-to-end tests need when they are missing.
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
