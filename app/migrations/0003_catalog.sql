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
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CHECK ((price_minor IS NULL) = (currency IS NULL))
);
CREATE INDEX products_category ON products (category_id, id);
CREATE INDEX products_brand ON products (brand_id, id);
-- One index per public sort order (keyset pagination on (key, id)); only active
-- products are ever listed.
CREATE INDEX products_price ON products (price_minor, id) WHERE status = 'active';
CREATE INDEX products_newest ON products (created_at, id) WHERE status = 'active';
CREATE INDEX products_name ON products (name, id) WHERE status = 'active';
-- A brand filter walks only that brand's products, in each order (other filters, such as
-- the category subtree, then skip a bounded number of rows).
CREATE INDEX products_brand_newest ON products (brand_id, created_at, id) WHERE status = 'active';
CREATE INDEX products_brand_price ON products (brand_id, price_minor, id) WHERE status = 'active';
CREATE INDEX products_brand_name ON products (brand_id, name, id) WHERE status = 'active';
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

-- Every word of product names and descriptions, for typo-tolerant search: a query word
-- that is not known is replaced by the most similar known word (pg_trgm) before the
-- full-text match, so "lether jaket" finds "Leather Jacket". Kept by statement-level
-- triggers (cheap for bulk inserts); words are never removed, and a stale word only
-- means a correction that matches nothing.
CREATE TABLE catalog_words (
    word  text PRIMARY KEY
);
CREATE INDEX catalog_words_trgm ON catalog_words USING gin (word gin_trgm_ops);

CREATE FUNCTION remember_catalog_words() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO catalog_words (word)
    SELECT DISTINCT w.word
    FROM changed, unnest(tsvector_to_array(to_tsvector('simple', changed.name || ' ' || changed.description))) AS w(word)
    WHERE length(w.word) BETWEEN 3 AND 40
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END;
$$;
CREATE TRIGGER products_words_insert AFTER INSERT ON products
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION remember_catalog_words();
CREATE TRIGGER products_words_update AFTER UPDATE ON products
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION remember_catalog_words();

-- The text-search queries of what a shopper typed (websearch syntax), and of that or the
-- typo-corrected words. Functions so that a query of stop words only ("the") does not make
-- PostgreSQL send a notice with every search.
-- COST: evaluate them once per query (as index conditions), never once per row.
CREATE FUNCTION catalog_exact_query(typed text) RETURNS tsquery
    LANGUAGE sql STABLE PARALLEL SAFE COST 10000 SET client_min_messages = warning
    AS $$ SELECT websearch_to_tsquery('english', typed) $$;
CREATE FUNCTION catalog_fuzzy_query(typed text, corrected text) RETURNS tsquery
    LANGUAGE sql STABLE PARALLEL SAFE COST 10000 SET client_min_messages = warning
    AS $$ SELECT websearch_to_tsquery('english', typed) || plainto_tsquery('english', corrected) $$;
