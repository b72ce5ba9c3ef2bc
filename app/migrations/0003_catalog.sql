CREATE TABLE categories (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    parent_id  bigint REFERENCES categories,
    -- ids from the root down to this category, itself included: a subtree is `path @> ARRAY[id]`.
    path       bigint[] NOT NULL,
    name       text NOT NULL,
    slug       text NOT NULL UNIQUE,
    position   integer NOT NULL DEFAULT 0
);
CREATE INDEX categories_parent ON categories (parent_id);
CREATE INDEX categories_path ON categories USING gin (path);

CREATE TABLE brands (
    id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name  text NOT NULL,
    slug  text NOT NULL UNIQUE
);

CREATE TABLE tags (
    id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name  text NOT NULL,
    slug  text NOT NULL UNIQUE
);

CREATE TABLE products (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    slug         text NOT NULL UNIQUE,
    name         text NOT NULL,
    description  text NOT NULL DEFAULT '',
    brand_id     bigint REFERENCES brands,
    category_id  bigint REFERENCES categories,
    status       text NOT NULL DEFAULT 'active' CHECK (status IN ('draft', 'active', 'archived')),
    -- The lowest active variant price, kept by the application in the same transaction
    -- as any variant change, so lists can filter and sort by price without a join.
    price_minor  bigint CHECK (price_minor >= 0),
    currency     char(3),
    search       tsvector GENERATED ALWAYS AS (
                     setweight(to_tsvector('english', name), 'A') ||
                     setweight(to_tsvector('english', description), 'B')) STORED,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX products_category ON products (category_id, id);
CREATE INDEX products_brand ON products (brand_id, id);
CREATE INDEX products_price ON products (price_minor, id);
CREATE INDEX products_search ON products USING gin (search);
CREATE INDEX products_name_trgm ON products USING gin (name gin_trgm_ops);

CREATE TABLE product_tags (
    product_id  bigint NOT NULL REFERENCES products ON DELETE CASCADE,
    tag_id      bigint NOT NULL REFERENCES tags ON DELETE CASCADE,
    PRIMARY KEY (product_id, tag_id)
);
CREATE INDEX product_tags_tag ON product_tags (tag_id, product_id);

CREATE TABLE variants (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    product_id   bigint NOT NULL REFERENCES products ON DELETE CASCADE,
    sku          text NOT NULL UNIQUE,
    name         text NOT NULL,
    price_minor  bigint NOT NULL CHECK (price_minor >= 0),
    currency     char(3) NOT NULL,
    attributes   jsonb NOT NULL DEFAULT '{}',
    active       boolean NOT NULL DEFAULT true,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX variants_product ON variants (product_id);
