SET LOCAL ROLE attestor_owner;

CREATE OR REPLACE FUNCTION attestor_app.notify_queue()
    RETURNS trigger
    LANGUAGE plpgsql
    SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_notify('attestor_queue', '');
    RETURN NULL;  -- AFTER trigger: return value ignored
END
$$;

COMMENT ON FUNCTION attestor_app.notify_queue() IS
    'AFTER INSERT/UPDATE row trigger of rekor_submission_queue: NOTIFY attestor_queue when a job becomes due.';

SET LOCAL ROLE NONE;
