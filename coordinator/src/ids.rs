//! Newtype IDs, so the compiler keeps sweeps, jobs, workers and fencing tokens apart.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Text that is not an ID (or a lease secret); the message says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadId(pub String);

/// Namespace of sweep IDs: UUIDv5 of a grid's canonical content.
const SWEEP_NAMESPACE: Uuid = Uuid::from_u128(0x6962_7377_6565_7000_8000_0000_0000_0001);

macro_rules! uuid_id {
    ($name:ident, $what:literal) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub struct $name(pub Uuid);

        impl $name {
            pub fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }

            pub fn from_slice(bytes: &[u8]) -> Option<$name> {
                Uuid::from_slice(bytes).ok().map($name)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = BadId;
            fn from_str(s: &str) -> Result<Self, BadId> {
                Uuid::parse_str(s.trim()).map($name).map_err(|_| BadId(format!("`{s}` is not a {} ID (a UUID)", $what)))
            }
        }
    };
}

uuid_id!(SweepId, "sweep");
uuid_id!(JobId, "job");
uuid_id!(WorkerId, "worker");

impl SweepId {
    /// The same grid content always gets the same ID, which makes submission idempotent.
    pub fn for_grid(canonical: &str) -> SweepId {
        SweepId(Uuid::new_v5(&SWEEP_NAMESPACE, canonical.as_bytes()))
    }
}

impl JobId {
    /// UUIDv5 of the job's canonical parameters within its sweep.
    pub fn for_job(sweep: SweepId, canonical_params: &str) -> JobId {
        JobId(Uuid::new_v5(&sweep.0, canonical_params.as_bytes()))
    }
}

/// A lease's fencing token: grows with every grant, so a newer lease always wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LeaseToken(pub u64);

impl fmt::Display for LeaseToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A lease's secret: 128 random bits issued with the grant and known only to the worker
/// that holds the lease. Beside the fencing token (which orders leases and is not secret),
/// it makes a lease impossible to act on for anyone else. Never printed: `Debug` hides it
/// and no error message contains it.
#[derive(Clone, Copy, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct LeaseSecret(u128);

impl LeaseSecret {
    /// A fresh secret from the operating system's CSPRNG (through `rand`'s thread RNG).
    pub fn random() -> LeaseSecret {
        LeaseSecret(rand::random())
    }

    #[cfg(test)]
    pub(crate) fn from_bits(bits: u128) -> LeaseSecret {
        LeaseSecret(bits)
    }

    /// The 32 hex digits a worker sends back.
    pub fn expose(&self) -> String {
        format!("{:032x}", self.0)
    }

    /// Constant-time comparison, so timing does not reveal how much of a guess was right.
    pub fn matches(&self, other: &LeaseSecret) -> bool {
        use subtle::ConstantTimeEq;
        self.0.to_be_bytes().ct_eq(&other.0.to_be_bytes()).into()
    }
}

impl fmt::Debug for LeaseSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LeaseSecret(..)")
    }
}

impl PartialEq for LeaseSecret {
    fn eq(&self, other: &Self) -> bool {
        self.matches(other)
    }
}

impl Eq for LeaseSecret {}

impl From<LeaseSecret> for String {
    fn from(s: LeaseSecret) -> String {
        s.expose()
    }
}

impl TryFrom<String> for LeaseSecret {
    type Error = BadId;
    fn try_from(s: String) -> Result<Self, BadId> {
        s.parse()
    }
}

impl FromStr for LeaseSecret {
    type Err = BadId;
    fn from_str(s: &str) -> Result<Self, BadId> {
        if s.len() != 32 {
            return Err(BadId("the lease secret must be 32 hex digits".into()));
        }
        u128::from_str_radix(s, 16).map(LeaseSecret).map_err(|_| BadId("the lease secret must be 32 hex digits".into()))
    }
}

/// What a worker presents with every call about a job: who it is and which lease it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub worker: WorkerId,
    pub token: LeaseToken,
    pub secret: LeaseSecret,
}
