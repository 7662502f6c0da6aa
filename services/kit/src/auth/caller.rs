//! The authenticated caller of a request, as left by [`super::AuthLayer`].

use steward_proto::audit::Category;
use tonic::{Code, Status};

use super::token::{Claims, Role};
use crate::error::refusal;

/// Why the policy let the call through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// The method is public and no (valid) token was presented.
    Public,
    /// The caller holds a role the method admits: may act on any user.
    Role(Role),
    /// Admitted only as SELF: may act on their own resources only.
    SelfOnly,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: String,
    pub roles: Vec<Role>,
    pub impersonator_user_id: Option<String>,
    pub impersonation_session_id: Option<String>,
    pub token_id: Option<String>,
    pub grant: Grant,
}

impl Caller {
    pub fn from_claims(claims: &Claims, grant: Grant) -> Self {
        Self {
            user_id: claims.sub.clone(),
            roles: claims.roles.iter().filter_map(|r| Role::parse(r)).collect(),
            impersonator_user_id: claims.act.as_ref().map(|a| a.sub.clone()),
            impersonation_session_id: claims.sid.clone(),
            token_id: claims.tid.clone(),
            grant,
        }
    }

    /// A background job of the service itself.
    pub fn system() -> Self {
        Self {
            user_id: String::new(),
            roles: vec![Role::PlatformService],
            impersonator_user_id: None,
            impersonation_session_id: None,
            token_id: None,
            grant: Grant::Role(Role::PlatformService),
        }
    }

    /// Nobody yet: a PUBLIC method called without a token (sign-in).
    pub fn anonymous() -> Self {
        Self {
            user_id: String::new(),
            roles: Vec::new(),
            impersonator_user_id: None,
            impersonation_session_id: None,
            token_id: None,
            grant: Grant::Public,
        }
    }

    /// A user acting on their own account without a token of theirs yet
    /// (signing in with a password or an API token).
    pub fn signing_in(user_id: &str, token_id: Option<String>) -> Self {
        Self {
            user_id: user_id.to_owned(),
            token_id,
            grant: Grant::SelfOnly,
            ..Self::anonymous()
        }
    }

    /// The caller of a PUBLIC method: the token's holder when one was
    /// presented, else [`Caller::anonymous`].
    pub fn of_public<T>(request: &tonic::Request<T>) -> Self {
        Self::of(request).unwrap_or_else(|_| Self::anonymous())
    }

    /// The caller of a request, placed there by the auth layer. A handler
    /// reached without one is a wiring bug: refuse rather than guess.
    pub fn of<T>(request: &tonic::Request<T>) -> Result<Self, Status> {
        request
            .extensions()
            .get::<Self>()
            .cloned()
            .ok_or_else(|| Status::unauthenticated("authentication required"))
    }

    /// May the caller act on `user_id`'s resources?
    pub fn ensure_may_act_on(&self, user_id: &str) -> Result<(), Status> {
        match self.grant {
            Grant::Role(_) => Ok(()),
            Grant::SelfOnly if self.user_id == user_id => Ok(()),
            _ => Err(refusal(
                Code::PermissionDenied,
                "NOT_YOUR_RESOURCE",
                "callers without an administrative role may act only on their own account",
            )),
        }
    }

    /// [`Caller::ensure_may_act_on`] in the service error model, so the
    /// command runner audits the refusal like any other.
    pub fn may_act_on(&self, user_id: &str) -> Result<(), crate::Error> {
        self.ensure_may_act_on(user_id)
            .map_err(|s| crate::Error::denied("NOT_YOUR_RESOURCE", s.message().to_owned()))
    }

    pub fn is_privileged(&self) -> bool {
        matches!(self.grant, Grant::Role(_))
    }

    /// The audit category of an action by this caller on `subject_user_id`:
    /// jobs and services are SYSTEM, an administrator acting on someone else
    /// is ADMIN, anyone acting on their own account is PUBLIC.
    pub fn category_on(&self, subject_user_id: &str) -> Category {
        match self.grant {
            Grant::Role(Role::PlatformService) => Category::System,
            _ if self.user_id == subject_user_id || self.grant == Grant::SelfOnly => {
                Category::Public
            }
            Grant::Role(Role::UserAdmin) => Category::Admin,
            _ => Category::Public,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(grant: Grant) -> Caller {
        Caller {
            user_id: "me".into(),
            roles: vec![],
            impersonator_user_id: None,
            impersonation_session_id: None,
            token_id: None,
            grant,
        }
    }

    #[test]
    fn self_grant_is_limited_to_own_resources() {
        assert!(caller(Grant::SelfOnly).ensure_may_act_on("me").is_ok());
        let denied = caller(Grant::SelfOnly)
            .ensure_may_act_on("other")
            .unwrap_err();
        assert_eq!(denied.code(), Code::PermissionDenied);
        assert!(
            caller(Grant::Role(Role::UserAdmin))
                .ensure_may_act_on("other")
                .is_ok()
        );
    }

    #[test]
    fn categories() {
        assert_eq!(
            caller(Grant::Role(Role::UserAdmin)).category_on("other"),
            Category::Admin
        );
        assert_eq!(
            caller(Grant::Role(Role::UserAdmin)).category_on("me"),
            Category::Public
        );
        assert_eq!(caller(Grant::SelfOnly).category_on("me"), Category::Public);
        assert_eq!(Caller::system().category_on("x"), Category::System);
    }
}
