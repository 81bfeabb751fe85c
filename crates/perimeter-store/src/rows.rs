//! Row decoding helpers.

use std::str::FromStr;

use sqlx::any::AnyRow;
use sqlx::{Any, Decode, Row, Type};

use crate::StoreError;

/// Reads a column; a type mismatch is corruption (the message names the column, not values).
pub(crate) fn col<'r, T>(row: &'r AnyRow, name: &str) -> Result<T, StoreError>
where
    T: Decode<'r, Any> + Type<Any>,
{
    row.try_get(name)
        .map_err(|_| StoreError::Corrupt(format!("column {name} cannot be read")))
}

/// Parses a stored id.
pub(crate) fn id<T: FromStr>(s: &str, kind: &str) -> Result<T, StoreError> {
    s.parse()
        .map_err(|_| StoreError::Corrupt(format!("stored {kind} id is not a UUID")))
}

/// Reads a u64 stored as BIGINT.
pub(crate) fn col_u64(row: &AnyRow, name: &str) -> Result<u64, StoreError> {
    let v: i64 = col(row, name)?;
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("column {name} is negative")))
}

/// Reads a 32-byte hash.
pub(crate) fn col_hash(row: &AnyRow, name: &str) -> Result<[u8; 32], StoreError> {
    let v: Vec<u8> = col(row, name)?;
    <[u8; 32]>::try_from(v.as_slice())
        .map_err(|_| StoreError::Corrupt(format!("column {name} is not 32 bytes")))
}
