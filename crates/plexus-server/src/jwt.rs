//! JWT connection and subscription tokens (HS256/384/512, RS256/384/512, PS256/384/512,
//! ES256/384).
//!
//! The key that checks a token is chosen by the *family* of the token's `alg` (HMAC, RSA or EC),
//! among the keys the configuration gives. A family without a configured key is refused, so a
//! token cannot pick its own verification (the classic `alg` confusion: an HS256 token "signed"
//! with the server's RSA public key as the HMAC secret). `alg: none` does not parse.
//!
//! Connection token claims: `sub` (the user id, required), `exp` (optional; the connection is
//! closed with 4506 when it passes), `nbf`, `info` (any JSON, given to clients), `channels`
//! (subscribed at connect). A connection token has no `channel` claim.
//!
//! Subscription token claims: `sub` (the connection's user, `""` for an anonymous connection),
//! `channel` (the channel it opens), `exp`.

pub use jsonwebtoken::Algorithm;
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use plexus_core::{Error, ErrorCode, Identity, Payload};
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Verifies tokens with the keys of the configuration.
pub struct JwtVerifier {
    hmac: Option<DecodingKey>,
    rsa: Option<DecodingKey>,
    ec: Option<DecodingKey>,
    audience: Option<String>,
    issuer: Option<String>,
    leeway_seconds: u64,
}

/// Where the verification keys come from.
#[derive(Clone, Debug, Default)]
pub struct JwtKeys {
    /// The shared secret for HS256/384/512.
    pub hmac_secret: Option<Vec<u8>>,
    /// An RSA public key in PEM (RS256/384/512, PS256/384/512).
    pub rsa_public_pem: Option<Vec<u8>>,
    /// An EC public key in PEM (ES256 with P-256, ES384 with P-384).
    pub ecdsa_public_pem: Option<Vec<u8>>,
    /// When set, tokens must carry this `aud`.
    pub audience: Option<String>,
    /// When set, tokens must carry this `iss`.
    pub issuer: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway_seconds: u64,
}

fn refused(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::AUTH_FAILED, message)
}

impl JwtVerifier {
    /// Builds a verifier; fails when a PEM key does not parse or no key is given.
    pub fn new(keys: JwtKeys) -> Result<JwtVerifier, String> {
        let rsa = keys
            .rsa_public_pem
            .as_deref()
            .map(DecodingKey::from_rsa_pem)
            .transpose()
            .map_err(|e| format!("not an RSA public key in PEM: {e}"))?;
        let ec = keys
            .ecdsa_public_pem
            .as_deref()
            .map(DecodingKey::from_ec_pem)
            .transpose()
            .map_err(|e| format!("not an EC public key in PEM: {e}"))?;
        let hmac = keys.hmac_secret.as_deref().map(DecodingKey::from_secret);
        if hmac.is_none() && rsa.is_none() && ec.is_none() {
            return Err("no key to verify tokens with".into());
        }
        Ok(JwtVerifier {
            hmac,
            rsa,
            ec,
            audience: keys.audience,
            issuer: keys.issuer,
            leeway_seconds: keys.leeway_seconds,
        })
    }

    /// Checks the signature and the registered claims; returns the claims.
    fn decode(&self, token: &str) -> Result<Map<String, Value>, Error> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| refused(format!("malformed token: {e}")))?;
        let key = match header.alg {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => self.hmac.as_ref(),
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => self.rsa.as_ref(),
            Algorithm::ES256 | Algorithm::ES384 => self.ec.as_ref(),
            _ => None,
        };
        let Some(key) = key else {
            return Err(refused(format!(
                "tokens signed with {:?} are not accepted",
                header.alg
            )));
        };
        let mut validation = Validation::new(header.alg);
        validation.required_spec_claims = HashSet::from(["sub".to_owned()]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = self.leeway_seconds;
        match &self.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                validation.required_spec_claims.insert("aud".to_owned());
            }
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &self.issuer {
            validation.set_issuer(&[iss]);
            validation.required_spec_claims.insert("iss".to_owned());
        }
        match jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation) {
            Ok(data) => Ok(data.claims),
            Err(e) => Err(match e.kind() {
                ErrorKind::ExpiredSignature => {
                    Error::new(ErrorCode::TOKEN_EXPIRED, "token expired")
                }
                ErrorKind::InvalidSignature => refused("invalid token signature"),
                ErrorKind::ImmatureSignature => refused("token not valid yet (nbf)"),
                ErrorKind::InvalidAudience => refused("token audience (aud) not accepted"),
                ErrorKind::InvalidIssuer => refused("token issuer (iss) not accepted"),
                ErrorKind::MissingRequiredClaim(claim) => {
                    refused(format!("token has no `{claim}` claim"))
                }
                ErrorKind::InvalidAlgorithm => {
                    refused("token algorithm does not match the configured key")
                }
                _ => refused(format!("malformed token: {e}")),
            }),
        }
    }

    /// Checks a connection token and returns the identity it grants.
    pub fn verify_connection(&self, token: &str) -> Result<Identity, Error> {
        let claims = self.decode(token)?;
        if claims.contains_key("channel") {
            return Err(refused(
                "a subscription token (with a `channel` claim) cannot open a connection",
            ));
        }
        let user = match claims.get("sub") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => return Err(refused("the `sub` claim must be a non-empty string")),
        };
        let mut identity = Identity::new(user);
        if let Some(info) = claims.get("info") {
            let info = Payload::json(info).map_err(|e| refused(format!("bad `info`: {e}")))?;
            identity = identity.with_info(info);
        }
        match claims.get("channels") {
            None => {}
            Some(Value::Array(channels)) => {
                let names: Option<Vec<Arc<str>>> =
                    channels.iter().map(|c| c.as_str().map(Arc::from)).collect();
                let Some(names) = names else {
                    return Err(refused("the `channels` claim must be a list of strings"));
                };
                identity.channels = names;
            }
            Some(_) => return Err(refused("the `channels` claim must be a list of strings")),
        }
        if let Some(exp) = claims.get("exp").and_then(Value::as_u64) {
            // Within the leeway the token still counts as valid, as the check above did.
            let at = UNIX_EPOCH + Duration::from_secs(exp.saturating_add(self.leeway_seconds));
            identity = identity.expires_at(at);
        }
        Ok(identity)
    }

    /// Checks a subscription token for `channel`, held by a connection of `user` (`None`:
    /// anonymous). Failures are `permission_denied` (105), or `token_expired` (115).
    pub fn verify_subscription(
        &self,
        token: &str,
        user: Option<&str>,
        channel: &str,
    ) -> Result<(), Error> {
        let claims = self.decode(token).map_err(|e| {
            if e.code == ErrorCode::TOKEN_EXPIRED {
                Error::new(ErrorCode::TOKEN_EXPIRED, "subscription token expired")
            } else {
                Error::permission_denied(format!("subscription token refused: {}", e.message))
            }
        })?;
        if claims.get("channel").and_then(Value::as_str) != Some(channel) {
            return Err(Error::permission_denied(format!(
                "the subscription token is not for `{channel}`"
            )));
        }
        if claims.get("sub").and_then(Value::as_str) != Some(user.unwrap_or("")) {
            return Err(Error::permission_denied(
                "the subscription token is for another user",
            ));
        }
        Ok(())
    }
}

