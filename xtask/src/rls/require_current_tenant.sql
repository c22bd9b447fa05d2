RETURN CASE
    WHEN current_setting('app.tenant_id', true) ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
     AND current_setting('app.tenant_id', true) <> '00000000-0000-0000-0000-000000000000'
    THEN current_setting('app.tenant_id', true)::uuid
    ELSE attestor_app.tenant_context_error(current_setting('app.tenant_id', true))
END
