//! Who is asking: credentials from the request checked against the store and the directory, or
//! anonymous.
//!
//! The rule that matters most: credentials that are present but wrong are refused, never
//! treated as anonymous. The registry's `/v2/` accepts any valid token, so a downgrade would
//! make `docker login` report success for a wrong password.
//!
//! Authentication only establishes *who*; whether that principal may have a token now (exists,
//! enabled, unexpired) and whether it is a system admin is read from the account snapshot when the
//! token is granted ([`Identity::subject`]), so every kind of credential gets one answer.
//!
//! - [`basic`]: decoding the `Authorization` header;
//! - [`cache`]: remembering verified secrets (keyed hashes only) for a short time;
//! - [`password`]: argon2id, verified on a [`verifier_pool`] of bounded size, and
//!   [`carried_hash`]: the hashes `portcullis import` brought along, upgraded at first login;
//! - [`verified`]: which remembered logins still hold;
//! - [`secret`]: generated secrets and their digests; [`robot`], [`personal_token`] and
//!   [`refresh`]: robot accounts, personal access tokens and OAuth2 refresh tokens;
//! - [`sources`]: whether the database or the directory decides a password login;
//! - [`ldap`]: directory (LDAP, Active Directory) users and their groups;
//! - this file: [`Authenticator`], which turns credentials into an [`Identity`].

pub mod basic;
pub mod cache;
pub mod carried_hash;
pub mod ldap;
pub mod password;
pub mod personal_token;
pub mod refresh;
pub mod robot;
pub mod secret;
pub mod sources;
pub mod throttle;
pub mod verified;
pub mod verifier_pool;

use std::net::IpAddr;
use std::sync::Arc;

use crate::access::AccessSnapshot;
use crate::authz::{Ceiling, Subject};
use crate::config::ldap::SourceOrder;
use crate::config::CacheConfig;
use crate::metrics::{metrics, CredentialKind};
use crate::store::LiveAccess;
use crate::store::{blocking, SharedStore, StoreError, User};
use basic::Credentials;
use password::PasswordHasher;
use sources::FirstSource;
use throttle::{Check, Throttle};
use verified::{VerifiedLogin, VerifiedLogins, Vouch};

/// An authenticated caller, or nobody: who, never what they may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Anonymous,
    /// A user (of the database or the directory) who proved their password or a refresh token.
    User {
        id: i64,
        /// The stored spelling: the token's `sub`.
        name: String,
    },
    /// A robot account; its rights are its own permission list alone.
    Robot {
        /// The `robots` row, for logs and audits.
        id: i64,
        /// The full login name, the token's `sub`.
        name: String,
        /// The robot's projects and actions.
        ceiling: Ceiling,
    },
    /// A person who presented a personal access token: their rights, capped by the token's list.
    PersonalToken {
        /// The `access_tokens` row, for logs and audits.
        token_id: i64,
        /// The person, whose memberships are looked up as for a password login.
        user_id: i64,
        /// The person's user name: the token's `sub`.
        name: String,
        /// The token's projects and actions.
        ceiling: Ceiling,
    },
}

/// A database user's identity, proven by their password.
fn by_password(identity: Identity) -> (Identity, CredentialKind) {
    (identity, CredentialKind::password)
}

/// Why an identity that authenticated may not have a token now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unusable {
    #[error("the account no longer exists")]
    Gone,
    #[error("the account is disabled")]
    Disabled,
    #[error("the credential has expired or is disabled")]
    Expired,
}

impl Identity {
    /// The token's `sub`; empty for anonymous callers.
    pub fn name(&self) -> &str {
        match self {
            Identity::Anonymous => "",
            Identity::User { name, .. }
            | Identity::Robot { name, .. }
            | Identity::PersonalToken { name, .. } => name,
        }
    }

    /// The user whose memberships count, if any.
    pub fn user_id(&self) -> Option<i64> {
        match self {
            Identity::Anonymous | Identity::Robot { .. } => None,
            Identity::User { id, .. } => Some(*id),
            Identity::PersonalToken { user_id, .. } => Some(*user_id),
        }
    }

