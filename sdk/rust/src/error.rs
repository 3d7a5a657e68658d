//! Errors: the ABI's codes as an enum, and the error every host call returns.

use std::fmt;

/// The ABI's failure codes (docs/ABI.md, "Codes"). A host function returns
/// the negation of one; an export returns one to fail its call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum Code {
    /// A pointer or length outside the guest's memory.
    BadPointer = 1,
    /// No such key, service or input.
    NotFound = 2,
    /// A value passes a size cap.
    TooLarge = 3,
    /// The operator did not grant this.
    Denied = 4,
    /// A malformed argument (empty key, bad event type, ...).
    Invalid = 5,
    /// The backing service is down or not ready.
    Unavailable = 6,
    /// The operation ran past its deadline.
    Timeout = 7,
    /// Anything else; the message says what.
    Internal = 8,
}

impl Code {
    /// The code of a value: a host function's negative result or an
    /// export's code. Anything outside 1..=8 is `Internal`.
    pub fn from_i32(v: i32) -> Code {
        match v.wrapping_abs() {
            1 => Code::BadPointer,
            2 => Code::NotFound,
            3 => Code::TooLarge,
            4 => Code::Denied,
            5 => Code::Invalid,
            6 => Code::Unavailable,
            7 => Code::Timeout,
            _ => Code::Internal,
        }
    }

    /// The code's number (1..=8).
    pub fn as_i32(self) -> i32 {
        self as i32
    }

    /// The code's name as the ABI's table and the Go SDK spell it.
    pub fn name(self) -> &'static str {
        match self {
            Code::BadPointer => "bad pointer",
            Code::NotFound => "not found",
            Code::TooLarge => "too large",
            Code::Denied => "denied",
            Code::Invalid => "invalid argument",
            Code::Unavailable => "unavailable",
            Code::Timeout => "timeout",
            Code::Internal => "internal error",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A failed host call (its code and the host's message), or a handler's
/// own failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    code: Code,
    message: String,
}

impl Error {
    /// An error of code with a message.
    pub fn new(code: Code, message: impl Into<String>) -> Error {
        Error { code, message: message.into() }
    }

    /// An `Internal` error: what a handler returns when it fails.
    pub fn internal(message: impl Into<String>) -> Error {
        Error::new(Code::Internal, message)
    }

    /// An `Invalid` error.
    pub fn invalid(message: impl Into<String>) -> Error {
        Error::new(Code::Invalid, message)
    }

    /// The ABI code.
    pub fn code(&self) -> Code {
        self.code
    }

    /// The message (the host's, from `last_error`, for a failed host call).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether the error has code `code`.
    pub fn is(&self, code: Code) -> bool {
        self.code == code
    }

    /// The same error with `context: ` in front of its message.
    pub fn context(mut self, context: &str) -> Error {
        let mut m = String::with_capacity(context.len() + 2 + self.message.len());
        m.push_str(context);
        m.push_str(": ");
        m.push_str(&self.message);
        self.message = m;
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            f.write_str(self.code.name())
        } else {
            write!(f, "{}: {}", self.code.name(), self.message)
        }
    }
}

impl std::error::Error for Error {}

impl From<crate::json::Error> for Error {
    fn from(e: crate::json::Error) -> Error {
        Error::new(Code::Invalid, e.to_string())
    }
}

/// The result of every SDK call.
pub type Result<T, E = Error> = std::result::Result<T, E>;
