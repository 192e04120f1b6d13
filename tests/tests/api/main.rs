//! Black-box tests: the real application on a fresh PostgreSQL database per test, over HTTP.

mod allocations;
mod catalog;
mod health;
mod issuance;
mod tenancy;
mod validation;
