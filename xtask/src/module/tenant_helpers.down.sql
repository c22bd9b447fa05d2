-- Revert the helpers of module `{{module}}`: drop the helper and trigger
-- functions of {{module}}_app, as the migrator (like the up.sql).

DROP FUNCTION {{module}}_app.refuse_mutation();
DROP FUNCTION {{module}}_app.set_updated_at();
DROP FUNCTION {{module}}_app.current_actor();
DROP FUNCTION {{module}}_app.require_current_tenant();
DROP FUNCTION {{module}}_app.tenant_context_error(text);