    /// What authorization sees of this identity, from the account facts in `snapshot` at `now`:
    /// the one place that decides whether an authenticated principal may still have a token and
    /// whether it is a system admin, whatever credential it used.
    pub fn subject(&self, snapshot: &AccessSnapshot, now: i64) -> Result<Subject, Unusable> {
        let person = |user_id: i64| {
            let user = snapshot.user(user_id).ok_or(Unusable::Gone)?;
            if user.disabled() {
                return Err(Unusable::Disabled);
            }
            Ok(user.is_system_admin())
        };
        let subject = |is_admin: bool, ceiling: Option<&Ceiling>| Subject {
            name: self.name().to_string(),
            is_admin,
            authenticated: true,
            ceiling: ceiling.cloned(),
        };
        match self {
            Identity::Anonymous => Ok(Subject::anonymous()),
            Identity::User { id, .. } => Ok(subject(person(*id)?, None)),
            // System-wide rights cut down to the robot's list: exactly the list, on projects that
            // exist, and never the catalog (a ceiling excludes it).
            Identity::Robot { id, ceiling, .. } => {
                let robot = snapshot.robot(*id).ok_or(Unusable::Gone)?;
                if !robot.usable_at(now) {
                    return Err(Unusable::Expired);
                }
                Ok(subject(true, Some(ceiling)))
            }
            Identity::PersonalToken { token_id, user_id, ceiling, .. } => {
                let token = snapshot.personal_token(*token_id).ok_or(Unusable::Gone)?;
                if !token.usable_at(now) {
                    return Err(Unusable::Expired);
                }
                Ok(subject(person(*user_id)?, Some(ceiling)))
            }
        }
    }
}

impl From<verifier_pool::NotVerified> for AuthnError {
    fn from(error: verifier_pool::NotVerified) -> Self {
        match error {
            verifier_pool::NotVerified::Busy => AuthnError::Busy,
            verifier_pool::NotVerified::Stopped(stopped) => AuthnError::Verifier(stopped),
        }
    }
}

/// Credentials presented, and the client address they came from (what throttling counts by).
#[derive(Debug)]
pub struct Attempt {
    pub credentials: Credentials,
    pub client: IpAddr,
}

