//! Binding, TLS and graceful shutdown.

use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::App;

/// A PEM certificate chain and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM file with the certificate chain, leaf first (`tls.cert_file`).
    pub cert_file: PathBuf,
    /// PEM file with the private key (`tls.key_file`).
    pub key_file: PathBuf,
}

/// Where and how to listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// Address to bind (`listen`); port 0 picks a free port.
    pub listen: SocketAddr,
    /// TLS files; `None` serves plain HTTP.
    pub tls: Option<TlsFiles>,
    /// Allow plain HTTP on a non-loopback address (`insecure_http`).
    pub insecure_http: bool,
    /// How long in-flight requests may take to finish after a shutdown signal
    /// (`http.shutdown_grace_ms`).
    pub shutdown_grace: Duration,
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Plain HTTP on a non-loopback address without `insecure_http`.
    #[error(
        "refusing to serve plain HTTP on non-loopback address {addr}: configure [tls] cert_file and key_file, or set insecure_http = true (--insecure-http) if a TLS-terminating proxy is in front"
    )]
    InsecureListen {
        /// The configured address.
        addr: SocketAddr,
    },
    /// The address could not be bound (in use, not local, no permission).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
    /// A TLS file could not be read or holds no usable PEM item.
    #[error("tls.{key}: cannot use {path}: {reason}")]
    TlsFile {
        /// `cert_file` or `key_file`.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the certificate/key pair.
    #[error("tls: the certificate and key cannot be used together: {0}")]
    TlsConfig(#[from] rustls::Error),
    /// The server failed while running.
    #[error("server I/O error: {0}")]
    Io(#[from] io::Error),
}

/// A bound listening socket, ready to serve.
pub struct Bound {
    listener: TcpListener,
    local: SocketAddr,
    tls: Option<RustlsConfig>,
    grace: Duration,
}

impl std::fmt::Debug for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bound")
            .field("local", &self.local)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// Checks the settings, loads TLS material and binds the socket. Does not accept yet.
pub fn bind(settings: &ServerSettings) -> Result<Bound, ServeError> {
    if settings.tls.is_none() && !settings.insecure_http && !settings.listen.ip().is_loopback() {
        return Err(ServeError::InsecureListen {
            addr: settings.listen,
        });
    }
    let tls = match &settings.tls {
        Some(files) => Some(RustlsConfig::from_config(Arc::new(load_tls(files)?))),
        None => None,
    };
    let listener = TcpListener::bind(settings.listen).map_err(|source| ServeError::Bind {
        addr: settings.listen,
        source,
    })?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    Ok(Bound {
        listener,
        local,
        tls,
        grace: settings.shutdown_grace,
    })
}

impl Bound {
    /// The bound address (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// `https` or `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// Serves `app` until `shutdown` resolves, then stops accepting and lets in-flight
    /// requests finish for at most the grace period.
    pub async fn run<F>(self, app: App, shutdown: F) -> Result<(), ServeError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let handle: Handle<SocketAddr> = Handle::new();
        let trigger = handle.clone();
        let grace = self.grace;
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!(
                grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX),
                "shutting down: no new connections, finishing in-flight requests"
            );
            trigger.graceful_shutdown(Some(grace));
        });
        let service = app
            .into_router()
            .into_make_service_with_connect_info::<SocketAddr>();
        match self.tls {
            Some(config) => {
                axum_server::from_tcp_rustls(self.listener, config)?
                    .handle(handle)
                    .serve(service)
                    .await?
            }
            None => {
                axum_server::from_tcp(self.listener)?
                    .handle(handle)
                    .serve(service)
                    .await?
            }
        }
        Ok(())
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C). The handlers are installed when this is called,
/// not when the future is first polled: call it before announcing that the server listens, so
/// a SIGTERM sent right after the announcement shuts down gracefully instead of killing the
/// process.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate()).ok();
        let int = signal(SignalKind::interrupt()).ok();
        async move {
            match (term, int) {
                (Some(mut term), Some(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {},
                        _ = int.recv() => {},
                    }
                }
                (Some(mut term), None) => {
                    let _ = term.recv().await;
                }
                (None, Some(mut int)) => {
                    let _ = int.recv().await;
                }
                (None, None) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async move {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn tls_error(key: &'static str, path: &Path, reason: impl Into<String>) -> ServeError {
    ServeError::TlsFile {
        key,
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Reads the PEM files and builds a rustls server configuration (ring provider, TLS 1.2+,
/// ALPN http/1.1).
pub fn load_tls(files: &TlsFiles) -> Result<rustls::ServerConfig, ServeError> {
    let cert_path = files.cert_file.as_path();
    let key_path = files.key_file.as_path();
    std::fs::metadata(cert_path).map_err(|e| {
        tls_error(
            "cert_file",
            cert_path,
            format!("cannot read the file ({e})"),
        )
    })?;
    std::fs::metadata(key_path)
        .map_err(|e| tls_error("key_file", key_path, format!("cannot read the file ({e})")))?;
    let certs = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| {
            tls_error(
                "cert_file",
                cert_path,
                format!("cannot read the file ({e})"),
            )
        })?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error("cert_file", cert_path, format!("not valid PEM ({e})")))?;
    if certs.is_empty() {
        return Err(tls_error(
            "cert_file",
            cert_path,
            "expected a PEM file with at least one CERTIFICATE block",
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| {
        tls_error(
            "key_file",
            key_path,
            format!("expected a PEM file with a PRIVATE KEY block ({e})"),
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
