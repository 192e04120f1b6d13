//! Reversals of allocations whose lot a hold earmarks: the reversed points come out of the
//! allocation's own lot, so that when the lot expires only what is left of it expires, whether
//! the hold is voided before or after the reversal, captured, or still held at the expiry.

use api::engine::clock::ManualClock;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use tests::{Spawn, StatusCode, TestApp, allocation_body, invariant_violations, setup_catalog};

const MOBILE: &str = "919812340000";

/// A customer with two allocations of 100.00 points: `soon` (its lot expires in 5 days) and
/// `later` (never expires), and holds that earmark all of `soon`'s lot (one of 100.00 unless
/// said otherwise).
struct Held {
    app: TestApp,
    clock: ManualClock,
    key: String,
    program_id: i64,
    /// The first hold.
    hold_id: String,
    hold_ids: Vec<String>,
}

async fn held() -> Held {
    held_by(&[100]).await
}

/// [`held`] with holds of `holds` (in points), which must earmark all of `soon`'s lot.
async fn held_by(holds: &[i64]) -> Held {
    let clock = ManualClock::new(
        DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc),
    );
    let app = TestApp::spawn_with(Spawn::clock(clock.clone())).await;
    let (_, key) = app.create_org("Reversals").await;
    let c = setup_catalog(&app, &key).await;
    let strategy = |body: Value| {
        let (app, key, program) = (&app, &key, c.program_id);
        async move {
            let r = app
                .post(
                    &format!("/v1/programs/{program}/expiry-strategies"),
                    key,
                    &body,
                )
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
            r.body["expiryStrategyId"].as_i64().unwrap()
        }
    };
    let five_days = strategy(json!({"name": "5 days", "kind": "AFTER_DAYS", "days": 5})).await;
    let never = strategy(json!({"name": "never", "kind": "NEVER"})).await;
    for (unique, expiry) in [("soon", five_days), ("later", never)] {
        let mut body = allocation_body(&c, MOBILE, json!(1000), unique);
        body["expiryStrategyId"] = json!(expiry);
        let r = app.post("/v1/currency/allocations", &key, &body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    let mut hold_ids = Vec::new();
    for (n, amount) in holds.iter().enumerate() {
        let r = app
            .post(
                "/v1/currency/holds",
                &key,
                &json!({"programId": c.program_id, "currency": "POINTS", "amount": amount,
                        "mobile": MOBILE, "uniqueId": format!("h{n}"), "expiresInSeconds": 604_800}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        hold_ids.push(r.body["holdId"].as_str().unwrap().to_owned());
    }
    let soon_lot_held = app
        .scalar(
            "SELECT e.held FROM ledger_entries e JOIN allocations a ON a.ledger_entry_id = e.id \
             WHERE a.unique_id = 'soon'",
        )
        .await;
    assert_eq!(
        soon_lot_held, 10_000,
        "the hold earmarks the lot that expires first"
    );
    Held {
        hold_id: hold_ids[0].clone(),
        hold_ids,
        program_id: c.program_id,
        app,
        clock,
        key,
    }
}

impl Held {
    /// Reverses 30.00 of `soon`.
    async fn reverse_part(&self) {
        self.reverse(30).await;
    }

    /// Reverses `points` of `soon`.
    async fn reverse(&self, points: i64) {
        let r = self
            .app
            .post(
                "/v1/currency/allocations/soon/reversal",
                &self.key,
                &json!({"amount": points.to_string(), "reversalId": "return-1"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        assert_eq!(r.body["amount"], format!("{points}.00"));
        self.assert_invariant().await;
    }

    async fn settle(&self, action: &str) -> Value {
        self.settle_hold(&self.hold_id, action).await
    }

    async fn settle_hold(&self, hold_id: &str, action: &str) -> Value {
        let r = self
            .app
            .post(
                &format!("/v1/currency/holds/{hold_id}/{action}"),
                &self.key,
                &json!({}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        self.assert_invariant().await;
        r.body
    }

    /// Moves past the expiry of `soon`'s lot and runs the expiry worker.
    async fn expire_soon(&self) {
        self.clock.advance(Duration::days(5));
        assert_eq!(
            api::workers::expire_all(&self.app.db, self.clock.now_for_tests())
                .await
                .unwrap(),
            1
        );
        self.assert_invariant().await;
    }

    /// The (first) hold, with the account's balance.
    async fn hold(&self) -> Value {
        self.hold_by_id(&self.hold_id).await
    }

    async fn hold_by_id(&self, hold_id: &str) -> Value {
        let r = self
            .app
            .get(&format!("/v1/currency/holds/{hold_id}"), &self.key)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.body
    }

    /// What expired of `soon`'s lot, in minor units.
    async fn expired_of_soon(&self) -> i64 {
        self.app
            .scalar(
                "SELECT sum(x.amount)::bigint FROM ledger_entries x JOIN allocations a \
                 ON x.reference = 'expiry:' || a.ledger_entry_id WHERE a.unique_id = 'soon'",
            )
            .await
    }

    async fn assert_invariant(&self) {
        let broken = invariant_violations(&self.app).await;
        assert!(broken.is_empty(), "{broken:?}");
    }

    /// A later full reversal of `soon` finds nothing left: what was reversed and what expired
    /// (70.00) are the whole allocation, each taken once.
    async fn assert_nothing_left_of_soon(&self) {
        let r = self
            .app
            .post(
                "/v1/currency/allocations/soon/reversal",
                &self.key,
                &json!({}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        assert_eq!(r.body["amount"], "0.00");
        assert_eq!(r.body["expiredAmount"], "70.00");
        self.assert_invariant().await;
    }
}

#[tokio::test]
async fn a_part_reversed_while_its_lot_is_held_does_not_expire_again_after_a_void() {
    let s = held().await;
    s.reverse_part().await;
    s.settle("void").await;
    s.expire_soon().await;
    // 100 + 100 allocated, 30 reversed out of `soon`, the 70 left of `soon` expired.
    assert_eq!(
        s.hold().await["balance"],
        json!({"available": "100.00", "pending": "0.00", "held": "0.00"})
    );
    assert_eq!(s.expired_of_soon().await, 7_000);
    s.assert_nothing_left_of_soon().await;
}

#[tokio::test]
async fn a_part_reversed_after_the_void_does_not_expire_again() {
    let s = held().await;
    s.settle("void").await;
    s.reverse_part().await;
    s.expire_soon().await;
    assert_eq!(
        s.hold().await["balance"],
        json!({"available": "100.00", "pending": "0.00", "held": "0.00"})
    );
    assert_eq!(s.expired_of_soon().await, 7_000);
    s.assert_nothing_left_of_soon().await;
}

#[tokio::test]
async fn a_capture_after_a_reversal_spends_the_hold_once_and_nothing_expires_twice() {
    let s = held().await;
    s.reverse_part().await;
    let captured = s.settle("capture").await;
    assert_eq!(captured["capturedAmount"], "100.00");
    assert_eq!(
        captured["balance"],
        json!({"available": "70.00", "pending": "0.00", "held": "0.00"})
    );
    // What the capture spent of `soon` and the reversal took from it leave nothing to expire.
    s.clock.advance(Duration::days(5));
    api::workers::expire_all(&s.app.db, s.clock.now_for_tests())
        .await
        .unwrap();
    s.assert_invariant().await;
    assert_eq!(
        s.hold().await["balance"],
        json!({"available": "70.00", "pending": "0.00", "held": "0.00"})
    );
    assert_eq!(s.expired_of_soon().await, 0);
}

#[tokio::test]
async fn a_part_reversed_while_its_lot_is_held_stays_reversed_when_the_held_lot_expires() {
    let s = held().await;
    s.reverse_part().await;
    // The hold still holds all it asked for: the reversal took its earmark on `soon`'s lot and
    // the hold earmarks as much of `later`'s instead.
    let hold = s.hold().await;
    assert_eq!(hold["heldAmount"], "100.00");
    assert_eq!(
        hold["balance"],
        json!({"available": "70.00", "pending": "0.00", "held": "100.00"})
    );
    s.expire_soon().await;
    let hold = s.hold().await;
    assert_eq!(hold["heldAmount"], "30.00");
    assert_eq!(hold["expiredAmount"], "70.00");
    assert_eq!(
        hold["balance"],
        json!({"available": "70.00", "pending": "0.00", "held": "30.00"})
    );
    assert_eq!(s.expired_of_soon().await, 7_000);
    let voided = s.settle("void").await;
    assert_eq!(voided["releasedAmount"], "30.00");
    assert_eq!(
        voided["balance"],
        json!({"available": "100.00", "pending": "0.00", "held": "0.00"})
    );
    s.assert_nothing_left_of_soon().await;
}

#[tokio::test]
async fn a_reversal_moves_the_earmarks_of_several_holds_off_its_lot() {
    // 60 and 60 held: the first all of it on `soon`'s lot, the second 40 there and 20 on `later`'s.
    let s = held_by(&[60, 60]).await;
    s.reverse(70).await;
    for id in &s.hold_ids {
        assert_eq!(s.hold_by_id(id).await["heldAmount"], "60.00");
    }
    assert_eq!(
        s.app
            .scalar(
                "SELECT e.remaining FROM ledger_entries e JOIN allocations a \
                 ON a.ledger_entry_id = e.id WHERE a.unique_id = 'soon'"
            )
            .await,
        3_000,
        "the 70 reversed came out of the allocation's own lot"
    );
    for id in &s.hold_ids {
        s.settle_hold(id, "void").await;
    }
    s.clock.advance(Duration::days(5));
    api::workers::expire_all(&s.app.db, s.clock.now_for_tests())
        .await
        .unwrap();
    s.assert_invariant().await;
    assert_eq!(s.expired_of_soon().await, 3_000);
    assert_eq!(
        s.hold().await["balance"],
        json!({"available": "100.00", "pending": "0.00", "held": "0.00"})
    );
}

#[tokio::test]
async fn a_reversal_of_a_lot_held_whole_still_needs_the_available_balance() {
    // With `later` spent, no other lot can take the earmark of what a reversal takes: it is
    // refused for want of an available balance, as before, and changes nothing.
    let s = held().await;
    let r = s
        .app
        .post(
            "/v1/currency/redemptions",
            &s.key,
            &json!({"programId": s.program_id, "currency": "POINTS", "amount": 100,
                    "mobile": MOBILE, "uniqueId": "spend-later"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let before = s.app.row_counts().await;
    let refused = s
        .app
        .post(
            "/v1/currency/allocations/soon/reversal",
            &s.key,
            &json!({"amount": "30", "reversalId": "return-1"}),
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.text
    );
    assert_eq!(refused.code(), "INSUFFICIENT_BALANCE");
    assert_eq!(s.app.row_counts().await, before);
    s.assert_invariant().await;
}
