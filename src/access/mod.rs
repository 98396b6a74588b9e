//! The account read model: every fact a token decision needs about a principal (a user, with
//! their directory groups and admin-group status; a robot; a personal access token), held in
//! memory so a token request never waits on the database.
//!
//! [`AccessSnapshot`] is pure data and the only answers to "is this principal a system admin"
//! ([`UserAccess::is_system_admin`]) and "what is its role in project P"
//! ([`AccessSnapshot::project_access`]). A store backend builds it ([`SnapshotBuilder`]) and feeds
//! it ([`Changes`]); [`crate::store::LiveAccess`] keeps it current. Nothing here knows SQL or the
//! store: the dependency runs `store -> access`.

mod snapshot;

pub use snapshot::{
    AccessError, AccessSnapshot, Changes, CredentialState, ProjectRow, RobotRow, SnapshotBuilder, UserAccess,
    UserFacts, UserRow,
};
