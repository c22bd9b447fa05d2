//! TI011 `security-definer`: no function in a module's schemas is SECURITY
//! DEFINER unless rls.toml allows it. Owns this rule only; it reads the catalog.

use super::prelude::*;
use super::for_each_function;

rule! {
    /// A SECURITY DEFINER function runs with its owner's rights. Its owner is the
    /// module's owner role, which is exempt from non-forced RLS and may read or
    /// change any tenant's rows through the function, whatever tenant the caller is
    /// in. Such a function is sometimes what the design wants (a narrow, reviewed
    /// entry point); then it is declared with a reason.
    pub static RULE = {
        id: "TI011",
        name: "security-definer",
        summary: "no SECURITY DEFINER functions (unless declared)",
        fix: "ALTER FUNCTION … SECURITY INVOKER, or declare it in rls.toml: [[allow]] rule = \"TI011\", object = \"schema.name(args)\", reason = \"…\".",
        needs: None,
        kind: Kind::Static(check),
    };
}

fn check(cx: &mut Ctx<'_>) -> Result<()> {
    for_each_function(cx, |cx, f, key, q| {
    if f.security_definer && !f.is_trigger {
        cx.finding(
            key,
            "SECURITY DEFINER function: it runs with its owner's rights, bypassing RLS",
            format!("ALTER FUNCTION {q} SECURITY INVOKER, or declare it in rls.toml with a reason"),
        );
    }
    });
    Ok(())
}
