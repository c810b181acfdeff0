//! Request inspection: path normalisation, header/framing checks, body and JSON limits (policy §3, §8).
