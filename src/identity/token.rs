//! Access tokens: RS256 JWTs shaped like Entra ID v1 access tokens for a managed identity
//! (spec §5.1), so that a relying party's ordinary Entra validation accepts them once it trusts
//! azimds' issuer and keys. Pure: the caller passes `now`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::identity::definition::Identity;
use crate::identity::keys::{self, SigningKey};

/// Entra back-dates `nbf` and `iat` by five minutes for clock skew (spec §4.3: a real token's
/// `expires_on - not_before` is the lifetime plus 300 s).
pub const NOT_BEFORE_SKEW: u64 = 300;

/// Azure's managed-identity token lifetime (spec §4.3): 24 hours.
pub const DEFAULT_LIFETIME: u64 = 86_400;

/// A signed token and what the token endpoint reports about it.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The JWT. A secret: never logged (`Debug` leaves it out).
    pub access_token: String,
    pub client_id: String,
    pub resource: String,
    /// `nbf`, Unix seconds.
    pub not_before: u64,
    /// `exp`, Unix seconds.
    pub expires_on: u64,
    /// When it was signed, Unix seconds.
    pub issued: u64,
    /// The lifetime it was issued with (`ext_expires_in`).
    pub lifetime: u64,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("client_id", &self.client_id)
            .field("resource", &self.resource)
            .field("expires_on", &self.expires_on)
            .finish_non_exhaustive()
    }
}

impl IssuedToken {
    /// Seconds left at `now` (`expires_in`; counts down on cache hits, spec §4.3).
    pub fn expires_in(&self, now: u64) -> u64 {
        self.expires_on.saturating_sub(now)
    }
}

/// What a token is issued for.
#[derive(Clone, Copy, Debug)]
pub struct Grant<'a> {
    pub identity: &'a Identity,
    pub tenant_id: &'a str,
    /// The requested resource, verbatim: it becomes `aud` and is echoed as `resource`.
    pub resource: &'a str,
}

/// The issuer URL Entra v1 tokens carry.
pub fn issuer_url(tenant_id: &str) -> String {
    format!("https://sts.windows.net/{tenant_id}/")
}

/// Signs a token for `grant` valid from `now` for `lifetime` seconds. Costs one RSA signature
/// (about 260 µs): call it off the async runtime's worker threads.
pub fn sign(
    key: &SigningKey,
    grant: Grant<'_>,
    now: u64,
    lifetime: u64,
) -> Result<IssuedToken, keys::Error> {
    let mut uti = [0u8; 16];
    openssl::rand::rand_bytes(&mut uti)?;
    let not_before = now.saturating_sub(NOT_BEFORE_SKEW);
    let expires_on = now.saturating_add(lifetime);
    let claims = claims(grant, not_before, expires_on, &URL_SAFE_NO_PAD.encode(uti));
    let mut jwt = String::with_capacity(key.header().len() + claims.len() * 4 / 3 + 350);
    jwt.push_str(key.header());
    jwt.push('.');
    URL_SAFE_NO_PAD.encode_string(claims.as_bytes(), &mut jwt);
    let signature = key.sign(jwt.as_bytes())?;
    jwt.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut jwt);
    Ok(IssuedToken {
        access_token: jwt,
        client_id: grant.identity.client_id.clone(),
        resource: grant.resource.to_string(),
        not_before,
        expires_on,
        issued: now,
        lifetime,
    })
}

/// The claim set, members in the order Entra v1 emits them. Written out rather than built
/// from a map so the order does not depend on serde_json's features.
fn claims(grant: Grant<'_>, not_before: u64, expires_on: u64, uti: &str) -> String {
    let s = |text: &str| serde_json::to_string(text).expect("a string serializes");
    let identity = grant.identity;
    let iss = s(&issuer_url(grant.tenant_id));
    format!(
        concat!(
            r#"{{"aud":{aud},"iss":{iss},"iat":{nbf},"nbf":{nbf},"exp":{exp},"#,
            r#""appid":{appid},"appidacr":"2","idp":{iss},"idtyp":"app","oid":{oid},"#,
            r#""sub":{oid},"tid":{tid},"uti":{uti},"ver":"1.0","xms_mirid":{mirid}}}"#
        ),
        aud = s(grant.resource),
        iss = iss,
        nbf = not_before,
        exp = expires_on,
        appid = s(&identity.client_id),
        oid = s(&identity.object_id),
        tid = s(grant.tenant_id),
        uti = s(uti),
        mirid = s(&identity.resource_id),
    )
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::identity::definition::Kind;

    #[test]
    fn claims_are_entra_v1_shaped() {
        let stored = SigningKey::generate(1_700_000_000).unwrap();
        let key = SigningKey::from_stored(&stored).unwrap();
        let identity = Identity {
            kind: Kind::User,
            client_id: "33333333-3333-4333-8333-333333333333".into(),
            object_id: "44444444-4444-4444-8444-444444444444".into(),
            resource_id: "/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/u".into(),
        };
        let grant = Grant {
            identity: &identity,
            tenant_id: "72f988bf-86f1-41af-91ab-2d7cd011db47",
            resource: "https://vault.azure.net",
        };
        let token = sign(&key, grant, 1_700_000_000, 86_400).unwrap();
        assert_eq!(
            (token.not_before, token.expires_on),
            (1_699_999_700, 1_700_086_400)
        );
        assert_eq!(
            token.expires_on - token.not_before,
            86_700,
            "spec §4.3's real difference"
        );
        assert_eq!(token.expires_in(1_700_000_017), 86_383);
        let parts: Vec<&str> = token.access_token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let payload = URL_SAFE_NO_PAD.decode(parts[1]).unwrap();
        let text = String::from_utf8(payload).unwrap();
        let keys: Vec<&str> = text
            .split(&['{', ','][..])
            .filter_map(|m| m.strip_prefix('"')?.split('"').next())
            .collect();
        assert_eq!(
            keys,
            [
                "aud",
                "iss",
                "iat",
                "nbf",
                "exp",
                "appid",
                "appidacr",
                "idp",
                "idtyp",
                "oid",
                "sub",
                "tid",
                "uti",
                "ver",
                "xms_mirid"
            ]
        );
        let claims: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(claims["aud"], "https://vault.azure.net");
        assert_eq!(
            claims["iss"],
            "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/"
        );
        assert_eq!(claims["iat"], 1_699_999_700);
        assert_eq!(claims["exp"], 1_700_086_400);
        assert_eq!(claims["appid"], identity.client_id);
        assert_eq!(claims["oid"], identity.object_id);
        assert_eq!(claims["sub"], identity.object_id);
        assert_eq!(claims["xms_mirid"], identity.resource_id);
        assert_eq!(claims["uti"].as_str().unwrap().len(), 22);
        assert!(!format!("{token:?}").contains(&token.access_token));
    }
}
