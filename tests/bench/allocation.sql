-- One currency allocation, written straight to PostgreSQL: the database-only baseline that
-- `cargo bench -p tests --bench load` compares the service's `alloc` scenario with
-- (service req/s ÷ pgbench tps, at the same concurrency).
--
-- It performs the SQL work of ONE allocation on the service's single path
-- (api/src/app/allocate/mod.rs `allocate_alone`, reached from api/src/http/allocations.rs), in the
-- same order, in one transaction with one commit:
--   1. claim the key: insert the idempotency record          (persistence/src/idempotency.rs claim)
--   2. find the customer, enrolling them if new              (persistence/src/customers.rs find_or_enroll)
--   3. add the award to the balance (upsert) ...             (persistence/src/ledger/mod.rs credit)
--   4. ... and insert the ledger credit (the lot)            (persistence/src/ledger/mod.rs credit)
--   5. insert the allocation                                 (persistence/src/allocations.rs insert_many)
--   6. store the outcome (~500 bytes of JSON) on the record  (persistence/src/idempotency.rs complete)
--   COMMIT
-- with the same tables, indexes, triggers, conflict targets, RETURNING lists (including the scale
-- sub-select) and row sizes; customer, record and ledger ids are carried from one statement to
-- the next with \gset, as the service carries them in memory.
--
-- The ledger's triggers that keep the liability's sums (migration m20261207_000013) fire on step
-- 4 as on the service's insert of a batch's credits: once per statement, so once per allocation
-- here and once per batch in the service.
--
-- Knowingly not included, so this is a lower bound for the database's share of the work:
--   * the service's replay check, one indexed read of the key before the transaction
--     (api/src/app/write/mod.rs replay_if_used);
--   * the catalog reads the service takes from its in-process cache;
--   * step 2 is one statement here (INSERT ... ON CONFLICT DO NOTHING RETURNING, falling back
--     to the existing row in the same statement); the service sends the INSERT and then, for
--     a known customer, a SELECT: two round trips.
--   * with LOYALTY_GROUP_COMMIT_MAX > 1 (the default) the service commits concurrent
--     allocations together in one transaction; this script always commits each alone.
--
-- The customer is one of the 1000 the benchmark pre-enrolled (mobiles 919000000000 to
-- 919000000999), at random; the award is what the benchmark's RATE strategy (0.1, FLOOR,
-- scale 2) gives for a source value of 1 to 10000: sourceValue * 10 minor units; the lot
-- expires in 365 days (AFTER_DAYS 365). Keys are fresh random UUIDs (as the benchmark's
-- uniqueIds); the allocation id is time-ordered like the service's UUIDv7.
--
-- Variables (pgbench -D): org, program, award, expiry: the benchmark's organisation, program,
-- award strategy and expiry strategy ids. Run it with -M prepared (or -M extended): the
-- variables carried by \gset are text and must be sent as parameters, not pasted in.
--
--   pgbench -n -M prepared -c 8 -j 2 -T 10 -f tests/bench/allocation.sql \
--     -D org=1 -D program=1 -D award=1 -D expiry=1 postgres://postgres@127.0.0.1:5432/<db>

\set c random(0, 999)
\set sv random(1, 10000)

BEGIN;

