//! The TLS crypto of every HTTPS client lookout builds: rustls over *ring*, the provider lettre,
//! rumqttc and gcp_auth use too, so the binary carries one cryptography library.
//!
//! reqwest takes the process's default rustls provider when it builds a client (and panics
//! without one), so every place that builds a client calls [`install_crypto_provider`] first.

use std::sync::Once;

/// Makes *ring* the process's default rustls provider, once. A provider installed before
/// (by an embedding program) is kept.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // An error means a provider is installed already, which is what is needed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A reqwest client with reqwest's defaults, for tests and benchmarks that talk to loopback
/// peers.
pub fn client() -> reqwest::Client {
    install_crypto_provider();
    reqwest::Client::new()
}
