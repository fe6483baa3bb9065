//! Logging through `tracing`: structured JSON for production, pretty text for a terminal.
//! Request and response headers that carry credentials are marked sensitive before the trace
//! layer sees them (see `http::router`), and no module logs tokens or secrets.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

/// Installs the global subscriber. `FRONTDESK_LOG` (a tracing filter) overrides `level`.
/// Safe to call more than once: later calls are ignored.
pub fn init(format: &str, level: &str) {
    let filter = std::env::var("FRONTDESK_LOG")
        .ok()
        .and_then(|value| EnvFilter::try_new(value).ok())
        .or_else(|| EnvFilter::try_new(level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(FmtSpan::NONE)
        .with_writer(std::io::stderr);
    let _ = if format == "pretty" {
        builder.try_init()
    } else {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    };
}
