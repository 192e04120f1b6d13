//! Reversals of allocations, whole or in part, from the allocation's own lot.
