//! Programs and their award and expiry strategies: created exactly once, and decoded into the rules that allocations apply.
