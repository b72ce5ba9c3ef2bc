-- Card details never reach the database: only the gateway's token, brand and last digits.
CREATE TABLE payment_methods (
    id             uuid PRIMARY KEY,
    user_id        uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    gateway        text NOT NULL,
    gateway_token  text NOT NULL,
    brand          text NOT NULL,
    last4          char(4) NOT NULL,
    exp_month      smallint NOT NULL CHECK (exp_month BETWEEN 1 AND 12),
    exp_year       smallint NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payment_methods_user ON payment_methods (user_id);

CREATE TABLE payments (
    id                 uuid PRIMARY KEY,
    order_id           uuid NOT NULL REFERENCES orders,
    payment_method_id  uuid REFERENCES payment_methods,
    gateway            text NOT NULL,
    gateway_reference  text UNIQUE,
    amount_minor       bigint NOT NULL CHECK (amount_minor >= 0),
    currency           char(3) NOT NULL,
    status             text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'refunded')),
    failure_code       text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payments_order ON payments (order_id);
-- At most one successful payment per order.
CREATE UNIQUE INDEX payments_one_success ON payments (order_id) WHERE status IN ('succeeded', 'refunded');

-- Webhook deliveries are recorded by event id, so a redelivery has no second effect.
CREATE TABLE webhook_events (
    event_id     text PRIMARY KEY,
    event_type   text NOT NULL,
    payload      jsonb NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
);
