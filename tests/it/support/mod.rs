//! The integration-test harness: the real `portcullis` binary (server and CLI), and the stack it
//! serves (a CNCF distribution registry, dockerd, containerd, skopeo, OpenLDAP slapd, PostgreSQL, nginx), each started
//! as a private process on loopback in its own temp dir and stopped when its guard is dropped, also
//! when a test panics.
//!
//! Compiled once, as a module of the `it` test crate (`tests/it/main.rs`). Missing tools make tests
//! fail with the Debian package to install (`scripts/install-test-deps.sh`), never skip. Daemons run
//! as root (dockerd and containerd need it). Do not keep a guard in a `static`: statics are never
//! dropped, so the daemon would outlive the test binary.
//!
//! - `binary`: the `portcullis` binary: `Admin` (a data dir and the CLI), `Portcullis` (`serve`)
//! - `http`: `HttpResponse`, requests through ureq, and `send_raw` for malformed ones
//! - `process`: `ChildGuard`, ports, readiness, `run` (command + timeout -> `Output`)
//! - `scratch`: short /tmp dirs that unmount and kill leftovers before they are deleted, and the
//!   root daemons (dockerd, containerd) that live in one
//! - `certs`: throw-away certificates (rcgen)
//! - `oci`: tiny images built in Rust (tar, gzip, OCI layout)
//! - `registry`, `dockerd`, `containerd`, `skopeo`, `slapd`, `postgres`, `nginx`: one per tool

pub mod binary;
pub mod certs;
pub mod containerd;
pub mod dockerd;
pub mod http;
pub mod kubernetes;
pub mod nginx;
pub mod oci;
pub mod postgres;
pub mod process;
pub mod registry;
pub mod scratch;
pub mod skopeo;
pub mod slapd;
