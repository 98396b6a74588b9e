//! Portcullis: the auth layer for an unmodified container registry.
//!
//! The code follows a token request from the network to the signed answer:
//!
//! - [`server`]: the hyper listener, routing, request limits, `GET /token`, the OAuth2
//!   `POST /token`, and the registry's error JSON;
//! - [`authn`]: who is asking: remembered logins, personal access tokens, robots, refresh
//!   tokens, database passwords (argon2id) and LDAP / Active Directory, or anonymous;
//! - [`authz`]: what they may do: Harbor's project roles as registry actions, capped by a
//!   credential's own list;
//! - [`token`]: the protocol itself: scopes, claims, signing keys and the JSON answer.
//!
//! Beside the request path sit [`store`] (SQLite, with the SQL under `schema/`, and the in-memory
//! snapshot of accounts and roles that follows every commit), [`config`] (the TOML file,
//! environment overrides and every default in one place) and [`cli`] (the `portcullis` command
//! line: users, projects, members, robots, tokens, keys, LDAP checks). The load benchmark is a
//! separate binary, `src/bin/portcullis-bench/`.

pub mod authn;
pub mod authz;
pub mod cli;
pub mod config;
pub mod server;
pub mod store;
pub mod token;
