RETURN CASE
    WHEN NULLIF(current_setting('app.tenant_id', true), '00000000-0000-0000-0000-000000000000')
         LIKE '________-____-____-____-____________'
    THEN current_setting('app.tenant_id', true)::uuid
    ELSE attestor_app.tenant_context_error(current_setting('app.tenant_id', true))
END
