//! TI019 `runtime-role-reach`: no runtime role reaches another runtime role
//! (app ↔ worker, or a login role of another module) through any chain of
//! grants. Owns this rule only; it reads the membership graph
//! (`crate::membership`) and never writes.

use super::prelude::*;

rule! {
    /// The app and the worker are isolated from each other on purpose: the worker
    /// sees every tenant's queue rows through its own policies and holds only a
    /// column list of UPDATE, while the app holds the tenant-scoped writes. A runtime
    /// role that can reach the other one — by a direct grant, through nested roles,
    /// by `SET ROLE` or by inheriting its privileges — holds both sets of rights at
    /// once: the app could read every tenant's queue rows, the worker could write
    /// tenant rows. The same holds for the login roles of another module. The finding
    /// names the path of grants (`attestor_app → x → attestor_worker`); the fix
    /// revokes the grant that starts it. (Reaching a superuser, a BYPASSRLS role or
    /// an owner is TI006's; reaching a dangerous attribute or predefined role is TI022's.)
    pub static RULE = {
        id: "TI019",
        name: "runtime-role-reach",
        summary: "no runtime role reaches another runtime role (app ↔ worker), by any path of grants",
        fix: "REVOKE the grant that starts the path (REVOKE x FROM attestor_app).",
        needs: None,
        kind: Kind::Static(check),
    };
}

fn check(cx: &mut Ctx<'_>) -> Result<()> {
    let roles = cx.module.runtime_roles().to_vec();
    let runtime: Vec<String> = cx.modules.iter().flat_map(|m| m.runtime_roles()).collect();
    for row in crate::membership::reach(cx.db, &roles)? {
        let object = format!("role {}", row.start);
        cx.examine(&object);
        if row.exists && !row.is_start() && runtime.contains(&row.role) {
            cx.finding(
                &object,
                format!(
                    "reaches the runtime role {} ({}): it holds that role's rights as well as its own",
                    row.role,
                    row.path_text()
                ),
                format!("REVOKE {} FROM {}", ident(row.first_hop()), ident(&row.start)),
            );
        }
    }
    Ok(())
}
