//! Who may call what (design §2, `docs/security.md`): bearer tokens with two roles checked
//! by one interceptor per service, optional mutual TLS for workers, and the limits that keep
//! one client from starving the others.
//!
//! - The **user token** (`serve --token`) opens the sweep service (and reflection): submit,
//!   status, results, cancel, retry. The **worker token** (`--worker-token`) opens the worker
//!   service only. With only `--token`, workers use that token too (one lab, one secret).
//! - A missing or wrong token is UNAUTHENTICATED; the other role's token is
//!   PERMISSION_DENIED. Both are logged with the peer address, never with the token.
//! - Tokens are compared as SHA-256 digests in constant time.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::service::Interceptor;
use tonic::{Request, Status};

use ibsweep_proto::{PROTOCOL_HEADER, PROTOCOL_VERSION};

use crate::error::{Error, Result};

/// Certificate files for `serve --tls-cert --tls-key [--tls-client-ca]`.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Workers must present a certificate signed by this CA (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

/// How `serve` protects its services.
#[derive(Clone, Default)]
pub struct Security {
    pub user_token: Option<String>,
    pub worker_token: Option<String>,
    pub tls: Option<TlsFiles>,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |t: &Option<String>| t.as_ref().map(|_| "<redacted>");
        f.debug_struct("Security")
            .field("user_token", &shown(&self.user_token))
            .field("worker_token", &shown(&self.worker_token))
            .field("tls", &self.tls)
            .finish()
    }
}

impl Security {
    /// Refuses configurations that would be open by accident: a worker token without a user
    /// token, or a routable address with no token at all unless `insecure`.
    pub fn check(&self, listen: SocketAddr, insecure: bool) -> Result<()> {
        if self.worker_token.is_some() && self.user_token.is_none() {
            return Err(Error::InvalidArgument(
                "--worker-token needs --token too: without it the sweep service would be open to anyone".into(),
            ));
        }
        if self.user_token.is_none() && !listen.ip().is_loopback() && !insecure {
            return Err(Error::InvalidArgument(format!(
                "refusing to listen on {listen} without a token: anyone who can reach it could submit, cancel and \
                 read every sweep. Give --token (or --token-file, and --worker-token for workers), or --insecure \
                 if the network is trusted"
            )));
        }
        Ok(())
    }

    pub fn gates(&self) -> (Gate, Gate) {
        let digest = |t: &Option<String>| t.as_deref().map(sha256);
        let tokens = Arc::new(Tokens { user: digest(&self.user_token), worker: digest(&self.worker_token) });
        let mtls = self.tls.as_ref().is_some_and(|t| t.client_ca.is_some());
        (
            Gate { role: Role::User, tokens: Arc::clone(&tokens), require_client_cert: false, check_protocol: true },
            Gate { role: Role::Worker, tokens, require_client_cert: mtls, check_protocol: true },
        )
    }
}

fn sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[derive(Debug)]
struct Tokens {
    user: Option<[u8; 32]>,
    worker: Option<[u8; 32]>,
}

/// The two kinds of callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Worker,
}

impl Role {
    fn service(self) -> &'static str {
        match self {
            Role::User => "sweep service",
            Role::Worker => "worker service",
        }
    }
}

/// The interceptor in front of one service.
#[derive(Debug, Clone)]
pub struct Gate {
    role: Role,
    tokens: Arc<Tokens>,
    require_client_cert: bool,
    /// Off for reflection, which generic tools (grpcurl) call without ibsweep's header.
    check_protocol: bool,
}

impl Gate {
    /// The same gate for a service any gRPC tool may call (reflection).
    pub fn for_generic_clients(self) -> Gate {
        Gate { check_protocol: false, ..self }
    }

    fn expected(&self) -> Option<[u8; 32]> {
        match self.role {
            Role::User => self.tokens.user,
            Role::Worker => self.tokens.worker.or(self.tokens.user),
        }
    }

    /// The other role's token, when the roles are separate.
    fn other(&self) -> Option<[u8; 32]> {
        match (self.role, self.tokens.worker) {
            (_, None) => None,
            (Role::User, Some(worker)) => Some(worker),
            (Role::Worker, Some(_)) => self.tokens.user,
        }
    }

