//! Authentication and method policy.
//!
//! * [`token`]: EdDSA (Ed25519) JWTs: signing, verification, claims.
//! * [`policy`]: the `(steward.common.v1.policy)` option of every RPC, read
//!   from the descriptor set: the one source of truth for who may call what.
//! * [`layer`]: the tower layer that verifies the bearer token and enforces
//!   the policy before a handler runs, leaving a [`Caller`] in the request.
//! * [`refusals`]: the service's own access refusals, recorded once,
//!   floods summarised.
//! * [`revocations`]: the revocation list accounts streams, checked after
//!   the signature.
//! * [`service`]: how one service calls another (its own PLATFORM_SERVICE
//!   token, a lazily connected channel).

pub mod caller;
pub mod layer;
pub mod policy;
pub mod refusals;
pub mod revocations;
pub mod service;
pub mod token;

pub use caller::{Caller, Grant};
pub use layer::AuthLayer;
pub use policy::{MethodPolicy, PolicyTable};
pub use revocations::Revocations;
pub use service::ServiceCredentials;
pub use token::{Actor, Claims, KeySet, Role, TokenSigner, TokenVerifier};
