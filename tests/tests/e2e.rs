//! End-to-end tests against a real PostgreSQL (one throwaway cluster for the
//! whole binary, one cloned database per test).

mod e2e {
    mod audit;
    mod conformance;
    mod jsonb_roundtrip;
    mod migrations;
    mod repo_seed_plan;
}
