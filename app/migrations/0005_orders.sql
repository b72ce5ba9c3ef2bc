-- A cart belongs to a user, or to an anonymous visitor who holds its token.
CREATE TABLE carts (
    id          uuid PRIMARY KEY,
    user_id     uuid UNIQUE REFERENCES users ON DELETE CASCADE,
    token_hash  bytea UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((user_id IS NULL) <> (token_hash IS NULL))
);

CREATE TABLE cart_lines (
    cart_id     uuid NOT NULL REFERENCES carts ON DELETE CASCADE,
    variant_id  bigint NOT NULL REFERENCES variants ON DELETE CASCADE,
    quantity    integer NOT NULL CHECK (quantity > 0 AND quantity <= 1000),
    added_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (cart_id, variant_id)
);

CREATE TABLE orders (
    id                uuid PRIMARY KEY,
    user_id           uuid NOT NULL REFERENCES users,
    status            text NOT NULL CHECK (status IN ('pending_payment', 'paid', 'fulfilling',
                          'shipped', 'delivered', 'cancelled', 'refunded')),
    currency          char(3) NOT NULL,
    subtotal_minor    bigint NOT NULL CHECK (subtotal_minor >= 0),
    shipping_minor    bigint NOT NULL CHECK (shipping_minor >= 0),
    total_minor       bigint NOT NULL CHECK (total_minor >= 0),
    shipping_address  jsonb NOT NULL,
    billing_address   jsonb NOT NULL,
    idempotency_key   text,
    -- A hash of the checkout request, so a reused key with a different request is refused.
    request_hash      bytea,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, idempotency_key)
);
CREATE INDEX orders_user ON orders (user_id, created_at DESC, id DESC);
CREATE INDEX orders_status ON orders (status, created_at);

CREATE TABLE order_items (
    order_id          uuid NOT NULL REFERENCES orders ON DELETE CASCADE,
    variant_id        bigint NOT NULL REFERENCES variants,
    warehouse_id      bigint NOT NULL REFERENCES warehouses,
    sku               text NOT NULL,
    name              text NOT NULL,
    unit_price_minor  bigint NOT NULL CHECK (unit_price_minor >= 0),
    quantity          integer NOT NULL CHECK (quantity > 0),
    line_total_minor  bigint NOT NULL CHECK (line_total_minor >= 0),
    PRIMARY KEY (order_id, variant_id, warehouse_id)
);

CREATE TABLE order_status_history (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id     uuid NOT NULL REFERENCES orders ON DELETE CASCADE,
    from_status  text,
    to_status    text NOT NULL,
    actor_id     uuid,
    reason       text,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX order_status_history_order ON order_status_history (order_id, id);
CREATE TRIGGER order_status_history_append_only BEFORE UPDATE OR DELETE ON order_status_history
    FOR EACH ROW EXECUTE FUNCTION forbid_change();
