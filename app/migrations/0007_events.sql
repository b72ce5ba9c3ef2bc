-- Order events: a transactional outbox and what the event consumers keep.
--
-- Every order state change inserts its event here in the same transaction as the change, so
-- an event exists exactly when the change committed. The relay (`app worker`) publishes rows
-- in `seq` order to Kafka, keyed by order id, and then sets `published_at`.

CREATE TABLE order_events (
    -- Publication order; one relay publishes in this order, so events of one order keep theirs.
    seq           bigserial PRIMARY KEY,
    -- The event's identity: consumers record it and skip an event they have already applied.
    id            uuid NOT NULL UNIQUE,
    order_id      uuid NOT NULL REFERENCES orders,
    -- 1, 2, 3… within one order.
    order_seq     integer NOT NULL CHECK (order_seq > 0),
    type          text NOT NULL,
    version       integer NOT NULL,
    -- The whole event exactly as published (docs/events/).
    payload       jsonb NOT NULL,
    -- clock_timestamp(), not now(): the moment of the change, close to its commit.
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    published_at  timestamptz,
    UNIQUE (order_id, order_seq)
);
CREATE INDEX order_events_unpublished ON order_events (seq) WHERE published_at IS NULL;

-- Wakes the relay at once instead of at its next poll.
CREATE FUNCTION order_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('order_events', '');
    RETURN NULL;
END $$;
CREATE TRIGGER order_events_notify AFTER INSERT ON order_events
    FOR EACH STATEMENT EXECUTE FUNCTION order_events_notify();

-- One row per (consumer, event) applied: inserted in the transaction that applies the event,
-- so a redelivered event finds its row and changes nothing (at-least-once delivery,
-- exactly-once effects).
CREATE TABLE processed_events (
    consumer          text NOT NULL,
    event_id          uuid NOT NULL,
    order_id          uuid NOT NULL,
    order_seq         integer NOT NULL,
    -- When the event was written, to measure how long consumers take to apply it.
    event_created_at  timestamptz NOT NULL,
    processed_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX processed_events_order ON processed_events (order_id, consumer, order_seq);

-- Events a consumer could not apply and skipped (an unknown type or version, a payload that
-- does not parse): kept for a person to look at, never silently dropped.
CREATE TABLE failed_events (
    consumer    text NOT NULL,
    topic       text NOT NULL,
    partition   integer NOT NULL,
    "offset"    bigint NOT NULL,
    key         text,
    payload     text,
    error       text NOT NULL,
    failed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, topic, partition, "offset")
);

-- The fulfilment consumer's output: what each warehouse must pick and ship for a paid order.
CREATE TABLE warehouse_requests (
    order_id      uuid NOT NULL REFERENCES orders,
    warehouse_id  bigint NOT NULL REFERENCES warehouses,
    -- [{variant_id, sku, quantity}]
    items         jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    -- Set when the order is refunded before it shipped: the warehouse must not ship it.
    cancelled_at  timestamptz,
    PRIMARY KEY (order_id, warehouse_id)
);

-- The analytics consumer's output: sales per day and currency.
CREATE TABLE sales_daily (
    day              date NOT NULL,
    currency         char(3) NOT NULL,
    orders           bigint NOT NULL DEFAULT 0,
    revenue_minor    bigint NOT NULL DEFAULT 0,
    refunds          bigint NOT NULL DEFAULT 0,
    refunded_minor   bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (day, currency)
);
