//! Pingora wiring: listeners, TLS, background services, reload.