/// What checking one kind of credential found.
#[derive(Debug)]
pub enum Verdict {
    /// The credential is valid and proves this identity.
    Accepted(Identity),
    /// Not this kind of credential, or no such account here: try the next kind or source.
    Unknown,
    /// The credential is this kind and wrong: refuse, try nothing else.
    Refused,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthnError {
    /// Unknown user, wrong password, disabled account, or empty password: one answer for all, so
    /// that a caller cannot tell which.
    #[error("authentication failed: wrong user name or password, or the account is disabled")]
    InvalidCredentials,
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The directory is down, slow or misconfigured: directory users cannot log in for now.
    #[error(transparent)]
    Directory(#[from] ldap::DirectoryError),
    /// No password verifier is left to answer.
    #[error(transparent)]
    Verifier(#[from] verifier_pool::PoolStopped),
    /// Too many logins wait for a verifier: try again shortly.
    #[error("too many logins are waiting to be checked; try again shortly")]
    Busy,
    /// Too many failed logins for this account from this client (or failed binds for it): no
    /// check is made before `retry_after`.
    #[error("too many failed logins; try again in {} s", retry_after.as_secs().max(1))]
    Throttled { retry_after: std::time::Duration },
}

/// Checks credentials against the database users, robots, personal tokens and the directory.
#[derive(Clone)]
pub struct Authenticator {
    store: SharedStore,
    hasher: PasswordHasher,
    /// Verified logins, checked against the account snapshot before use; `None` verifies every
    /// request from scratch.
    remembered: Option<Arc<VerifiedLogins>>,
    /// The configured directory, if any; without one only database users exist. Shared by the
    /// clones and replaced whole when `SIGHUP` reloads `[ldap]`: a request holds the one it
    /// started with.
    directory: Arc<std::sync::RwLock<Option<Arc<ldap::DirectoryAuthenticator>>>>,
    /// Failed password logins and directory binds, and the waits they impose.
    throttle: Arc<Throttle>,
    /// Directory logins in flight at once (`throttle.directory_concurrency`).
    directory_slots: Arc<tokio::sync::Semaphore>,
}

impl Authenticator {
    pub fn new(store: SharedStore, hasher: PasswordHasher) -> Self {
        let config = crate::config::throttle::ThrottleConfig::default();
        Authenticator {
            store,
            hasher,
            remembered: None,
            directory: Default::default(),
            throttle: Arc::new(Throttle::new(&config)),
            directory_slots: Arc::new(tokio::sync::Semaphore::new(config.directory_concurrency)),
        }
    }

    /// Throttles failed logins as `config` says.
    pub fn with_throttle(mut self, config: &crate::config::throttle::ThrottleConfig) -> Self {
        self.throttle = Arc::new(Throttle::new(config));
        self.directory_slots = Arc::new(tokio::sync::Semaphore::new(config.directory_concurrency));
        self
    }

    /// Remembers verified logins as `config` says.
    pub fn with_cache(mut self, config: &CacheConfig) -> Self {
        self.remembered = Some(Arc::new(VerifiedLogins::new(config)));
        self
    }

    /// Adds directory users beside the database users.
    pub fn with_directory(self, directory: Arc<ldap::DirectoryAuthenticator>) -> Self {
        self.replace_directory(Some(directory));
        self
    }

    /// Puts `directory` in place of the one in use (a `SIGHUP` reload), for every clone; requests
    /// under way finish with the old one.
    pub fn replace_directory(&self, directory: Option<Arc<ldap::DirectoryAuthenticator>>) {
        crate::metrics::metrics().directory_configured(directory.is_some());
        *self.directory.write().unwrap_or_else(std::sync::PoisonError::into_inner) = directory;
    }

    /// The directory's source order, `None` without a directory.
    fn order(&self) -> Option<SourceOrder> {
        self.directory().map(|directory| directory.order())
    }

    /// Resolves the caller: anonymous without credentials, an identity with valid ones, an error
    /// with any others. `access` is the account snapshot remembered logins are checked against.
    pub async fn authenticate(
        &self,
        attempt: Option<Attempt>,
        access: &LiveAccess,
    ) -> Result<(Identity, CredentialKind), AuthnError> {
        let Some(Attempt { credentials: Credentials { username, password }, client }) = attempt else {
            return Ok((Identity::Anonymous, CredentialKind::anonymous));
        };
        let started = tokio::time::Instant::now();
        let outcome = self.identify(username, password, client, access).await;
        if matches!(outcome, Err(AuthnError::InvalidCredentials)) {
            // Every refusal takes at least this long, whatever refused it (a robot's wrong secret
            // at once, a name the directory does not know after a search, an unknown user after a
            // decoy verification, a stored hash of another cost), so that timing does not tell
            // which names exist.
            tokio::time::sleep_until(started + self.refusal_floor()).await;
        }
        outcome
    }

    /// The shortest time a refusal takes: one and a half verifications at the configured cost,
    /// or of the costliest stored hash when that is more (old hashes after the cost was lowered).
    fn refusal_floor(&self) -> std::time::Duration {
        self.hasher.slowest_verification().max(self.hasher.hash_time()).mul_f32(1.5)
    }

    async fn identify(
        &self,
        username: String,
        password: String,
        client: IpAddr,
        access: &LiveAccess,
    ) -> Result<(Identity, CredentialKind), AuthnError> {
        // An empty password is never valid, whatever is stored (a directory would accept it as
        // an unauthenticated bind).
        if password.is_empty() {
            return Err(AuthnError::InvalidCredentials);
        }
        // Remembered logins first: they need no database. (A user and a robot never share a
        // name, and a remembered login holds only while what it rests on is unchanged, so this
        // answers as the checks below would.)
        access.refresh().await?;
        let (seen, generated) = {
            let snapshot = access.read();
            if let Some(logins) = &self.remembered {
                let recalled = logins.recall(&username, &password, &snapshot);
                metrics().cache_lookup(recalled.is_some());
                if let Some(identity) = recalled {
                    return Ok((identity, CredentialKind::cached));
                }
            }
            // Only a robot's name or a personal token's shape can be a generated secret: other
            // logins (a flood of guesses among them) cost no lookup for one.
            let generated = snapshot.has_robot_named(&crate::store::names::fold(&username))
                || personal_token::looks_like_one(&password);
            (self.remembered.as_ref().map(|_| snapshot.last_change()), generated)
        };
        let verdict = match generated {
            true => self.check_generated(&username, &password).await?,
            false => Verdict::Unknown,
        };
        match verdict {
            Verdict::Accepted(identity) => {
                if let Some(seen) = seen {
                    self.remember_generated(&username, &password, &identity, seen, access).await?;
                }
                let kind = match identity {
                    Identity::Robot { .. } => CredentialKind::robot,
                    _ => CredentialKind::personal_token,
                };
                return Ok((identity, kind));
            }
            Verdict::Refused => return Err(AuthnError::InvalidCredentials),
            Verdict::Unknown => {}
        }
        let outcome = self.check_password(&username, password, client).await;
        match &outcome {
            Ok(_) => self.throttle.succeeded(&username, client),
            Err(AuthnError::InvalidCredentials) => self.throttle.log_refusal(&username, client),
            Err(_) => {}
        }
        outcome
    }

    /// A password login, asking the sources in the order [`sources`] gives, within the throttle.
    async fn check_password(
        &self,
        login: &str,
        password: String,
        client: IpAddr,
    ) -> Result<(Identity, CredentialKind), AuthnError> {
        // A full queue is answered before any lookup: under a flood of guesses that answer must
        // cost next to nothing, and it says nothing about the name.
        if !self.hasher.has_room(client) {
            return Err(AuthnError::Busy);
        }
        let name = login.to_string();
        let (user, failures) =
            blocking(&self.store, move |store| Ok((store.find_user(&name)?, store.login_failures(&name)?)))
                .await?;
        self.throttle.share(login, failures.as_ref(), crate::store::now());
        let Some(directory) = self.directory().filter(|directory| {
            sources::first_source(Some(directory.order()), user.as_ref()) == FirstSource::Directory
        }) else {
            return self.verify_database(login, user, password, client).await.map(by_password);
        };
        let order = directory.order();
        let database_user = user.clone().filter(|user| user.source == crate::store::Source::Database);
        let slowdown = self.admit(login, client, Check::DirectoryBind)?;
        tokio::time::sleep(slowdown).await;
        let verdict = {
            let _slot = self.directory_slots.acquire().await.map_err(|_| AuthnError::Busy)?;
            directory.login(login, &password, user.as_ref()).await
        };
        match &verdict {
            Ok(Verdict::Refused) => {
                self.throttle.failed(login, client, Check::DirectoryBind);
                self.count_failure(login, client, true).await;
            }
            Ok(Verdict::Accepted(_)) => {
                self.throttle.directory_succeeded(login);
                let name = login.to_string();
                if let Err(error) =
                    blocking(&self.store, move |store| store.reset_directory_failures(&name)).await
                {
                    tracing::warn!(%error, "could not reset a directory account's failed binds");
                }
            }
            _ => {}
        }
        match verdict {
            Ok(Verdict::Accepted(identity)) => Ok((identity, CredentialKind::directory)),
            Ok(Verdict::Refused) => Err(AuthnError::InvalidCredentials),
            Ok(Verdict::Unknown) if sources::unknown_in_directory_asks_database(order) => {
                // An account the directory took over whose entry is gone is not the database's
                // again: its old local password does not open it.
                if self.claimed(database_user.as_ref()).await? {
                    return Err(AuthnError::InvalidCredentials);
                }
                self.verify_database(login, database_user, password, client).await.map(by_password)
            }
            Ok(Verdict::Unknown) => Err(AuthnError::InvalidCredentials),
            Err(error) => {
                if database_user.is_some() && !self.claimed(database_user.as_ref()).await? {
                    tracing::warn!(%error, login = %crate::text::for_message(login), "directory unavailable; checking the database user instead");
                    return self
                        .verify_database(login, database_user, password, client)
                        .await
                        .map(by_password);
                }
                tracing::error!(%error, login = %crate::text::for_message(login), "directory unavailable; directory users cannot log in");
                Err(AuthnError::Directory(error))
            }
        }
    }

    /// Whether the directory claimed the database account `user` (directory-first order): its
    /// old local password then no longer stands in for the directory during an outage, or
    /// whoever can take the directory down could log in with a password the directory replaced.
    async fn claimed(&self, user: Option<&User>) -> Result<bool, AuthnError> {
        let Some(user_id) = user.map(|user| user.id) else { return Ok(false) };
        Ok(blocking(&self.store, move |store| store.directory_account(user_id)).await?.is_some())
    }

    /// Counts a failure of an existing account in the store, where every process and the CLI see
    /// it. Best effort: the in-memory count already holds for this process.
    async fn count_failure(&self, login: &str, client: IpAddr, directory: bool) {
        let (name, address) = (login.to_string(), client.to_string());
        let window = i64::try_from(self.throttle.window_secs()).unwrap_or(i64::MAX);
        let counted = blocking(&self.store, move |store| {
            store.record_login_failure(&name, &address, directory, window)
        })
        .await;
        if let Err(error) = counted {
            tracing::warn!(%error, "could not count a failed login in the database");
        }
    }

    /// Whether `check` may be made for `login` from `client`, and how long to slow it first.
    fn admit(&self, login: &str, client: IpAddr, check: Check) -> Result<std::time::Duration, AuthnError> {
        self.throttle
            .admit(login, client, check)
            .map_err(|wait| AuthnError::Throttled { retry_after: wait.retry_after })
    }

    /// Checks `password` against the database user `user` (a decoy when `None`) for the name
    /// `login` typed, within the throttle.
    async fn verify_database(
        &self,
        login: &str,
        user: Option<User>,
        password: String,
        client: IpAddr,
    ) -> Result<Identity, AuthnError> {
        let slowdown = self.admit(login, client, Check::Password)?;
        tokio::time::sleep(slowdown).await;
        let known = user.is_some();
        let hash = user.as_ref().and_then(|u| u.password_hash.clone());
        // Kept for the cache only once verified (below); dropped at the end of this call.
        let secret = match (&self.remembered, &user) {
            (Some(_), Some(user)) if sources::database_decides(self.order(), user) => Some(password.clone()),
            _ => None,
        };
        // Verify even for unknown users (against a decoy) so timing does not reveal names.
        let verified = self.hasher.verify(password, hash, client).await?;
        let Some(user) = user.filter(|_| verified.matched) else {
            self.throttle.failed(login, client, Check::Password);
            if known {
                self.count_failure(login, client, false).await;
            }
            return Err(AuthnError::InvalidCredentials);
        };
        if let (Some(upgraded), Some(old)) = (verified.upgraded, &user.password_hash) {
            self.upgrade_hash(&user, old, upgraded).await;
        }
        let vouch = Vouch::Account { user_id: user.id, password_epoch: user.password_epoch };
        let identity = Identity::User { id: user.id, name: user.name };
        if let (Some(logins), Some(secret)) = (&self.remembered, secret) {
            logins.remember(identity.name(), &secret, VerifiedLogin { identity: identity.clone(), vouch });
        }
        Ok(identity)
    }

    /// Stores `upgraded`, an argon2id hash of the password that just matched the carried-over
    /// hash `old` of `user`, in its place. The password epoch stays: the user's identity tokens
    /// and remembered logins go on. Best effort: if it fails, the old hash keeps working and the
    /// next login tries again.
    async fn upgrade_hash(&self, user: &User, old: &str, upgraded: String) {
        let (id, old_hash) = (user.id, old.to_string());
        let scheme = carried_hash::Scheme::of(old).name();
        match blocking(&self.store, move |store| store.replace_password_hash(id, &old_hash, &upgraded)).await
        {
            Ok(true) => {
                tracing::info!(user = %user.name, from = scheme, "carried-over password hash replaced by argon2id")
            }
            Ok(false) => {
                tracing::info!(user = %user.name, "carried-over hash not replaced: the password was set meanwhile")
            }
            Err(error) => {
                tracing::warn!(user = %user.name, %error, "could not replace a carried-over password hash")
            }
        }
    }

    /// Remembers a robot or token login that was just checked, if nothing that vouches for it
    /// changed since `seen` (the snapshot's last log entry before the check): the snapshot's
    /// versions then describe exactly the rows the check read.
    async fn remember_generated(
        &self,
        username: &str,
        secret: &str,
        identity: &Identity,
        seen: i64,
        access: &LiveAccess,
    ) -> Result<(), AuthnError> {
        let Some(logins) = &self.remembered else { return Ok(()) };
        access.refresh().await?;
        let snapshot = access.read();
        if snapshot.last_change() != seen {
            return Ok(());
        }
        if let Some(vouch) = Vouch::for_generated(identity, &snapshot) {
            logins.remember(username, secret, VerifiedLogin { identity: identity.clone(), vouch });
        }
        Ok(())
    }

    /// Personal access tokens, then robots: generated secrets, checked by digest without argon2.
    async fn check_generated(&self, username: &str, password: &str) -> Result<Verdict, AuthnError> {
        let (username, password) = (username.to_string(), password.to_string());
        let verdict =
            blocking(&self.store, move |store| match personal_token::check(store, &username, &password)? {
                Verdict::Unknown => robot::check(store, &username, &password),
                verdict => Ok(verdict),
            })
            .await?;
        Ok(verdict)
    }

    /// Re-checks a directory user against the directory when their credential did not go to it
    /// (an identity token, a personal token, a remembered login) and their last check is older
    /// than `ldap.revalidate_secs` (see [`ldap::revalidation`]). A user the directory no longer
    /// vouches for loses every such credential and gets `InvalidCredentials`; a directory that
    /// cannot answer past the grace gives `Directory` (503). `Ok(true)` when the directory
    /// reported a password change and the identity tokens made before it were revoked: the
    /// caller checks that the one it holds survived. Users of the database, robots and anonymous
    /// callers pass at once; so does everyone when no directory is configured.
    pub async fn revalidate(&self, identity: &Identity, access: &LiveAccess) -> Result<bool, AuthnError> {
        // Database users, the warm path's usual caller, never touch the directory's lock.
        let Some(user_id) = identity.user_id() else { return Ok(false) };
        let from_directory = access.read().user(user_id).is_some_and(|user| user.from_directory());
        let Some(directory) = self.directory().filter(|_| from_directory) else {
            return Ok(false);
        };
        match directory.revalidate(user_id, identity.name(), &self.directory_slots).await? {
            ldap::Revalidated::Unchanged => Ok(false),
            // The new groups and admin status, or the revocation, apply to this very request.
            ldap::Revalidated::Refreshed => access.refresh().await.map(|()| false).map_err(AuthnError::from),
            ldap::Revalidated::PasswordChanged => {
                access.refresh().await.map(|()| true).map_err(AuthnError::from)
            }
            ldap::Revalidated::Revoked => {
                access.refresh().await?;
                Err(AuthnError::InvalidCredentials)
            }
        }
    }

    /// The directory in use now, if any.
    pub fn directory(&self) -> Option<Arc<ldap::DirectoryAuthenticator>> {
        self.directory.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    pub fn hasher(&self) -> &PasswordHasher {
        &self.hasher
    }

    /// How many verified logins are remembered now (0 without a cache).
    pub fn remembered_logins(&self) -> usize {
        self.remembered.as_ref().map(|logins| logins.len()).unwrap_or(0)
    }
}
