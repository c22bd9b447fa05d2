-- Revert migration 5: the queue's NOTIFY triggers and their function.

SET LOCAL ROLE attestor_owner;

DROP TRIGGER notify_queue_update ON attestor.rekor_submission_queue;
DROP TRIGGER notify_queue_insert ON attestor.rekor_submission_queue;
DROP FUNCTION attestor_app.notify_queue();

SET LOCAL ROLE NONE;
