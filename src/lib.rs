//! Portcullis: the auth layer for an unmodified container registry.
//!
//! The code follows a token request from the network to the signed answer:
//!
//! - [`server`]: the hyper listener, routing, request limits and the registry's error JSON;
//! - [`authn`]: who is asking (Basic credentials checked against the database or an LDAP
//!   directory, or anonymous);
//! - [`authz`]: what they may do (Harbor's project roles turned into registry actions);
//! - [`token`]: the protocol itself: scopes, claims, signing keys and the JSON answer.
//!
//! Beside the request path sit [`store`] (SQLite, with the SQL under `schema/`), [`config`]
//! (the TOML file, environment overrides and every default in one place) and [`cli`] (the
//! `portcullis` command line that manages users, projects, members and keys).

pub mod authn;
pub mod authz;
pub mod cli;
pub mod config;
pub mod server;
pub mod store;
pub mod token;
