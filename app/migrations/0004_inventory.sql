CREATE TABLE warehouses (
    id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code  text NOT NULL UNIQUE,
    name  text NOT NULL
);

-- available = on_hand - reserved; the checks make overselling impossible even if a
-- query were wrong.
CREATE TABLE stock (
    variant_id           bigint NOT NULL REFERENCES variants ON DELETE CASCADE,
    warehouse_id         bigint NOT NULL REFERENCES warehouses,
    on_hand              integer NOT NULL DEFAULT 0 CHECK (on_hand >= 0),
    reserved             integer NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    low_stock_threshold  integer NOT NULL DEFAULT 5 CHECK (low_stock_threshold >= 0),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (variant_id, warehouse_id),
    CHECK (reserved <= on_hand)
);
CREATE INDEX stock_available ON stock (variant_id) WHERE on_hand > reserved;

-- Every change of stock is one row here, so that for each (variant, warehouse):
--   on_hand  = sum(on_hand_delta)   and   reserved = sum(reserved_delta).
CREATE TABLE inventory_movements (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    variant_id      bigint NOT NULL,
    warehouse_id    bigint NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('reserve', 'commit', 'release', 'restock', 'adjust')),
    on_hand_delta   integer NOT NULL,
    reserved_delta  integer NOT NULL,
    order_id        uuid,
    actor_id        uuid,
    reason          text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (variant_id, warehouse_id) REFERENCES stock (variant_id, warehouse_id)
);
CREATE INDEX inventory_movements_stock ON inventory_movements (variant_id, warehouse_id, id);
CREATE INDEX inventory_movements_order ON inventory_movements (order_id) WHERE order_id IS NOT NULL;
CREATE TRIGGER inventory_movements_append_only BEFORE UPDATE OR DELETE ON inventory_movements
    FOR EACH ROW EXECUTE FUNCTION forbid_change();
