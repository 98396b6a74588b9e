//! The integration-test harness: starts the real stack Portcullis serves (a CNCF distribution
//! registry, dockerd, containerd, skopeo, OpenLDAP slapd) as private processes on loopback, each in its
//! own temp dir, and stops them when their guard is dropped, also when a test panics.
//!
//! Compiled once, as a module of the `it` test crate (`tests/it/main.rs`). Missing tools make tests
//! fail with the Debian package to install (`scripts/install-test-deps.sh`), never skip. Daemons run
//! as root (dockerd and containerd need it). Do not keep a guard in a `static`: statics are never
//! dropped, so the daemon would outlive the test binary.
//!
//! - `process`: `ChildGuard`, ports, readiness, `run` (command + timeout -> `Output`)
//! - `scratch`: short /tmp dirs that unmount and kill leftovers before they are deleted
//! - `certs`: throw-away certificates (rcgen)
//! - `oci`: tiny images built in Rust (tar, gzip, OCI layout)
//! - `registry`, `dockerd`, `containerd`, `skopeo`, `slapd`: one per tool
#![allow(dead_code)]

pub mod certs;
pub mod containerd;
pub mod dockerd;
pub mod oci;
pub mod portcullis;
pub mod process;
pub mod registry;
pub mod scratch;
pub mod skopeo;
pub mod slapd;
