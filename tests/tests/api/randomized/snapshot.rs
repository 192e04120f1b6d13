//! The database's state as far as the run can change it, read back to compare with the model;
//! and the wait for the workers to settle what fell due during the run.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use tests::TestApp;

/// Waits until the workers have released every hold and matured every allocation due during
/// the run (everything but what was made to outlive it).
pub async fn settle(app: &TestApp) -> Result<(), String> {
    let sql = "SELECT ((SELECT count(*) FROM holds WHERE status = 'HELD' \
                        AND expires_at < now() + interval '1 hour') \
                     + (SELECT count(*) FROM allocations WHERE status = 'PENDING' \
                        AND matures_at < now() + interval '1 hour'))::bigint";
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let due = app.scalar(sql).await;
        if due == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the workers left {due} holds and pending allocations due 40 s after the run"
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// One account's parts and its ledger totals by kind, in minor units.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Account {
    pub available: i64,
    pub pending: i64,
    pub held: i64,
    pub ledger: BTreeMap<String, i64>,
}

impl Account {
    pub fn entry(&mut self, kind: &str, amount: i64) {
        *self.ledger.entry(kind.to_owned()).or_default() += amount;
    }
}

/// The database's state, as far as the run can change it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub accounts: BTreeMap<String, Account>,
    /// id → (status, amount, reversed amount, reversed in full)
    pub allocations: BTreeMap<String, (String, i64, i64, bool)>,
    /// id → (status, amount, captured, released, still held)
    pub holds: BTreeMap<String, (String, i64, i64, i64, i64)>,
    pub redemptions: BTreeSet<String>,
    pub transfers: BTreeSet<String>,
    /// id → (status, reward, quantity, customer, vouchers)
    pub issuances: BTreeMap<String, (String, i64, i64, String, Vec<String>)>,
    /// reward → (stock, issued)
    pub rewards: BTreeMap<i64, (i64, i64)>,
    /// (customer, reward) → units held
    pub holdings: BTreeMap<(String, i64), i64>,
    /// customer → what the capped strategy awarded (LIFETIME)
    pub caps: BTreeMap<String, i64>,
    /// (operation, key)
    pub keys: BTreeSet<(String, String)>,
    /// The lots an allocation (`allocation:<uniqueId>`: how many, their amount, whether they
    /// expire) or a transfer (`transfer:<key>`: their amount) created.
    pub lots: BTreeMap<String, (i64, i64, bool)>,
}

async fn rows(app: &TestApp, sql: &str) -> Vec<sea_orm::QueryResult> {
    use sea_orm::ConnectionTrait;
    app.db
        .conn()
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            sql.to_owned(),
        ))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn text(r: &sea_orm::QueryResult, i: usize) -> String {
    r.try_get_by_index::<String>(i).expect("text column")
}

fn int(r: &sea_orm::QueryResult, i: usize) -> i64 {
    r.try_get_by_index::<i64>(i).expect("bigint column")
}

impl Snapshot {
    pub async fn read(app: &TestApp) -> Self {
        let mut s = Self::default();
        for r in rows(
            app,
            "SELECT customer_id::text, available, pending, held FROM balances",
        )
        .await
        {
            let a = s.accounts.entry(text(&r, 0)).or_default();
            (a.available, a.pending, a.held) = (int(&r, 1), int(&r, 2), int(&r, 3));
        }
        for r in rows(
            app,
            "SELECT customer_id::text, kind, sum(amount)::bigint FROM ledger_entries GROUP BY 1, 2",
        )
        .await
        {
            s.accounts
                .entry(text(&r, 0))
                .or_default()
                .entry(&text(&r, 1), int(&r, 2));
        }
        for r in rows(
            app,
            "SELECT id::text, status, amount, reversed_amount, reversed_at IS NOT NULL FROM allocations",
        )
        .await
        {
            let full = r.try_get_by_index::<bool>(4).expect("bool");
            s.allocations
                .insert(text(&r, 0), (text(&r, 1), int(&r, 2), int(&r, 3), full));
        }
        for r in rows(
            app,
            "SELECT id::text, status, amount, captured_amount, released_amount, held FROM holds",
        )
        .await
        {
            let v = (text(&r, 1), int(&r, 2), int(&r, 3), int(&r, 4), int(&r, 5));
            s.holds.insert(text(&r, 0), v);
        }
        for r in rows(app, "SELECT id::text FROM redemptions").await {
            s.redemptions.insert(text(&r, 0));
        }
        for r in rows(app, "SELECT id::text FROM transfers").await {
            s.transfers.insert(text(&r, 0));
        }
        for r in rows(
            app,
            "SELECT i.id::text, i.status, i.reward_id, i.quantity, i.customer_id::text, \
                    COALESCE((SELECT string_agg(v.code, ',' ORDER BY v.code) FROM vouchers v \
                              WHERE v.issuance_id = i.id), '') \
             FROM issuances i",
        )
        .await
        {
            let vouchers = text(&r, 5)
                .split(',')
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect();
            let v = (text(&r, 1), int(&r, 2), int(&r, 3), text(&r, 4), vouchers);
            s.issuances.insert(text(&r, 0), v);
        }
        for r in rows(app, "SELECT id, stock, issued FROM rewards").await {
            s.rewards.insert(int(&r, 0), (int(&r, 1), int(&r, 2)));
        }
        for r in rows(
            app,
            "SELECT customer_id::text, reward_id, held FROM customer_reward_counts WHERE held <> 0",
        )
        .await
        {
            s.holdings.insert((text(&r, 0), int(&r, 1)), int(&r, 2));
        }
        for r in rows(
            app,
            "SELECT customer_id::text, awarded FROM earn_cap_counters",
        )
        .await
        {
            *s.caps.entry(text(&r, 0)).or_default() += int(&r, 1);
        }
        for r in rows(
            app,
            "SELECT reference, kind, count(*)::bigint, sum(amount)::bigint, \
                    bool_or(expires_at IS NOT NULL) \
             FROM ledger_entries WHERE kind IN ('CREDIT', 'TRANSFER_IN') GROUP BY 1, 2",
        )
        .await
        {
            let lot = if text(&r, 1) == "CREDIT" {
                let expires = r.try_get_by_index::<bool>(4).expect("bool");
                (int(&r, 2), int(&r, 3), expires)
            } else {
                (0, int(&r, 3), false)
            };
            s.lots.insert(text(&r, 0), lot);
        }
        for r in rows(app, "SELECT operation, key FROM idempotency_records").await {
            s.keys.insert((text(&r, 0), text(&r, 1)));
        }
        s
    }

