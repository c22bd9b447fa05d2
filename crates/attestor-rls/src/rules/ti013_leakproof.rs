//! TI013 `leakproof`: no function in a module's schemas is LEAKPROOF. Owns
//! this rule only; it reads the catalog.

use super::prelude::*;
use super::for_each_function;

rule! {
    /// The planner may evaluate a LEAKPROOF function on rows before the RLS
    /// policies have filtered them (that is what the flag promises it may do). A
    /// function that raises an error or logs its argument then leaks other tenants'
    /// values through the error text or the log.
    pub static RULE = {
        id: "TI013",
        name: "leakproof",
        summary: "no LEAKPROOF functions",
        fix: "ALTER FUNCTION … NOT LEAKPROOF.",
        needs: None,
        kind: Kind::Static(check),
    };
}

fn check(cx: &mut Ctx<'_>) -> Result<()> {
    for_each_function(cx, |cx, f, key, q| {
    if f.leakproof {
        cx.finding(
            key,
            "LEAKPROOF function: the planner may run it on rows RLS has not filtered yet",
            format!("ALTER FUNCTION {q} NOT LEAKPROOF"),
        );
    }
    });
    Ok(())
}
