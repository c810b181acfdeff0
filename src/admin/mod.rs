//! Admin API: status and runtime actions, served only over mTLS to MFA-proven operators (policy §6, §8).
