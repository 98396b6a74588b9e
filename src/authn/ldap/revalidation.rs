//! Offboarding for credentials that never reach the directory: a directory user's identity tokens
//! (refresh tokens) and personal access tokens are proved by Portcullis alone, so without this a
//! user deleted, disabled or moved out of a group in the directory would keep them, and the groups
//! they carried, for as long as they live.
//!
//! The rule: such a credential is trusted on the directory's last word about its user for
//! `ldap.revalidate_secs`. Past it, the next use first looks the user's entry up again by DN with
//! the search account ([`super::Directory::recheck`]: within the user base, `user_filter`
//! applied, not disabled, still carrying the login name). When the entry is there, its groups and
//! admin-group status are recorded afresh and apply to that very token; when it is not, every
//! refresh token and personal token of the user is deleted and the request is refused. While the
//! directory cannot answer, the credential keeps working until `ldap.revalidate_grace_secs` past
//! the last good check, then gets 503.
//!
//! The time of the last check lives in the store (`directory_accounts.checked_at`), so a check
//! one server made spares the others; each server also remembers the times it saw, so a token in
//! use costs one look at memory per request.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use super::DirectoryError;

/// When directory users were last vouched for, as this server knows it.
pub struct Revalidation {
    /// `ldap.revalidate_secs`: how long one check holds.
    every_secs: i64,
    /// `ldap.revalidate_grace_secs`: how long past the last good check a credential keeps
    /// working while the directory cannot answer.
    grace_secs: i64,
    /// User id to the time (Unix seconds) of the newest check this server saw.
    checked: Mutex<HashMap<i64, i64>>,
    /// Users whose check is being made now: a request meanwhile does not start another one.
    in_flight: Mutex<HashSet<i64>>,
}

/// The right and duty to check one user now, given by [`Revalidation::due`]: while it is held,
/// other requests for that user lean on the grace instead of asking too; it is given back when
/// dropped, also when the request is cancelled half-way (a client hanging up must not leave the
/// user marked as being checked until the grace runs out).
pub struct CheckClaim<'a> {
    revalidation: &'a Revalidation,
    user_id: i64,
    /// Set when the check revoked the user's credentials: they are forgotten.
    revoked: bool,
}

impl CheckClaim<'_> {
    /// The check ended with the user's credentials revoked.
    pub fn revoked(&mut self) {
        self.revoked = true;
    }
}

impl Drop for CheckClaim<'_> {
    fn drop(&mut self) {
        self.revalidation.finished(self.user_id, self.revoked);
    }
}

impl Revalidation {
    pub fn new(every_secs: u64, grace_secs: u64) -> Revalidation {
        let secs = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        Revalidation {
            every_secs: secs(every_secs),
            grace_secs: secs(grace_secs),
            checked: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashSet::new()),
        }
    }

    /// Whether this server saw a check of `user_id` recent enough at `now`.
    pub fn remembered_fresh(&self, user_id: i64, now: i64) -> bool {
        let checked = self.checked.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        checked.get(&user_id).is_some_and(|&at| self.holds(at, now))
    }

    fn holds(&self, checked_at: i64, now: i64) -> bool {
        now.saturating_sub(checked_at) < self.every_secs
    }

    /// Whether `user_id`, whose last check the store says was at `checked_at`, must be checked
    /// now: `None` when that check still holds (or another request is making the check, within
    /// the grace), else the claim to make it.
    pub fn due(&self, user_id: i64, checked_at: i64, now: i64) -> Option<CheckClaim<'_>> {
        if self.holds(checked_at, now) {
            self.saw(user_id, checked_at);
            return None;
        }
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Another request is checking this user: lean on the grace rather than ask twice.
        if !in_flight.insert(user_id) && self.within_grace(checked_at, now) {
            return None;
        }
        Some(CheckClaim { revalidation: self, user_id, revoked: false })
    }

    /// Notes a check of `user_id` at `checked_at` (a newer one is never replaced by an older).
    pub fn saw(&self, user_id: i64, checked_at: i64) {
        let mut checked = self.checked.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let at = checked.entry(user_id).or_insert(checked_at);
        *at = (*at).max(checked_at);
    }

    /// Ends the check a [`CheckClaim`] stood for; `revoked` forgets the user.
    fn finished(&self, user_id: i64, revoked: bool) {
        self.in_flight.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&user_id);
        if revoked {
            self.checked.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&user_id);
        }
    }

    /// Whether a credential last checked at `checked_at` may still be used at `now` while the
    /// directory cannot answer.
    pub fn within_grace(&self, checked_at: i64, now: i64) -> bool {
        now.saturating_sub(checked_at) <= self.grace_secs
    }

    /// The answer while the directory failed with `error`: go on within the grace, else the error.
    pub fn outage(&self, checked_at: i64, now: i64, error: DirectoryError) -> Result<(), DirectoryError> {
        match self.within_grace(checked_at, now) {
            true => Ok(()),
            false => Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_holds_for_its_period_and_a_second_request_waits_on_the_first() {
        let revalidation = Revalidation::new(300, 3600);
        assert!(!revalidation.remembered_fresh(1, 1000));
        assert!(revalidation.due(1, 900, 1000).is_none(), "100 s old");
        assert!(revalidation.remembered_fresh(1, 1199));
        assert!(!revalidation.remembered_fresh(1, 1200), "300 s old");
        let first = revalidation.due(1, 900, 1200).expect("due");
        assert!(revalidation.due(1, 900, 1201).is_none(), "one check at a time, within the grace");
        let late = revalidation.due(1, 900, 900 + 3601);
        assert!(late.is_some(), "past the grace, ask anyway");
        drop((first, late));
        assert!(
            revalidation.due(1, 900, 1202).is_some(),
            "a dropped claim (a cancelled request) is given back"
        );
        revalidation.saw(1, 1300);
        revalidation.saw(1, 1250);
        assert!(revalidation.remembered_fresh(1, 1599), "the newer check stays");
        let mut claim = revalidation.due(1, 0, 1600).expect("due");
        claim.revoked();
        drop(claim);
        assert!(!revalidation.remembered_fresh(1, 1301), "a revoked user is forgotten");
    }

    #[test]
    fn an_outage_is_borne_for_the_grace_only() {
        let revalidation = Revalidation::new(300, 3600);
        let error = || DirectoryError::TimedOut { url: "ldap://x".into() };
        assert!(revalidation.outage(0, 3600, error()).is_ok());
        assert!(revalidation.outage(0, 3601, error()).is_err());
    }
}