/// A key to sign tokens with (`plexus token`, tests).
pub enum SigningKey {
    Hmac(Vec<u8>),
    /// A PEM private key and an RS*/PS* or ES* algorithm.
    Pem(Vec<u8>, Algorithm),
}

/// Signs `claims` (a JSON object) with `alg` (HMAC keys: HS256, HS384 or HS512).
pub fn sign(claims: &Value, key: &SigningKey, alg: Algorithm) -> Result<String, String> {
    let encoding = match key {
        SigningKey::Hmac(secret) => EncodingKey::from_secret(secret),
        SigningKey::Pem(pem, _) => match alg {
            Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem),
            _ => EncodingKey::from_rsa_pem(pem),
        }
        .map_err(|e| format!("cannot read the private key: {e}"))?,
    };
    jsonwebtoken::encode(&Header::new(alg), claims, &encoding).map_err(|e| e.to_string())
}

/// Seconds since the Unix epoch.
pub fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn verifier() -> JwtVerifier {
        JwtVerifier::new(JwtKeys {
            hmac_secret: Some(SECRET.to_vec()),
            ..JwtKeys::default()
        })
        .unwrap()
    }

    fn hs(claims: Value, alg: Algorithm) -> String {
        sign(&claims, &SigningKey::Hmac(SECRET.to_vec()), alg).unwrap()
    }

    #[test]
    fn connection_token_claims_become_the_identity() {
        let token = hs(
            json!({"sub": "alice", "exp": now_seconds() + 60, "info": {"n": 1}, "channels": ["a", "b"]}),
            Algorithm::HS384,
        );
        let identity = verifier().verify_connection(&token).unwrap();
        assert_eq!(&*identity.user, "alice");
        assert_eq!(identity.info.unwrap().as_json_str(), Some(r#"{"n":1}"#));
        assert_eq!(identity.channels.len(), 2);
        assert!(identity.expires_at.is_some());
    }

    #[test]
    fn bad_claims_are_refused() {
        let v = verifier();
        for claims in [
            json!({"exp": now_seconds() + 60}),
            json!({"sub": ""}),
            json!({"sub": 5}),
            json!({"sub": "a", "channels": "x"}),
            json!({"sub": "a", "channels": [1]}),
            json!({"sub": "a", "channel": "x"}),
            json!({"sub": "a", "nbf": now_seconds() + 3600}),
        ] {
            let e = v
                .verify_connection(&hs(claims.clone(), Algorithm::HS256))
                .unwrap_err();
            assert_eq!(e.code, ErrorCode::AUTH_FAILED, "{claims}: {e}");
        }
        let expired = hs(
            json!({"sub": "a", "exp": now_seconds() - 10}),
            Algorithm::HS512,
        );
        assert_eq!(
            v.verify_connection(&expired).unwrap_err().code,
            ErrorCode::TOKEN_EXPIRED
        );
    }

    #[test]
    fn subscription_tokens_are_bound_to_channel_and_user() {
        let v = verifier();
        let token = hs(
            json!({"sub": "bob", "channel": "secret:1"}),
            Algorithm::HS256,
        );
        assert!(
            v.verify_subscription(&token, Some("bob"), "secret:1")
                .is_ok()
        );
        assert_eq!(
            v.verify_subscription(&token, Some("eve"), "secret:1")
                .unwrap_err()
                .code,
            ErrorCode::PERMISSION_DENIED
        );
        assert_eq!(
            v.verify_subscription(&token, Some("bob"), "secret:2")
                .unwrap_err()
                .code,
            ErrorCode::PERMISSION_DENIED
        );
        let anonymous = hs(json!({"sub": "", "channel": "secret:1"}), Algorithm::HS256);
        assert!(v.verify_subscription(&anonymous, None, "secret:1").is_ok());
    }

    #[test]
    fn a_family_without_a_key_is_refused() {
        let rsa_only = JwtVerifier {
            hmac: None,
            ..verifier()
        };
        let e = rsa_only
            .verify_connection(&hs(json!({"sub": "a"}), Algorithm::HS256))
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::AUTH_FAILED);
        assert!(e.message.contains("not accepted"), "{e}");
    }
}
