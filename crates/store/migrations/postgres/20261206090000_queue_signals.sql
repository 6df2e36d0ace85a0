-- The queue across processes: the database's clock for leases, and
-- notifications for the events other processes wait on.

-- Milliseconds since the Unix epoch by the server's clock. Claims, lease
-- renewals and the expiry check use it (unless a test passes its own
-- time), so every worker machine leases by one clock and a machine whose
-- clock drifts cannot expire another's lease early.
CREATE FUNCTION easel_now_ms() RETURNS BIGINT
    LANGUAGE sql VOLATILE
    AS $$ SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT $$;

-- Every way a job becomes queued (submitted, put back after a lost lease
-- or a shutdown) wakes the workers listening on `easel_queued` (payload:
-- the tier), and every cancel request of a running job reaches the
-- process running it on `easel_cancel` (payload: the job id). Both are
-- delivered when the writing transaction commits; a listener that was
-- disconnected meanwhile finds the same state at its next poll.
CREATE FUNCTION easel_jobs_notify() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF NEW.status = 'queued' AND (TG_OP = 'INSERT' OR OLD.status <> 'queued') THEN
        PERFORM pg_notify('easel_queued', NEW.tier);
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.cancel_requested AND NOT OLD.cancel_requested THEN
        PERFORM pg_notify('easel_cancel', NEW.id);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_notify
    AFTER INSERT OR UPDATE OF status, cancel_requested ON jobs
    FOR EACH ROW EXECUTE FUNCTION easel_jobs_notify();
