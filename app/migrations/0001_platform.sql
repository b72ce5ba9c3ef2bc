-- Extensions and helpers shared by every domain.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- Ledger-style tables refuse UPDATE and DELETE: history is appended, never rewritten.
CREATE FUNCTION forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'restrict_violation';
END;
$$;

-- Outgoing emails are written in the same transaction as the change that causes them;
-- the worker (events issue) delivers them over SMTP and sets sent_at.
CREATE TABLE email_outbox (
    id          uuid PRIMARY KEY,
    recipient   text NOT NULL,
    template    text NOT NULL,
    payload     jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz
);
CREATE INDEX email_outbox_unsent ON email_outbox (created_at) WHERE sent_at IS NULL;
