//! Errors for the things that should not fail: randomness, hashing, encoding.
//!
//! Expected refusals (a wrong password, an expired session, a replayed code) are not errors but
//! values of the dedicated rejection enums in each module.

/// A failure of the machinery, never of the user's input. Messages name what failed and never
/// include secrets or user input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed")]
    Random,
    /// argon2 refused its parameters or input (for example a stored hash with bad parameters).
    #[error("password hashing failed: {0}")]
    Hash(&'static str),
    /// The TOTP secret or the otpauth URI could not be built.
    #[error("TOTP setup failed: {0}")]
    Totp(&'static str),
    /// The QR code could not be rendered (the data is too long for a QR code).
    #[error("QR code rendering failed: the otpauth URI is too long for a QR code")]
    Qr,
}

/// Fills an array with bytes from the operating system's CSPRNG.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], AuthError> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|_| AuthError::Random)?;
    Ok(out)
}
