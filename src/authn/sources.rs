//! Which source decides a password login: the database, the directory, or one then the other.
//! The whole rule is here; [`super::Authenticator`] follows it and the directory login and the
//! store only carry out its answers.
//!
//! Without a directory, the database decides. With one, [`SourceOrder`] says who goes first for a
//! name both could know:
//!
//! | order            | database account of that name | what happens                                          |
//! |------------------|-------------------------------|-------------------------------------------------------|
//! | database first   | yes                           | the database decides; the directory is never asked    |
//! | database first   | no, or a directory account    | the directory decides; unknown there is refused       |
//! | directory first  | yes, a system admin           | the database decides; the directory is never asked    |
//! | directory first  | any other                     | the directory decides; unknown there goes to the database |
//!
//! While the directory cannot answer (down, slow, misconfigured), a database account of that name
//! is checked against the database instead, and every other name gets 503. The directory may log
//! in as a database account (and so take over its memberships) only in directory-first order,
//! and never as a database system admin (the bootstrap admin is one): whoever holds a directory
//! entry called `admin` must not become Portcullis's admin.

use crate::config::ldap::SourceOrder;
use crate::store::{Source, User};

/// Who is asked first for a password login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstSource {
    Database,
    Directory,
}

/// The source to ask first for `user` (the account of the typed name, if any), with `order`
/// the directory's configured order (`None`: no directory).
pub fn first_source(order: Option<SourceOrder>, user: Option<&User>) -> FirstSource {
    match (order, user) {
        (None, _) => FirstSource::Database,
        (Some(SourceOrder::DatabaseFirst), Some(user)) if user.source == Source::Database => {
            FirstSource::Database
        }
        (Some(SourceOrder::DirectoryFirst), Some(user)) if is_database_admin(user) => FirstSource::Database,
        (Some(_), _) => FirstSource::Directory,
    }
}

/// Whether a name the directory does not know goes on to the database.
pub fn unknown_in_directory_asks_database(order: SourceOrder) -> bool {
    order == SourceOrder::DirectoryFirst
}

/// A system admin of the database, whom the directory may never claim.
fn is_database_admin(user: &User) -> bool {
    user.source == Source::Database && user.is_admin
}

/// Whether a directory login may use the account `user` (and, for a database account, claim
/// it): its own directory accounts always, database accounts other than system admins only in
/// directory-first order.
pub fn directory_may_use(order: SourceOrder, user: &User) -> bool {
    user.source == Source::Ldap || (directory_may_claim_database_accounts(order) && !is_database_admin(user))
}

/// Whether a directory login may take over a database account of the same name.
pub fn directory_may_claim_database_accounts(order: SourceOrder) -> bool {
    order == SourceOrder::DirectoryFirst
}

/// Whether a verified database password may be remembered: only while the database decides that
/// name first, so a remembered login answers as a fresh check would. (In directory-first order,
/// or after a fallback during an outage, the directory may decide differently next time.)
pub fn database_decides(order: Option<SourceOrder>, user: &User) -> bool {
    first_source(order, Some(user)) == FirstSource::Database
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(source: Source) -> User {
        User {
            id: 1,
            name: "alice".into(),
            password_hash: None,
            is_admin: false,
            disabled: false,
            source,
            created_at: 0,
            password_epoch: 0,
        }
    }

    #[test]
    fn the_table_in_the_module_docs() {
        let (database, ldap) = (user(Source::Database), user(Source::Ldap));
        use FirstSource::*;
        use SourceOrder::*;
        assert_eq!(first_source(None, Some(&database)), Database);
        assert_eq!(first_source(None, None), Database);
        assert_eq!(first_source(Some(DatabaseFirst), Some(&database)), Database);
        assert_eq!(first_source(Some(DatabaseFirst), Some(&ldap)), Directory);
        assert_eq!(first_source(Some(DatabaseFirst), None), Directory);
        assert_eq!(first_source(Some(DirectoryFirst), Some(&database)), Directory);
        assert!(!unknown_in_directory_asks_database(DatabaseFirst));
        assert!(unknown_in_directory_asks_database(DirectoryFirst));
        assert!(directory_may_use(DatabaseFirst, &ldap));
        assert!(!directory_may_use(DatabaseFirst, &database));
        assert!(directory_may_use(DirectoryFirst, &database));
        assert!(database_decides(Some(DatabaseFirst), &database));
        assert!(!database_decides(Some(DirectoryFirst), &database));
        let admin = User { is_admin: true, ..user(Source::Database) };
        assert_eq!(first_source(Some(DirectoryFirst), Some(&admin)), Database, "never the directory's");
        assert!(!directory_may_use(DirectoryFirst, &admin));
        assert!(database_decides(Some(DirectoryFirst), &admin));
    }
}
