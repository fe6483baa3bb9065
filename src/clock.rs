//! Time. Core functions take `now` (unix seconds) as a parameter so expiry, `nbf` and leeway
//! edges are exact in tests; only the edges of the program (handlers, background tasks) read the
//! system clock, through this one function.

/// Current unix time in seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