    /// Zeros are left out: a ledger kind that sums to nothing, an account with nothing in it,
    /// a counter at zero.
    pub fn normalise(&mut self) {
        for a in self.accounts.values_mut() {
            a.ledger.retain(|_, v| *v != 0);
        }
        self.accounts.retain(|_, a| *a != Account::default());
        self.caps.retain(|_, v| *v != 0);
    }

    /// What differs between two snapshots, briefly.
    pub fn difference(&self, other: &Self, labels: (&str, &str)) -> String {
        let mut out = Vec::new();
        macro_rules! part {
            ($field:ident) => {
                if self.$field != other.$field {
                    out.push(diff_maps(
                        stringify!($field),
                        labels,
                        &as_map(&self.$field),
                        &as_map(&other.$field),
                    ));
                }
            };
        }
        part!(accounts);
        part!(allocations);
        part!(holds);
        part!(redemptions);
        part!(transfers);
        part!(issuances);
        part!(rewards);
        part!(holdings);
        part!(caps);
        part!(keys);
        part!(lots);
        out.join("; ")
    }
}

/// Anything iterable as a map from a debug-printed key to a debug-printed value.
fn as_map<I, T>(items: I) -> BTreeMap<String, String>
where
    I: IntoIterator<Item = T>,
    T: Pair,
{
    items.into_iter().map(Pair::pair).collect()
}

trait Pair {
    fn pair(self) -> (String, String);
}

impl<K: std::fmt::Debug, V: std::fmt::Debug> Pair for (&K, &V) {
    fn pair(self) -> (String, String) {
        (format!("{:?}", self.0), format!("{:?}", self.1))
    }
}

impl<K: std::fmt::Debug> Pair for &K {
    fn pair(self) -> (String, String) {
        (format!("{self:?}"), "present".to_owned())
    }
}

/// `name`: every key whose value differs, `expected` first, labelled (at most 8 of them).
fn diff_maps(
    name: &str,
    labels: (&str, &str),
    expected: &BTreeMap<String, String>,
    actual: &BTreeMap<String, String>,
) -> String {
    let keys: BTreeSet<&String> = expected.keys().chain(actual.keys()).collect();
    let absent = "absent".to_owned();
    let lines: Vec<String> = keys
        .into_iter()
        .filter(|k| expected.get(*k) != actual.get(*k))
        .map(|k| {
            format!(
                "{k}: {} {} / {} {}",
                labels.0,
                expected.get(k).unwrap_or(&absent),
                labels.1,
                actual.get(k).unwrap_or(&absent)
            )
        })
        .collect();
    let shown = lines.len().min(8);
    format!(
        "{name} differ in {} ({}{})",
        lines.len(),
        lines[..shown].join(", "),
        if lines.len() > shown { ", …" } else { "" }
    )
}

/// The period counters of the daily reward against its issuances: each day's units issued to
/// everyone and to each customer, less those cancelled; and the limits never passed.
pub async fn period_counter_violations(app: &TestApp) -> Vec<String> {
    let sql = "WITH issued AS ( \
          SELECT i.reward_id, w.who, date_trunc('day', i.created_at, 'UTC') AS start, \
                 sum(i.quantity) AS units \
          FROM issuances i JOIN rewards r ON r.id = i.reward_id AND r.period_limit IS NOT NULL \
          CROSS JOIN LATERAL (VALUES (i.customer_id), ('00000000-0000-0000-0000-000000000000'::uuid)) w(who) \
          WHERE i.status = 'ISSUED' GROUP BY 1, 2, 3) \
        SELECT 'period counter of reward ' || COALESCE(c.reward_id, x.reward_id) || ' for ' || \
               COALESCE(c.customer_id, x.who) || ' from ' || COALESCE(c.period_start, x.start) || \
               ': counted ' || COALESCE(c.issued, 0) || ', issued ' || COALESCE(x.units, 0) \
        FROM reward_period_counters c FULL JOIN issued x \
          ON c.reward_id = x.reward_id AND c.customer_id = x.who AND c.period_start = x.start \
        WHERE COALESCE(c.issued, 0) <> COALESCE(x.units, 0) \
           OR (COALESCE(c.customer_id, x.who) = '00000000-0000-0000-0000-000000000000' AND COALESCE(c.issued, 0) > 25) \
           OR (COALESCE(c.customer_id, x.who) <> '00000000-0000-0000-0000-000000000000' AND COALESCE(c.issued, 0) > 6)";
    rows(app, sql).await.iter().map(|r| text(r, 0)).collect()
}
