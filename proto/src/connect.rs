//! How every client reaches a coordinator: the `coordinator` commands and the worker share
//! this one path for the address, TLS and the bearer token, so a new security flag is
//! added once.

use std::fmt;
use std::path::{Path, PathBuf};

use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// Where and how to connect.
#[derive(Clone, Default)]
pub struct ClientConfig {
    /// `http://HOST:PORT`, or `https://HOST:PORT` with [`ClientConfig::tls_ca`].
    pub url: String,
    /// Sent as `authorization: Bearer TOKEN` with every call.
    pub token: Option<String>,
    /// PEM file of the CA that signed the coordinator's certificate.
    pub tls_ca: Option<PathBuf>,
    /// PEM certificate and key presented to the coordinator (mutual TLS for workers).
    pub tls_identity: Option<(PathBuf, PathBuf)>,
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("tls_ca", &self.tls_ca)
            .field("tls_identity", &self.tls_identity)
            .finish()
    }
}

/// Why a client could not be set up or reach the coordinator; the message says what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectError(pub String);

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConnectError {}

/// Adds the bearer token (and the protocol version) to every request. Its `Debug` never shows the token.
#[derive(Clone, Default)]
pub struct Bearer(Option<AsciiMetadataValue>);

impl fmt::Debug for Bearer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "Bearer(<redacted>)" } else { "Bearer(none)" })
    }
}

/// Every call says which protocol its client speaks, so the coordinator can refuse an old
/// client by name before misreading its messages.
impl Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        request.metadata_mut().insert(crate::PROTOCOL_HEADER, AsciiMetadataValue::from(crate::PROTOCOL_VERSION));
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, ConnectError> {
    std::fs::read(path).map_err(|e| ConnectError(format!("cannot read the {what} {}: {e}", path.display())))
}

/// A token from a file (so it stays out of `ps` and shell history): the first line,
/// trimmed. An empty file is an error, never "no token".
pub fn read_token_file(path: &Path) -> Result<String, ConnectError> {
    let text = String::from_utf8(read(path, "token file")?)
        .map_err(|_| ConnectError(format!("the token file {} is not UTF-8", path.display())))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.is_empty() {
        return Err(ConnectError(format!("the token file {} is empty", path.display())));
    }
    Ok(token)
}

/// `--token` or `--token-file`, whichever was given (both is an error).
pub fn token_from(token: Option<String>, file: Option<&Path>, flag: &str) -> Result<Option<String>, ConnectError> {
    match (token, file) {
        (Some(_), Some(_)) => Err(ConnectError(format!("give {flag} or {flag}-file, not both"))),
        (Some(t), None) if t.trim().is_empty() => Err(ConnectError(format!("{flag} is empty"))),
        (Some(t), None) => Ok(Some(t.trim().to_string())),
        (None, Some(path)) => read_token_file(path).map(Some),
        (None, None) => Ok(None),
    }
}

impl ClientConfig {
    pub fn new(url: impl Into<String>) -> ClientConfig {
        ClientConfig { url: url.into(), ..ClientConfig::default() }
    }

    /// The interceptor that sends the token.
    pub fn bearer(&self) -> Result<Bearer, ConnectError> {
        match &self.token {
            None => Ok(Bearer(None)),
            Some(token) => format!("Bearer {token}")
                .parse()
                .map(|v| Bearer(Some(v)))
                .map_err(|_| ConnectError("the token must be printable ASCII".into())),
        }
    }

    /// The endpoint, with TLS when the URL is `https://`.
    pub fn endpoint(&self) -> Result<Endpoint, ConnectError> {
        let url = &self.url;
        let endpoint = Channel::from_shared(url.clone())
            .map_err(|e| ConnectError(format!("bad coordinator address {url}: {e}")))?;
        let https = url.starts_with("https://");
        if !https {
            if self.tls_ca.is_some() || self.tls_identity.is_some() {
                return Err(ConnectError(format!(
                    "TLS flags were given but {url} is not an https:// address; use https://"
                )));
            }
            return Ok(endpoint);
        }
        let Some(ca) = &self.tls_ca else {
            return Err(ConnectError(format!(
                "{url} uses TLS: give --tls-ca with the CA certificate (PEM) that signed the coordinator's certificate"
            )));
        };
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca, "CA certificate")?));
        if let Some((cert, key)) = &self.tls_identity {
            tls = tls.identity(Identity::from_pem(read(cert, "client certificate")?, read(key, "client key")?));
        }
        endpoint.tls_config(tls).map_err(|e| ConnectError(format!("TLS set-up for {url}: {e}")))
    }

    /// Connects once; the channel reconnects by itself afterwards.
    pub async fn connect(&self) -> Result<(Channel, Bearer), ConnectError> {
        let bearer = self.bearer()?;
        let channel = self.endpoint()?.connect().await.map_err(|e| {
            let detail = std::error::Error::source(&e).map_or_else(|| e.to_string(), |s| format!("{e}: {s}"));
            ConnectError(format!(
                "cannot reach the coordinator at {}: is `coordinator serve` running? ({detail})",
                self.url
            ))
        })?;
        Ok((channel, bearer))
    }
}
