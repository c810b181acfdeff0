//! Rate limiting: keyed GCRA locally (governor) or fleet-wide on Redis (policy §3 availability).
