//! Holds: points set aside for a purchase, captured, voided or expired, each exactly once.