-- 1. claim (a fresh key never conflicts; the claim's RETURNING id names the record)
INSERT INTO idempotency_records (org_id, operation, key, fingerprint, request_fields, created_at)
VALUES (:org::bigint, 'currency-allocation', gen_random_uuid()::text,
        md5(random()::text) || md5(random()::text),
        jsonb_build_object(
          'awardStrategyId', :award::text,
          'customer', 'mobile:9190000' || lpad(:c::text, 5, '0'),
          'eventName', 'TransactionAdd',
          'eventSourceId', 'BILL123',
          'expiryStrategyId', :expiry::text,
          'programId', :program::text,
          'sourceValue', :sv::text),
        now())
ON CONFLICT (org_id, operation, key) DO NOTHING
RETURNING id AS record_id, key AS unique_id
\gset

-- 2. find or enroll the customer
WITH enrolled AS (
  INSERT INTO customers (id, org_id, mobile, created_at)
  VALUES (gen_random_uuid(), :org::bigint, '9190000' || lpad(:c::text, 5, '0'), now())
  ON CONFLICT (org_id, mobile) DO NOTHING
  RETURNING id
)
SELECT id AS customer_id FROM enrolled
UNION ALL
SELECT id FROM customers WHERE org_id = :org::bigint AND mobile = '9190000' || lpad(:c::text, 5, '0')
LIMIT 1
\gset

-- 3. the balance: an upsert that adds
INSERT INTO balances (org_id, customer_id, program_id, currency, available, updated_at)
VALUES (:org::bigint, :customer_id::uuid, :program::bigint, 'POINTS', :sv::bigint * 10, now())
ON CONFLICT (org_id, customer_id, program_id, currency)
DO UPDATE SET available = balances.available + excluded.available, updated_at = excluded.updated_at
RETURNING available
\gset

-- 4. the ledger credit, a lot of the whole amount
INSERT INTO ledger_entries (org_id, customer_id, program_id, currency, kind, amount,
                            balance_after, reference, remaining, expires_at, created_at)
VALUES (:org::bigint, :customer_id::uuid, :program::bigint, 'POINTS', 'CREDIT', :sv::bigint * 10,
        :available::bigint, 'allocation:' || :unique_id::text, :sv::bigint * 10,
        now() + interval '365 days', now())
RETURNING id AS ledger_entry_id, program_id, currency, kind, amount, balance_after, reference,
          expires_at, created_at,
          (SELECT scale FROM program_currencies pc
           WHERE pc.org_id = :org::bigint AND pc.program_id = :program::bigint AND pc.code = 'POINTS') AS scale
\gset

-- 5. the allocation
INSERT INTO allocations (id, org_id, unique_id, customer_id, program_id, currency, amount,
                         source_value, award_strategy_id, expiry_strategy_id, event_name,
                         event_source_id, ledger_entry_id, expires_at, created_at)
VALUES (encode(overlay(uuid_send(gen_random_uuid())
                       PLACING substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                       FROM 1 FOR 6), 'hex')::uuid,
        :org::bigint, :unique_id::text, :customer_id::uuid, :program::bigint, 'POINTS',
        :sv::bigint * 10, :sv::text, :award::bigint, :expiry::bigint, 'TransactionAdd', 'BILL123',
        :ledger_entry_id::bigint, now() + interval '365 days', now())
RETURNING id AS allocation_id, org_id, unique_id, customer_id, program_id, currency, amount,
          source_value, award_strategy_id, expiry_strategy_id, event_name, event_source_id,
          ledger_entry_id, expires_at, created_at, reversed_at, reversal_entry_id,
          (SELECT scale FROM program_currencies pc
           WHERE pc.org_id = :org::bigint AND pc.program_id = :program::bigint AND pc.code = 'POINTS') AS scale
\gset

-- 6. the outcome a replay answers with (the allocation as the API shows it, ~500 bytes)
UPDATE idempotency_records
SET status_code = 201,
    response = '{"allocationId": "0193a1f2-7c4e-7d3a-9b1e-5f2c8a4d6e01", "uniqueId": "5b8f3c2a-1d4e-4f6a-8b9c-0d1e2f3a4b5c", "customerId": "0193a1f0-2b3c-7d4e-8f5a-6b7c8d9e0f12", "programId": 1, "awardStrategyId": 1, "expiryStrategyId": 1, "currency": "POINTS", "amount": "523.40", "sourceValue": "5234", "expiresAt": "2027-11-22T10:15:30.123456Z", "eventName": "TransactionAdd", "eventSourceId": "BILL123", "ledgerEntryId": "1234567", "createdAt": "2026-11-22T10:15:30.123456Z", "reversedAt": null, "balance": {"available": "48211.70"}}'::jsonb,
    resource_id = :allocation_id::text
WHERE id = :record_id::bigint;

COMMIT;
