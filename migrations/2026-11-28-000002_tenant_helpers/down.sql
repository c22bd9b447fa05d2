-- Revert migration 2: drop the helper and trigger functions of attestor_app.

SET LOCAL ROLE attestor_owner;

DROP FUNCTION attestor_app.audit_row();
DROP FUNCTION attestor_app.refuse_mutation();
DROP FUNCTION attestor_app.set_updated_at();
DROP FUNCTION attestor_app.current_actor();
DROP FUNCTION attestor_app.require_current_tenant();

SET LOCAL ROLE NONE;
