//! The mapping error, mirroring the WIT `map-error` variant.

use std::fmt;

/// Why an event could not be mapped; the host drops the event and counts the error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapError {
    /// The event payload could not be parsed, lacks a required field or has an invalid value.
    InvalidInput(String),
    /// Anything else (a bug in the mapper).
    Internal(String),
}

impl MapError {
    /// Builds [`MapError::InvalidInput`] from anything printable.
    pub fn invalid_input(message: impl fmt::Display) -> Self {
        Self::InvalidInput(message.to_string())
    }
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidInput(message) => write!(f, "invalid input: {message}"),
            Self::Internal(message) => write!(f, "internal error: {message}"),
        }
    }
}

impl std::error::Error for MapError {}
