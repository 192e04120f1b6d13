//! Black-box tests: the real application on a fresh PostgreSQL database per test, over HTTP.

mod allocations;
mod api_keys;
mod caps;
mod catalog;
mod crash;
mod customer_data;
mod group_commit;
mod health;
mod holds;
mod issuance;
mod ledger;
mod notices;
mod ops;
mod outage;
mod pending;
mod period_limits;
mod properties;
mod races;
mod randomized;
mod rate_limits;
mod sqlite;
mod tenancy;
mod transfers;
mod validation;
mod webhooks;
