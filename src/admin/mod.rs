//! Admin API: status and runtime actions, served only over mTLS to MFA-proven operators
//! (policy §6). Every request needs a verified client certificate (the listener requires one)
//! and a JWT from the admin issuer whose `amr` proves MFA and which carries the admin scope.

mod app;
mod shops;

pub use app::AdminApp;
