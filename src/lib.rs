//! Portcullis: the auth layer for an unmodified container registry.
//!
//! The code follows a token request from the network to the signed answer:
//!
//! - [`server`]: the hyper listener, routing, request limits, `GET /token` and the OAuth2
//!   `POST /token` as thin adapters of one token-request pipeline, and the registry's error JSON;
//! - [`authn`]: who is asking: remembered logins, personal access tokens, robots, refresh
//!   tokens, database passwords (argon2id) and LDAP / Active Directory, or anonymous;
//! - [`access`]: what the database says of that principal now (disabled, system admin, its role
//!   in each project), held in memory and current with every commit;
//! - [`authz`]: the request's scopes, and what the principal may have of them: Harbor's project
//!   roles as registry actions, capped by a credential's own list;
//! - [`token`]: the signed JWT and its JSON answer.
//!
//! Beside the request path sit [`store`] (persistent state behind one backend-neutral trait; the
//! queries written once for SQLite and PostgreSQL, with the migrations under `schema/`), [`config`] (the TOML file,
//! environment overrides and every default in one place) and [`cli`] (the `portcullis` command
//! line: users, projects, members, robots, refresh and personal tokens, keys, LDAP checks),
//! [`import`] (other servers' users, projects and members for `portcullis import`),
//! [`metrics`] (the Prometheus counters every layer adds to), [`audit`] (the decision trail) and
//! [`logging`] (the subscriber and its reloadable filter). Two small shared vocabularies:
//! [`dn`] (LDAP distinguished names and group keys) and [`text`] (clipping what clients send, and
//! RFC 3339 times). The load benchmark is a separate binary,
//! `src/bin/portcullis-bench/`.
//!
//! Dependencies point one way: `cli -> server -> authn -> store -> access -> authz` (and
//! `cli -> import -> {authn, store}`), with
//! `config`, `metrics`, `dn` and `text` usable by all and `store` importing nothing from `authn` or `server`.

pub mod access;
pub mod audit;
pub mod authn;
pub mod authz;
pub mod cli;
pub mod config;
pub mod dn;
pub mod import;
pub mod logging;
pub mod metrics;
pub mod server;
pub mod store;
pub mod text;
pub mod tls_client;
pub mod token;
