//! Webhook endpoints and the outbox of webhook events.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // `events` is the subscribed event types as ",reward.issued,currency.allocated,", so that
        // one portable LIKE finds the subscribers of a type. The secret signs deliveries, so it is
        // kept as it is (it is a shared secret, not a password).
        m.create_table(
            Table::create()
                .table("webhook_endpoints")
                .col(uuid("id").primary_key())
                .col(big_integer("org_id"))
                .col(text("url"))
                .col(text("events"))
                .col(text("secret"))
                .col(timestamp_with_time_zone("created_at"))
                .take(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("webhook_endpoints_org_idx")
                .table("webhook_endpoints")
                .col("org_id")
                .take(),
        )
        .await?;

        // The outbox: one row per (event, endpoint), written in the transaction of the effect.
        // `body` is the exact JSON sent (and signed); `idempotency_token` is the `webhook-id`,
        // the same on every attempt and on every manual retry (a retry is a new row).
        m.create_table(
            Table::create()
                .table("webhook_events")
                .col(big_pk_auto("seq"))
                .col(uuid_uniq("id"))
                .col(big_integer("org_id"))
                .col(uuid("endpoint_id"))
                .col(string_len("event_type", 64))
                .col(text("body"))
                .col(string_len("idempotency_token", 64))
                .col(string_len("status", 16))
                .col(integer("attempts"))
                .col(timestamp_with_time_zone_null("next_attempt_at"))
                .col(integer_null("last_response_code"))
                .col(text_null("last_response_body"))
                .col(uuid_null("retry_of"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .take(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("webhook_events_due_idx")
                .table("webhook_events")
                .col("status")
                .col("next_attempt_at")
                .take(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("webhook_events_org_idx")
                .table("webhook_events")
                .col("org_id")
                .col("seq")
                .take(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("webhook_events").take())
            .await?;
        m.drop_table(Table::drop().table("webhook_endpoints").take())
            .await?;
        Ok(())
    }
}
