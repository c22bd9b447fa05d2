//! TI012 `security-definer-trigger`: no trigger function in a module's
//! schemas is SECURITY DEFINER. Owns this rule only; it reads the catalog.

use super::prelude::*;
use super::for_each_function;

rule! {
    /// A SECURITY DEFINER trigger function writes with its owner's rights: the audit
    /// row, the updated_at value or anything else it writes escapes the policies of
    /// the table it writes to, so a tenant's statement could write into another
    /// tenant's rows through the trigger.
    pub static RULE = {
        id: "TI012",
        name: "security-definer-trigger",
        summary: "no SECURITY DEFINER trigger functions",
        fix: "ALTER FUNCTION … SECURITY INVOKER.",
        needs: None,
        kind: Kind::Static(check),
    };
}

fn check(cx: &mut Ctx<'_>) -> Result<()> {
    for_each_function(cx, |cx, f, key, q| {
    if f.security_definer && f.is_trigger {
        cx.finding(
            key,
            "SECURITY DEFINER trigger function: it writes with its owner's rights, bypassing RLS",
            format!("ALTER FUNCTION {q} SECURITY INVOKER"),
        );
    }
    });
    Ok(())
}
