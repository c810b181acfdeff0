//! Admin API: status and runtime actions, served only over mTLS to MFA-proven operators
//! (policy §6). Every request needs a verified client certificate (the listener requires one)
//! and a JWT from the admin issuer whose `amr` proves MFA and which carries the admin scope.
//! Every request, allowed or refused, is recorded in the audit log before it is answered.
//!
//! One file per resource; [`app`] authenticates, dispatches by method and path, and audits.

mod app;
mod audit;
mod blocks;
mod dead_letters;
mod reload;
mod request;
mod shops;
mod status;

pub use app::AdminApp;
