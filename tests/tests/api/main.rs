//! Black-box tests: the real application on a fresh PostgreSQL database per test, over HTTP.

mod allocations;
mod catalog;
mod crash;
mod group_commit;
mod health;
mod holds;
mod issuance;
mod ledger;
mod ops;
mod outage;
mod pending;
mod properties;
mod tenancy;
mod transfers;
mod validation;
mod webhooks;
