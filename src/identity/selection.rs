//! Which identity a token request is for (spec §4.2): a selector names a user-assigned
//! identity; without one, the system-assigned identity, else the only user-assigned one.

use crate::identity::definition::{Identities, Identity};

/// How a request names its identity (`client_id`, `object_id`, or `msi_res_id`/`mi_res_id`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selector<'a> {
    ClientId(&'a str),
    ObjectId(&'a str),
    ResourceId(&'a str),
}

/// Why no identity was selected; each is a distinct Azure error body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// No identity at all, or the selector matches none.
    #[error("Identity not found")]
    NotFound,
    /// No selector, no system-assigned identity, and several user-assigned ones.
    #[error("Multiple user assigned identities exist")]
    Ambiguous,
}

/// Applies the §4.2 rules. GUIDs and ARM ids compare without case (ARM ids are case-insensitive,
/// and a GUID's case carries no meaning).
pub fn select<'i>(
    identities: Option<&'i Identities>,
    selector: Option<Selector<'_>>,
) -> Result<&'i Identity, Error> {
    let Some(identities) = identities else {
        return Err(Error::NotFound);
    };
    match selector {
        // §4.2 rule 1: a selector names a user-assigned identity, so the system identity's
        // own client id selects nothing ("Identity not found").
        Some(selector) => identities
            .user
            .iter()
            .find(|identity| matches(identity, selector))
            .ok_or(Error::NotFound),
        None => match (&identities.system, identities.user.as_slice()) {
            (Some(system), _) => Ok(system),
            (None, [only]) => Ok(only),
            (None, []) => Err(Error::NotFound),
            (None, _) => Err(Error::Ambiguous),
        },
    }
}

fn matches(identity: &Identity, selector: Selector<'_>) -> bool {
    match selector {
        Selector::ClientId(id) => identity.client_id.eq_ignore_ascii_case(id),
        Selector::ObjectId(id) => identity.object_id.eq_ignore_ascii_case(id),
        Selector::ResourceId(id) => identity.resource_id.eq_ignore_ascii_case(id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::definition::Kind;

    fn identity(kind: Kind, n: u8) -> Identity {
        Identity {
            kind,
            client_id: format!("{n}1111111-1111-4111-8111-111111111111"),
            object_id: format!("{n}2222222-2222-4222-8222-222222222222"),
            resource_id: format!(
                "/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/u{n}"
            ),
        }
    }

    fn identities(system: bool, users: u8) -> Identities {
        Identities {
            tenant_id: "t".into(),
            system: system.then(|| identity(Kind::System, 0)),
            user: (1..=users).map(|n| identity(Kind::User, n)).collect(),
        }
    }

    #[test]
    fn default_is_system_then_the_single_user_assigned() {
        let both = identities(true, 2);
        assert_eq!(select(Some(&both), None).unwrap().kind, Kind::System);
        let one = identities(false, 1);
        assert_eq!(select(Some(&one), None).unwrap(), &one.user[0]);
        assert_eq!(
            select(Some(&identities(false, 2)), None),
            Err(Error::Ambiguous)
        );
        assert_eq!(
            select(Some(&identities(false, 0)), None),
            Err(Error::NotFound)
        );
        assert_eq!(select(None, None), Err(Error::NotFound));
    }

    #[test]
    fn selectors_pick_user_assigned_identities_case_insensitively() {
        let ids = identities(true, 2);
        let second = &ids.user[1];
        assert_eq!(
            select(
                Some(&ids),
                Some(Selector::ClientId(&second.client_id.to_uppercase()))
            )
            .unwrap(),
            second
        );
        assert_eq!(
            select(Some(&ids), Some(Selector::ObjectId(&second.object_id))).unwrap(),
            second
        );
        assert_eq!(
            select(
                Some(&ids),
                Some(Selector::ResourceId(&second.resource_id.to_lowercase()))
            )
            .unwrap(),
            second
        );
        assert_eq!(
            select(
                Some(&ids),
                Some(Selector::ClientId("99999999-1111-4111-8111-111111111111"))
            ),
            Err(Error::NotFound)
        );
        let system = ids.system.as_ref().unwrap();
        assert_eq!(
            select(Some(&ids), Some(Selector::ClientId(&system.client_id))),
            Err(Error::NotFound)
        );
    }
}
