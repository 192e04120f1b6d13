//! The reward catalog: rewards created and changed, issuances listed and cancelled.
