//! Access log, metrics and audit events.
