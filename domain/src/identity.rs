//! Who someone is: user ids, roles, and the actor on whose behalf the edge calls the origin.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A user's id: `usr_` followed by 32 lowercase hex digits (128 random bits drawn by the
/// origin). Parsed at the boundary; code that holds a `UserId` never re-checks it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserId(String);

pub const USER_ID_PREFIX: &str = "usr_";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a user id (expected usr_ and 32 lowercase hex digits)")]
pub struct BadUserId(pub String);

impl UserId {
    /// Builds an id from 16 random bytes the caller drew.
    pub fn from_random(bytes: [u8; 16]) -> Self {
        Self(format!("{USER_ID_PREFIX}{}", hex::encode(bytes)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for UserId {
    type Err = BadUserId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = s.strip_prefix(USER_ID_PREFIX).is_some_and(|h| {
            h.len() == 32 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(BadUserId(s.to_owned()))
        }
    }
}

impl TryFrom<String> for UserId {
    type Error = BadUserId;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<UserId> for String {
    fn from(id: UserId) -> Self {
        id.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a user may do beyond their own account.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "user" => Ok(Role::User),
            "admin" => Ok(Role::Admin),
            other => Err(format!("{other:?} is not a role (user or admin)")),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// On whose behalf the edge calls the origin. The edge authenticated the caller; the origin
/// trusts the actor because it is covered by the request's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    Anonymous,
    User {
        id: UserId,
        role: Role,
    },
    /// The origin's own jobs and CLI, and the edge's scheduled triggers.
    System,
    /// A platform service authenticated with its client credentials (`domain::oauth`); the
    /// edge checked its token's scope, the origin checks the client's.
    Service {
        client_id: crate::oauth::ClientId,
    },
}

impl Actor {
    pub fn is_admin(&self) -> bool {
        matches!(self, Actor::User { role: Role::Admin, .. } | Actor::System)
    }

    /// Whether this actor may read or change the account `target`: its owner, or an admin.
    pub fn may_act_on(&self, target: &UserId) -> bool {
        match self {
            Actor::User { id, .. } if id == target => true,
            other => other.is_admin(),
        }
    }

    pub fn user_id(&self) -> Option<&UserId> {
        match self {
            Actor::User { id, .. } => Some(id),
            _ => None,
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Anonymous => f.write_str("anonymous"),
            Actor::System => f.write_str("system"),
            Actor::Service { client_id } => write!(f, "service:{client_id}"),
            Actor::User { id, role } => write!(f, "user:{id}:{role}"),
        }
    }
}

impl FromStr for Actor {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "anonymous" => Ok(Actor::Anonymous),
            "system" => Ok(Actor::System),
            _ if s.starts_with("service:") => s
                .strip_prefix("service:")
                .and_then(crate::oauth::ClientId::parse)
                .map(|client_id| Actor::Service { client_id })
                .ok_or_else(|| format!("{s:?} is not an actor")),
            _ => {
                let rest = s.strip_prefix("user:").ok_or_else(|| format!("{s:?} is not an actor"))?;
                let (id, role) = rest.rsplit_once(':').ok_or_else(|| format!("{s:?} is not an actor"))?;
                Ok(Actor::User { id: id.parse().map_err(|e: BadUserId| e.to_string())?, role: role.parse()? })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_parse_strictly() {
        let id = UserId::from_random([0xab; 16]);
        assert_eq!(id.as_str(), "usr_abababababababababababababababab");
        assert_eq!(id.as_str().parse::<UserId>(), Ok(id));
        for bad in [
            "",
            "usr_",
            "usr_ABABABABABABABABABABABABABABABAB",
            "abc_abababababababababababababababab",
            "usr_ab",
        ] {
            assert!(bad.parse::<UserId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn actors_round_trip() {
        let user = Actor::User { id: UserId::from_random([1; 16]), role: Role::Admin };
        let service = Actor::Service { client_id: crate::oauth::ClientId::from_random([2; 16]) };
        assert_eq!(service.to_string(), "service:svc_02020202020202020202020202020202");
        assert!(!service.is_admin() && service.user_id().is_none());
        assert!("service:svc_1".parse::<Actor>().is_err());
        for actor in [Actor::Anonymous, Actor::System, user, service] {
            assert_eq!(actor.to_string().parse::<Actor>(), Ok(actor));
        }
        assert!("user:usr_x:admin".parse::<Actor>().is_err());
        assert!("user:usr_01010101010101010101010101010101:root".parse::<Actor>().is_err());
    }

    #[test]
    fn owners_and_admins_may_act() {
        let me = UserId::from_random([1; 16]);
        let other = UserId::from_random([2; 16]);
        let user = Actor::User { id: me.clone(), role: Role::User };
        assert!(user.may_act_on(&me));
        assert!(!user.may_act_on(&other));
        assert!(Actor::User { id: me, role: Role::Admin }.may_act_on(&other));
        assert!(!Actor::Anonymous.may_act_on(&other));
    }
}