    fn refuse(&self, request: &Request<()>, status: Status) -> Status {
        let peer = request.remote_addr().map_or_else(|| "unknown peer".to_string(), |a| a.to_string());
        tracing::warn!(peer = %peer, code = ?status.code(), "{} refused a call: {}", self.role.service(), status.message());
        status
    }
}

/// The protocol a call's client speaks, from [`PROTOCOL_HEADER`]: clients of protocol 3
/// and older send none, and are refused by name before their messages are misread.
pub fn check_protocol(request: &Request<()>) -> Result<(), Error> {
    let mismatch = |got: &str| Error::ProtocolMismatch { got: got.to_string(), want: PROTOCOL_VERSION };
    let Some(sent) = request.metadata().get(PROTOCOL_HEADER) else { return Err(mismatch("3 or older")) };
    let text = sent.to_str().unwrap_or("?");
    // Parsed, not formatted: every call of every worker passes here.
    if text.parse::<u32>() == Ok(PROTOCOL_VERSION) { Ok(()) } else { Err(mismatch(text)) }
}

impl Interceptor for Gate {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        if self.check_protocol
            && let Err(e) = check_protocol(&request)
        {
            return Err(self.refuse(&request, e.into()));
        }
        if self.require_client_cert && request.peer_certs().is_none_or(|certs| certs.is_empty()) {
            return Err(self.refuse(
                &request,
                Status::unauthenticated(
                    "the worker service needs a client certificate (mutual TLS): start the worker with --tls-cert and --tls-key",
                ),
            ));
        }
        let bearer = request.metadata().get("authorization").and_then(|v| v.to_str().ok());
        let peer = request.remote_addr().map_or_else(|| "unknown peer".to_string(), |a| a.to_string());
        self.check_bearer(bearer, &peer)?;
        Ok(request)
    }
}

impl Gate {
    /// Checks an `Authorization` header's value (`Bearer TOKEN`) against this gate's role:
    /// the one check behind both the gRPC interceptor and the HTTP API.
    pub fn check_bearer(&self, authorization: Option<&str>, peer: &str) -> Result<(), Status> {
        let refuse = |status: Status| {
            tracing::warn!(peer = %peer, code = ?status.code(), "{} refused a call: {}", self.role.service(), status.message());
            status
        };
        let Some(expected) = self.expected() else { return Ok(()) };
        let Some(presented) = authorization.and_then(|v| v.strip_prefix("Bearer ")).map(sha256) else {
            return Err(refuse(Status::unauthenticated(format!(
                "the {} needs a bearer token: pass --token or --token-file",
                self.role.service()
            ))));
        };
        if bool::from(presented.ct_eq(&expected)) {
            return Ok(());
        }
        if self.other().is_some_and(|other| bool::from(presented.ct_eq(&other))) {
            let which = match self.role {
                Role::User => "a worker token cannot use the sweep service; use the user token",
                Role::Worker => "a user token cannot use the worker service; use the worker token",
            };
            return Err(refuse(Status::permission_denied(which)));
        }
        Err(refuse(Status::unauthenticated(format!("wrong token for the {}", self.role.service()))))
    }
}

/// Limits that keep one client from starving the others; each is a `serve` flag.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// Open connections at once; more are closed at accept (and logged).
    pub max_connections: usize,
    /// Concurrent requests (HTTP/2 streams) per connection; more wait for a free stream.
    pub max_streams: u32,
    /// A request handler running longer than this is cancelled (DEADLINE_EXCEEDED).
    pub request_timeout: std::time::Duration,
    /// Largest message the sweep service decodes (a grid is at most 1 MiB).
    pub max_request_bytes: usize,
    /// Largest message the worker service decodes (a histogram piece is at most 1 MiB).
    pub max_upload_bytes: usize,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            max_connections: 4096,
            max_streams: 64,
            request_timeout: std::time::Duration::from_secs(120),
            max_request_bytes: 2 << 20,
            max_upload_bytes: 2 << 20,
        }
    }
}
