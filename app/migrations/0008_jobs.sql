-- Background jobs (RabbitMQ). A job is written to job_outbox in the same transaction as the
-- change that causes it; the dispatcher of `app worker` publishes unpublished rows to the
-- broker (publisher confirms) and sets published_at. `key` names the job's effect, so
-- enqueueing the same effect twice is a no-op, and handlers use it to act once.
CREATE TABLE job_outbox (
    id            uuid PRIMARY KEY,
    queue         text NOT NULL CHECK (queue IN ('emails', 'payments')),
    kind          text NOT NULL,
    key           text NOT NULL UNIQUE,
    payload       jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz
);
CREATE INDEX job_outbox_unpublished ON job_outbox (created_at, id) WHERE published_at IS NULL;

-- Wakes the dispatcher at commit of every transaction that enqueued jobs (it also polls).
CREATE FUNCTION job_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('job_outbox', '');
    RETURN NULL;
END;
$$;
CREATE TRIGGER job_outbox_notify AFTER INSERT ON job_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION job_outbox_notify();

-- The emails queued before this migration (nothing sent them) become jobs: nothing is lost.
INSERT INTO job_outbox (id, queue, kind, key, payload, created_at)
SELECT id, 'emails', 'email', 'email-outbox:' || id,
       jsonb_build_object('recipient', recipient, 'template', template, 'data', payload),
       created_at
FROM email_outbox
WHERE sent_at IS NULL;

DROP TABLE email_outbox;

-- Emails the SMTP server accepted, by job key: a redelivered job finds its key and does not
-- send again.
CREATE TABLE sent_emails (
    key         text PRIMARY KEY,
    recipient   text NOT NULL,
    template    text NOT NULL,
    sent_at     timestamptz NOT NULL DEFAULT now()
);
